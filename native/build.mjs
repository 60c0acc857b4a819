// Builds native/*.c (addon.c, job.c, sendfile.c, receive.c, lstat.c, sockopt.c, beneath.c, rename.c, listen.c, io.c, and watch.c
// where libuv's header is found) into native/build/berth_native.node with the
// system's C compiler and the Node-API headers (the node-api-headers package; Node's own where that
// is missing), when npm installs berth. Optional: without a compiler, or on a system other than
// Linux, it says so in one line and berth sends files and stats listings through Node instead.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "build", "berth_native.node");
const skip = (why) => {
  console.log(`berth: native part not built (${why}); downloads, uploads and listings go through Node's own calls`);
  process.exit(0);
};

if (process.env.BERTH_NATIVE === "0") skip("BERTH_NATIVE=0");
if (process.platform !== "linux") skip(`not on ${process.platform}`);
let packaged = "";
try {
  packaged = createRequire(import.meta.url)("node-api-headers").include_dir;
} catch {
  // not installed: Node's own headers below
}
const nodeOwn = [
  resolve(process.execPath, "../../include/node"),
  process.config.variables?.node_prefix ? join(process.config.variables.node_prefix, "include/node") : "",
  "/usr/local/include/node",
  "/usr/include/node",
];
const headers = [packaged, ...nodeOwn].find((d) => d && existsSync(join(d, "node_api.h")));
if (!headers) skip("Node's headers (node_api.h) not found");
// watch.c needs libuv's header, which Node's own headers carry and node-api-headers does not
// (the system's libuv1-dev has it too: libuv 1.x keeps its ABI). Without it the addon is built
// without watchReadable, and small uploads make a net.Socket.
const uv = [...nodeOwn, "/usr/local/include", "/usr/include"].find((d) => d && existsSync(join(d, "uv.h")));
const cc = process.env.CC || "cc";
mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.${process.pid}.tmp`;
const sources = ["addon.c", "job.c", "sendfile.c", "receive.c", "lstat.c", "sockopt.c", "beneath.c", "rename.c", "listen.c", "io.c", ...(uv ? ["watch.c"] : [])].map((f) => join(here, f));
const flags = uv ? [`-I${uv}`] : ["-DBERTH_NO_WATCH"];
const r = spawnSync(cc, ["-O2", "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread", `-I${headers}`, ...flags, "-o", tmp, ...sources], {
  stdio: ["ignore", "inherit", "inherit"],
});
if (r.error || r.status !== 0) {
  rmSync(tmp, { force: true });
  skip(r.error ? `${cc}: ${r.error.code ?? r.error.message}` : `${cc} exited with ${r.status}`);
}
renameSync(tmp, out);
console.log(`berth: native part built (native/build/berth_native.node: sendfile, upload threads, directory stats, listener options, opens below the jail, renames that never replace, data listeners, descriptor calls${uv ? ", socket readiness" : ""})`);
