// socket.io 4.x server for pigeon's EmitRetries interop test.
// Listens on 127.0.0.1:0 and prints "PORT <n>" on stdout.
// - "flaky" (data, ack): counts the copies received of each data.n; the
//   first copy is never acked (as if its ack were lost), later copies are
//   acked with {n, copies}.
// Exits when stdin closes (the test's process ends or kills it).
const http = require("http");
const { Server } = require("socket.io");

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket"], pingInterval: 2000, pingTimeout: 2000 });
const copies = new Map();

io.on("connection", (socket) => {
  socket.on("flaky", (data, ack) => {
    const n = data && data.n;
    const c = (copies.get(n) || 0) + 1;
    copies.set(n, c);
    if (c > 1 && typeof ack === "function") ack({ n: n, copies: c });
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write("PORT " + httpServer.address().port + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
