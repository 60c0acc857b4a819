// Container health check: connects to the control port and expects a "220" greeting.
// Uses $BERTH_LISTEN_PORT (default 21) and $BERTH_LISTEN_HOST when it names one address (a
// wildcard means 127.0.0.1). Exit 0 healthy, 1 not.
import { connect } from "node:net";
import process from "node:process";

const port = Number(process.env.BERTH_LISTEN_PORT || 21);
const listenHost = process.env.BERTH_LISTEN_HOST || "";
const host = ["", "::", "0.0.0.0"].includes(listenHost) ? "127.0.0.1" : listenHost;
const socket = connect({ host, port });
const fail = (why) => {
  process.stderr.write(`unhealthy: ${why}\n`);
  process.exit(1);
};
socket.setTimeout(4000, () => fail("no greeting within 4 s"));
socket.on("error", (err) => fail(err.message));
let text = "";
socket.on("data", (chunk) => {
  text += chunk.toString("latin1");
  if (!text.includes("\n")) return;
  if (text.startsWith("220")) {
    socket.end("QUIT\r\n");
    process.exit(0);
  }
  fail(`greeting was ${JSON.stringify(text.trim())}`);
});
