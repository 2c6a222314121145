// Reference socket.io 4.x servers for pigeon's interop tests
// (actors/socketio_interop_test.go, actors/socketio_fidelity_test.go).
// Listens on 127.0.0.1:0 and prints "PORT <n>" on stdout. Two servers share
// the port:
// - path /socket.io/: no connection state recovery; namespaces "/" and
//   "/chat".
// - path /rec/socket.io/: connectionStateRecovery on (sessions kept 60 s,
//   the connect middleware runs again on a resumed session, so a new token
//   is checked).
// Connect middleware (every namespace): auth.token starting with
// "good-token" passes; "busy-token" gets next(Error("server busy")) with
// data {code: "busy"}; anything else Error("unauthorized") with data
// {code: "unauthorized"}.
// Events, on every namespace of both servers:
// - on connection: emits "welcome" {nsp, token}.
// - "join" (room, ack?): socket.join(room); acks {joined: room}.
// - "message" (data, ack?): broadcasts "message" to the room "room:1" of
//   the namespace and acks {echo: data}.
// - "kick": server-initiated disconnect (socket.disconnect(true)).
// - "multi" (...args, ack?): emits "multi-echo" with the same arguments
//   and acks with them reversed.
// - "ask" (n): emits "question" (n, "two") asking for an ack, then emits
//   "answered" with the ack's arguments (or {error}).
// - "bin" (buffer, ack?): emits "bin-back" (the bytes reversed, {len,
//   nested: Buffer "hi"}) and acks with Buffer [42].
// - "whoami" (ack): acks {token, recovered, id}.
// - "drop" (room): closes the transport without ending the session
//   (recoverable), then broadcasts "missed" 1, 2, 3 to room.
// - "drop-forget": the same, but the server forgets the session, so it
//   cannot be recovered.
// - "after" (room): broadcasts "after" to room (a marker: everything sent
//   before it has arrived once it does).
// - "blast" (n, ack?): emits n "tick" events {i} as fast as it can, then
//   acks n (bench/socketio_bench_test.go).
// Exits when stdin closes (the test's process ends or kills it).
const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const common = { transports: ["websocket"], pingInterval: 2000, pingTimeout: 2000, destroyUpgrade: false };
const io = new Server(httpServer, { ...common, path: "/socket.io/" });
const rec = new Server(httpServer, {
  ...common,
  path: "/rec/socket.io/",
  connectionStateRecovery: { maxDisconnectionDuration: 60000, skipMiddlewares: false },
});

function guard(socket, next) {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token === "string" && token.startsWith("good-token")) return next();
  const busy = token === "busy-token";
  const err = new Error(busy ? "server busy" : "unauthorized");
  err.data = { code: busy ? "busy" : "unauthorized" };
  next(err);
}

function handlers(server, nsp) {
  nsp.use(guard);
  nsp.on("connection", (socket) => {
    socket.emit("welcome", { nsp: nsp.name, token: socket.handshake.auth.token });
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack({ joined: room });
    });
    socket.on("message", (data, ack) => {
      nsp.to("room:1").emit("message", data);
      if (typeof ack === "function") ack({ echo: data });
    });
    socket.on("kick", () => socket.disconnect(true));
    socket.on("multi", (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      socket.emit("multi-echo", ...args);
      if (ack) ack(...[...args].reverse());
    });
    socket.on("ask", (n) => {
      socket.timeout(10000).emit("question", n, "two", (err, ...answers) => {
        socket.emit("answered", err ? { error: String(err.message) } : answers);
      });
    });
    socket.on("bin", (buf, ack) => {
      socket.emit("bin-back", Buffer.from([...buf].reverse()), { len: buf.length, nested: Buffer.from("hi") });
      if (typeof ack === "function") ack(Buffer.from([42]));
    });
    socket.on("whoami", (ack) => {
      if (typeof ack === "function") ack({ token: socket.handshake.auth.token, recovered: socket.recovered, id: socket.id });
    });
    socket.on("drop", (room) => {
      socket.conn.close();
      for (let i = 1; i <= 3; i++) nsp.to(room).emit("missed", i);
    });
    socket.on("drop-forget", () => {
      socket.data.forget = true;
      socket.conn.close();
    });
    socket.on("disconnect", () => {
      if (socket.data.forget && nsp.adapter.sessions) nsp.adapter.sessions.delete(socket.pid);
    });
    socket.on("after", (room) => nsp.to(room).emit("after", 1));
    socket.on("blast", (n, ack) => {
      for (let i = 0; i < n; i++) socket.emit("tick", { i });
      if (typeof ack === "function") ack(n);
    });
  });
}
handlers(io, io.of("/"));
handlers(io, io.of("/chat"));
handlers(rec, rec.of("/"));

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write("PORT " + httpServer.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
