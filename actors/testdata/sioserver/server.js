// Reference socket.io 4.x server for pigeon's interop test.
// Listens on 127.0.0.1:0 and prints "PORT <n>" on stdout.
// - Rejects a handshake whose auth.token is not "good-token".
// - "join" (room): socket.join(room); acks {joined: room} when asked.
// - "message" (data, ack?): broadcasts "message" to the room "room:1"
//   (including the sender) and acks {echo: data}.
// - "kick": server-initiated disconnect (socket.disconnect(true)).
// Exits when stdin closes (the test's process ends or kills it).
const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket"], pingInterval: 2000, pingTimeout: 2000 });

io.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "good-token") {
    return next();
  }
  const err = new Error("unauthorized");
  err.data = { code: "unauthorized" };
  next(err);
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ joined: room });
  });
  socket.on("message", (data, ack) => {
    io.to("room:1").emit("message", data);
    if (typeof ack === "function") ack({ echo: data });
  });
  socket.on("kick", () => socket.disconnect(true));
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write("PORT " + httpServer.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
