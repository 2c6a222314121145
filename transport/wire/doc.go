// Package wire holds pigeon's websocket wire codecs: pigeon.v1 (JSON
// envelopes, pigeon's own protocol) and socket.io v4 over the Engine.IO
// websocket transport. A codec is a pure translation between client-level
// operations and websocket frames; it does no I/O and keeps no connection
// state beyond what the protocol itself needs (socket.io's namespace).
//
// Codecs are safe for concurrent use unless their doc says otherwise.
//
// # Codecs
//
// PigeonV1 speaks pigeon.v1 (sub-protocol "pigeon.v1"); SocketIO speaks
// socket.io v4 over Engine.IO v4's websocket transport (text packets only:
// binary attachments are a DecodeError). ForURL picks one from a connect
// URL the way pigeon's facade does.
//
// # Errors
//
// Decode returns *DecodeError for any malformed frame and never panics
// (both decoders are fuzzed: FuzzPigeonV1Decode, FuzzSocketIODecode).
package wire
