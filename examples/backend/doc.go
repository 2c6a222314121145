// Package backend is pigeon's example backend: a small, in-memory,
// concurrency-safe HTTP + websocket server that pigeon's tests, benchmarks
// and tour run against, and that `go run ./examples/server` serves
// standalone. It is a server: it defines its own wire structs and imports
// nothing of pigeon's.
//
// Everything lives in memory and is lost on Close. Passwords are hashed with
// PBKDF2-SHA256 (example grade); tokens are 32 random bytes, base64url.
//
// # Use
//
//	b := backend.New(backend.WithAccessTTL(time.Minute))
//	srv := httptest.NewServer(b)
//	defer srv.Close()
//	defer b.Close() // runs first: closes websockets, waits for their goroutines
//
// Backend is an http.Handler; all its methods are safe for concurrent use.
//
// # HTTP API
//
// Bodies are JSON. Successful answers are {"data": ...}; errors are
// {"error": {"code": "...", "message": "..."}} with a matching status.
// 401s caused by a bearer token carry `WWW-Authenticate: Bearer
// error="invalid_token"`. An unknown path answers 404 not_found, a wrong
// method 405 method_not_allowed (with Allow).
//
//	| endpoint                  | body / query            | success                                              | errors |
//	|---------------------------|-------------------------|------------------------------------------------------|--------|
//	| POST /auth/signup         | {"email","password"}    | 201 {"uid","accessToken","refreshToken","expiresAt"} | 400 bad_request, 409 email_taken |
//	| POST /auth/login          | {"email","password"}    | 200 same shape as signup                             | 400 bad_request, 401 invalid_credentials |
//	| POST /auth/refresh        | {"refreshToken"}        | 200 {"accessToken","refreshToken","expiresAt"}       | 400 invalid_request/bad_request, 401 invalid_grant |
//	| POST /auth/logout         | {"refreshToken"}        | 204; revokes it (and the bearer access token, if any)| 400 bad_request |
//	| GET  /me                  | Bearer access token     | 200 {"uid","email"}                                  | 401 invalid_token |
//	| GET/POST /echo            | Bearer access or ghost  | 200 {"ok","method","uid","body"?,"query"?}           | 401 invalid_token |
//	| GET/POST /public/echo     | none                    | 200 {"ok","method","body"?,"query"?}                 | |
//	| POST /chat/ghost/register | {"name"} (1–64 bytes)   | 201 {"ghostId","name","token"}                       | 400 bad_request |
//	| POST /chat/ghost/login    | {"ghostId"}             | 200 {"ghostId","name","token"} (a new token)         | 401 invalid_credentials |
//	| POST /chat/ghost/messages | {"text"}, Bearer access or ghost | 201 the stored ChatMessage                  | 400 bad_request, 401 invalid_token |
//	| GET  /chat/ghost/messages | ?since=<seq>, bearer optional | 200 [ChatMessage...] with seq > since; header X-Pigeon-Epoch | 400 bad_request, 401 (bad bearer) |
//	| GET  /ws                  | sub-protocol pigeon.v1  | 101, then pigeon.v1 (below)                          | 400 (no upgrade / sub-protocol), 503 (closed) |
//
// expiresAt is RFC 3339 with nanoseconds, UTC. /auth/refresh is pigeon's
// JSONRefresher contract and rotates: the refresh token it was given is
// invalid afterwards (a second use answers 401 invalid_grant), so of many
// concurrent refreshes with one token exactly one succeeds. The access token
// it replaces stays valid until it expires. Ghost tokens never expire and
// have no refresh token; they are accepted wherever "access or ghost" is
// written above and at /ws.
//
// Access tokens are opaque unless WithJWTAccessTokens is given: then they are
// HS256 JWTs whose `exp` a client may read unverified. Either way the backend
// keeps its own record, so ExpireAccessToken and RevokeAccessToken work.
//
// # Websocket protocol (pigeon.v1)
//
// Text JSON frames {"type", "id"?, "payload"?}; a frame with an id gets a
// reply (`init_ack`, `ack` or `error`) with that id.
//
//	| client frame | payload                                     | reply |
//	|--------------|---------------------------------------------|-------|
//	| init         | {"headers":{"Authorization":"Bearer T"}}    | init_ack {"session","pingIntervalMs","maxFrame"} |
//	| update       | {"headers":{...}}                           | ack {"session","left"?}; bad token → error unauthorized (connection kept) |
//	| join         | {"channel","since"?:{"epoch","seq"}}        | ack {"channel","epoch","seq","recovered"}, then replayed events |
//	| leave        | {"channel"}                                 | ack {"channel"} |
//	| emit         | {"event","channel","data"}                  | event to every member (sender included), then ack {"channel","epoch","seq"} |
//	| ping         | {"t"}                                       | pong {"t"} (same t); allowed before init |
//
// The server also sends a `pong` {"t": unix ms} every ping interval as a
// heartbeat. `error` frames are {"code","message","retryable":false} with
// codes unauthorized, forbidden and bad_request.
//
// Rooms. Each room has an epoch (random, new when the room is created or
// restarted with RestartRoom/RestartRooms), a seq incremented per event and a
// bounded history (WithHistorySize). A join whose since has the room's epoch
// and a seq whose successors are all still in history answers
// recovered:true with seq = since.seq, followed by the missed events;
// otherwise recovered:false with seq = the room's current seq. A join
// without since is recovered:false. `user:<uid>` is only for that user;
// every other channel (1–128 printable ASCII bytes, no space), including
// chat:universal, is open to every authenticated user and ghost. Emitting
// needs membership (forbidden otherwise).
//
// The universal chat room. In chat:universal, an emit of event "message"
// with data {"text"} is stored as a ChatMessage (author filled in by the
// server) and broadcast as the event's data; POST /chat/ghost/messages
// publishes the same way, and GET /chat/ghost/messages lists them from the
// room's history. So HTTP and websocket users share one room.
//
// Close codes sent by the server:
//
//	| code | when |
//	|------|------|
//	| 1001 | Close (server shutting down), or CloseAllSockets(1001, ...) |
//	| 1009 | a client frame larger than the max frame (WithMaxFrame) |
//	| 4000 | no client frame for ping interval + grace (WithPingInterval, WithIdleGrace) |
//	| 4001 | slow consumer: the connection's send queue (WithSendQueue) overflowed |
//	| 4002 | no init within the init timeout (WithInitTimeout, default 10 s) |
//	| 4003 | init with an expired access token (or, with WithCloseOnExpiry, any frame but ping/update after expiry) |
//	| 4004 | only from CloseAllSockets(4004, ...), to simulate a restart |
//	| 4501 | init with an unknown or missing token, or any frame but ping/init before init_ack |
//	| 4502 | malformed JSON, a non-object frame, an unknown type, a payload of the wrong shape, a binary frame |
//	| 4503 | a second init, or an id equal to one of the connection's last 1024 ids |
//
// A close started by the client is echoed with its code. The server answers
// each frame before reading the next, so no reply is ever pending when a
// frame arrives; "duplicate active id" is therefore enforced over a window
// of recent ids.
//
// Each connection has one reader (which handles frames) and one writer
// goroutine; only the writer writes data, every write has a deadline, the
// read limit is always set, and events are queued to the writer without
// ever blocking the publisher (a full queue closes that connection with
// 4001). Replies to a client's own frames wait for room instead, so a
// client that floods requests is slowed by backpressure, not closed.
//
// # Observability and test helpers
//
// Stats returns counters (refresh calls, logins, per-path requests,
// websocket connections, frames by type, close codes...). IssueTokens,
// CreateUser, RegisterGhost, ExpireAccessToken, RevokeAccessToken,
// RevokeRefreshToken, Publish, RoomPosition, RestartRoom(s) and
// CloseAllSockets let tests set up and perturb state; WithClock injects the
// clock of every expiry decision and WithRefreshHook lets a test answer
// refresh requests itself (5xx, hangs).
package backend
