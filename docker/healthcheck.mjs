// Container health check: reads the "220" greeting on every port berth listens on: listen.port in
// plain text unless tls.mode is "implicit", and tls.implicitPort after a TLS handshake when
// tls.mode is "implicit" or "both". Any certificate is taken, a self-signed one too: this checks
// that berth answers, not whom to trust. The four keys are read as berth reads them: a BERTH_*
// variable (any spelling berth takes), else the config file ($BERTH_CONFIG, else
// config/berth.yaml in the working directory, /app in the image), else the default. A listen.host
// that names one address is dialled; a wildcard means 127.0.0.1. Plain JavaScript, so that a check
// every 30 s costs little. Exit 0 healthy, 1 not, with one line on stderr saying why.
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import process from "node:process";
import { connect as tlsConnect } from "node:tls";
import { parse } from "yaml";

const WAIT_MS = 4000;
const env = process.env;

const fail = (why) => {
  process.stderr.write(`unhealthy: ${why}\n`);
  process.exit(1);
};

/** The config file's contents as an object; {} when the default file is missing. */
function readConfigFile() {
  const named = env.BERTH_CONFIG || "";
  const file = named || "config/berth.yaml";
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if (!named && err.code === "ENOENT") return {};
    return fail(`config: cannot read ${file}: ${err.message}`);
  }
  try {
    const doc = parse(text);
    return typeof doc === "object" && doc !== null ? doc : {};
  } catch (err) {
    return fail(`config: ${file} is not valid YAML: ${err.message.split("\n")[0]}`);
  }
}

const fileConfig = readConfigFile();

/** `section.key` as berth sees it: the last (by name) BERTH_* variable naming it, else the file, else `fallback`. */
function setting(section, key, fallback) {
  const names = Object.keys(env)
    .filter((name) => {
      const rest = name.slice("BERTH_".length).toLowerCase();
      return name.startsWith("BERTH_") && rest.startsWith(`${section}_`) && rest.slice(section.length + 1).replaceAll("_", "") === key.toLowerCase();
    })
    .sort();
  const variable = names.at(-1);
  if (variable !== undefined) return env[variable];
  const fromFile = fileConfig[section]?.[key];
  return fromFile ?? fallback;
}

/** Resolves once `port` greets with 220 (in TLS from the first byte when `tls`); rejects with why not. */
function greeted(label, host, port, tls) {
  return new Promise((resolve, reject) => {
    const where = `${label} ${host.includes(":") ? `[${host}]` : host}:${port}`;
    const socket = tls
      ? tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ["ftp"] })
      : netConnect({ host, port });
    const settle = (why) => {
      socket.destroy();
      if (why === undefined) resolve();
      else reject(new Error(`${where}: ${why}`));
    };
    socket.setTimeout(WAIT_MS, () => settle(`no greeting within ${WAIT_MS / 1000} s`));
    socket.on("error", (err) => settle(err.message));
    let text = "";
    socket.on("data", (chunk) => {
      text += chunk.toString("latin1");
      if (!text.includes("\n")) return;
      if (!text.startsWith("220")) return settle(`greeting was ${JSON.stringify(text.trim())}`);
      socket.end("QUIT\r\n");
      settle();
    });
  });
}

const listenHost = String(setting("listen", "host", "::"));
const host = ["", "::", "0.0.0.0"].includes(listenHost) ? "127.0.0.1" : listenHost;
const mode = String(setting("tls", "mode", "off"));
const probes = [];
if (mode !== "implicit") probes.push(["control port", Number(setting("listen", "port", 2121)), false]);
if (mode === "implicit" || mode === "both") probes.push(["implicit FTPS port", Number(setting("tls", "implicitPort", 990)), true]);
for (const [label, port] of probes) {
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail(`the ${label} is ${port} in the config: nothing to check`);
}
try {
  await Promise.all(probes.map(([label, port, secure]) => greeted(label, host, port, secure)));
} catch (err) {
  fail(err.message);
}
process.exit(0);
