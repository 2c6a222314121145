// The control of pigeon's socket.io fidelity tests: the official
// socket.io-client runs one scenario against server.js and prints what it
// observed as one JSON line on stdout (exit 0), or an error on stderr
// (exit 1). Usage: node control.js <scenario> <http://127.0.0.1:port>.
// The Go test runs the same scenario with pigeon and compares.
const { io } = require("socket.io-client");

const [scenario, base] = process.argv.slice(2);
const opts = (extra) => ({ transports: ["websocket"], reconnectionDelay: 20, reconnectionDelayMax: 100, ...extra });
const done = (v) => {
  process.stdout.write(JSON.stringify(v) + "\n");
  process.exit(0);
};
setTimeout(() => {
  process.stderr.write("control " + scenario + ": timed out\n");
  process.exit(1);
}, 20000);

const scenarios = {
  // item 4: a namespace.
  namespace() {
    const s = io(base + "/chat", opts({ auth: { token: "good-token" } }));
    s.on("welcome", (w) => done({ welcome: w }));
  },
  // item 5: several arguments each way, and an ack the server asks for.
  acks() {
    const s = io(base, opts({ auth: { token: "good-token" } }));
    const out = {};
    const check = () => out.ack && out.echo && out.question && out.answered && done(out);
    s.on("multi-echo", (...a) => { out.echo = a; check(); });
    s.on("question", (a, b, cb) => { out.question = [a, b]; cb("yes", 42); });
    s.on("answered", (a) => { out.answered = a; check(); });
    s.on("connect", () => {
      s.emit("multi", 1, "two", { three: 3 }, (...a) => { out.ack = a; check(); });
      s.emit("ask", 5);
    });
  },
  // item 6: binary out, binary in.
  binary() {
    const s = io(base, opts({ auth: { token: "good-token" } }));
    const out = {};
    const check = () => out.back && out.ack && done(out);
    s.on("bin-back", (buf, meta) => {
      out.back = [...buf];
      out.meta = { len: meta.len, nested: Buffer.from(meta.nested).toString("base64") };
      check();
    });
    s.on("connect", () => s.emit("bin", Buffer.from([1, 2, 3]), (b) => { out.ack = [...b]; check(); }));
  },
  // item 7: the server kicks; the client does not come back.
  kick() {
    const s = io(base, opts({ auth: { token: "good-token" } }));
    s.once("connect", () => s.emit("kick"));
    s.on("disconnect", (reason) => setImmediate(() => done({ reason, active: s.active })));
  },
  // item 7: a connect middleware error that is not about credentials.
  busy() {
    const s = io(base, opts({ auth: { token: "busy-token" } }));
    s.on("connect_error", (err) => setImmediate(() => done({ message: err.message, data: err.data, active: s.active })));
  },
  // item 8: connection state recovery; "forget" makes it fail.
  recover(forget) {
    const s = io(base + "/", opts({ path: "/rec/socket.io/", auth: { token: "good-token" } }));
    const out = { missed: [], missedArgs: [] };
    let n = 0;
    s.on("missed", (...a) => { out.missed.push(a[0]); out.missedArgs.push(a); });
    s.on("after", () => { out.recovered = s.recovered; done(out); });
    s.on("disconnect", (reason) => { out.reason = reason; });
    s.on("connect", () => {
      n++;
      if (n === 1) {
        s.emit("join", "r", () => s.emit(forget ? "drop-forget" : "drop", "r"));
      } else {
        if (forget) s.emit("join", "r", () => s.emit("after", "r"));
        else s.emit("after", "r");
      }
    });
  },
  forget() {
    scenarios.recover(true);
  },
  // item 9: a new token through a reconnect that resumes the session.
  token() {
    const s = io(base + "/", opts({ path: "/rec/socket.io/", auth: { token: "good-token" } }));
    const out = {};
    let n = 0;
    s.on("connect", () => {
      n++;
      if (n === 1) {
        s.emit("join", "r", () => s.emit("whoami", (w) => {
          out.first = w;
          s.auth.token = "good-token-2"; // the reference client's way: new auth, then reconnect
          s.io.engine.close();
        }));
      } else {
        s.emit("whoami", (w) => { out.second = w; out.recovered = s.recovered; s.emit("after", "r"); });
      }
    });
    s.on("after", () => done(out));
  },
  // bench: receive N "tick" events (argv[4], default 100000) in blasts of
  // 1024, as BenchmarkSocketIOEvents does; prints ns per event.
  blast() {
    const total = Number(process.argv[4] || 100000);
    const s = io(base, opts({ auth: { token: "good-token" } }));
    let got = 0;
    let asked = 0;
    let t0;
    const ask = () => {
      const n = Math.min(1024, total - asked);
      asked += n;
      s.emit("blast", n);
    };
    s.on("tick", () => {
      got++;
      if (got === total) done({ events: total, nsPerEvent: Number(process.hrtime.bigint() - t0) / total });
      else if (got === asked) ask();
    });
    s.on("connect", () => {
      t0 = process.hrtime.bigint();
      ask();
    });
  },
};

const run = scenarios[scenario];
if (!run) {
  process.stderr.write("control: unknown scenario " + scenario + "\n");
  process.exit(2);
}
run();
