import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { parse } from "yaml";
import { ConfigError, envKey, loadConfig, loadConfigWithOverrides, MAX_CONFIG_BYTES, redactConfig, resolvePath } from "../src/config/load.ts";
import { DEFAULTS } from "../src/config/schema.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A temp working directory with `config/berth.yaml` holding `yaml` (when given). */
function workdir(yaml?: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "berth-config-"));
  dirs.push(dir);
  if (yaml !== undefined) {
    mkdirSync(path.join(dir, "config"));
    writeFileSync(path.join(dir, "config", "berth.yaml"), yaml);
  }
  return dir;
}

/** Asserts that loading throws a one-line ConfigError naming `key`; returns the message. */
function expectError(load: () => unknown, key: string, ...fragments: string[]): string {
  let caught: unknown;
  try {
    load();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.key, key);
  assert.ok(!caught.message.includes("\n"), "message is one line");
  assert.ok(caught.message.startsWith("config: "));
  for (const f of fragments) assert.ok(caught.message.includes(f), `"${caught.message}" should mention ${f}`);
  return caught.message;
}

void describe("loadConfig", () => {
  void test("no file at the default path gives the defaults", () => {
    const config = loadConfig({ cwd: workdir(), env: {} });
    assert.deepEqual(config, DEFAULTS);
  });

  void test("the shipped config/berth.yaml holds every key with its default", () => {
    const shipped = readFileSync(new URL("../config/berth.yaml", import.meta.url), "utf8");
    assert.deepEqual(parse(shipped), DEFAULTS);
    assert.deepEqual(loadConfig({ cwd: workdir(shipped), env: {} }), DEFAULTS);
  });

  void test("file values override defaults; empty sections are allowed", () => {
    const cwd = workdir("listen:\n  port: 21\n  host: 127.0.0.1\ntls:\nactive:\n  enabled: false\n");
    const config = loadConfig({ cwd, env: {} });
    assert.equal(config.listen.port, 21);
    assert.equal(config.listen.host, "127.0.0.1");
    assert.equal(config.active.enabled, false);
    assert.equal(config.passive.ports, DEFAULTS.passive.ports);
  });

  void test("an empty file is the defaults", () => {
    assert.deepEqual(loadConfig({ cwd: workdir("# nothing\n"), env: {} }), DEFAULTS);
  });

  void test("the environment wins over the file, with every key spelling", () => {
    const cwd = workdir("listen:\n  port: 21\ntls:\n  implicitPort: 1990\n");
    const config = loadConfig({
      cwd,
      env: {
        BERTH_LISTEN_PORT: "2200",
        BERTH_PASSIVE_PORTS: "30000-30009",
        BERTH_PASSIVE_ADDRESS: "ftp.example.com",
        BERTH_TLS_MODE: "explicit",
        BERTH_TLS_IMPLICIT_PORT: "9990",
        BERTH_ACTIVE_ENABLED: "no",
        BERTH_TRANSFER_SENDFILE: "false",
        BERTH_TRANSFER_UPLOAD_THREADS: "false",
        BERTH_TRANSFER_CHECKSUMS: "off",
        BERTH_TLS_REQUIRE: "YES",
        BERTH_LIMITS_FAILEDLOGINDELAY: "0.25",
        BERTH_USERS_BCRYPT_COST: "4",
        BERTH_USER: "ignored",
        BERTH_PASSWORD: "ignored",
        BERTH_PASSWORD_FILE: "ignored",
        BERTH_CONFIG: "config/berth.yaml",
        PATH: "/usr/bin",
      },
    });
    assert.equal(config.listen.port, 2200);
    assert.equal(config.passive.ports, "30000-30009");
    assert.equal(config.passive.address, "ftp.example.com");
    assert.equal(config.tls.mode, "explicit");
    assert.equal(config.tls.implicitPort, 9990);
    assert.equal(config.active.enabled, false);
    assert.equal(config.transfer.sendfile, false);
    assert.equal(config.transfer.uploadThreads, false);
    assert.equal(config.transfer.checksums, false);
    assert.equal(config.tls.require, true);
    assert.equal(config.limits.failedLoginDelay, 0.25);
    assert.equal(config.users.bcryptCost, 4);
  });

  void test("the keys the file changes from their defaults and a variable sets to other values are reported", () => {
    const cwd = workdir(
      'listen:\n  port: 2100\n  host: "127.0.0.1"\npassive:\n  ports: "40000-40009"\nstorage:\n  root: data\ntls:\n  require: true\n  mode: explicit\n',
    );
    const { config, overrides } = loadConfigWithOverrides({
      cwd,
      env: {
        BERTH_LISTEN_PORT: "21", // differs: reported
        BERTH_LISTEN_HOST: "127.0.0.1", // the same value: not reported
        BERTH_TLS_REQUIRE: "yes", // the same value in another spelling: not reported
        BERTH_PASSIVE_PORTS: "21100-21110", // differs: reported
        BERTH_STORAGE_ROOT: "/data", // the file's "data" is the default: not reported
        BERTH_USERS_FILE: "/users/users.json", // not in the file: not reported
      },
    });
    assert.equal(config.listen.port, 21);
    assert.deepEqual(overrides, [
      { key: "listen.port", variable: "BERTH_LISTEN_PORT", value: 21, file: "config/berth.yaml", fileValue: 2100 },
      { key: "passive.ports", variable: "BERTH_PASSIVE_PORTS", value: "21100-21110", file: "config/berth.yaml", fileValue: "40000-40009" },
    ]);
    assert.deepEqual(loadConfigWithOverrides({ cwd, env: {} }).overrides, []);
    assert.deepEqual(loadConfigWithOverrides({ cwd: workdir(), env: { BERTH_LISTEN_PORT: "21" } }).overrides, []);
    // The shipped config/berth.yaml repeats every default: variables override it without a word.
    const shipped = workdir(readFileSync(new URL("../config/berth.yaml", import.meta.url), "utf8"));
    const image = { BERTH_LISTEN_PORT: "21", BERTH_PASSIVE_PORTS: "21100-21110", BERTH_STORAGE_ROOT: "/data", BERTH_USERS_FILE: "/users/users.json", BERTH_TLS_MODE: "explicit" };
    assert.deepEqual(loadConfigWithOverrides({ cwd: shipped, env: image }).overrides, []);
  });

  void test("env names map to keys case-insensitively, with or without underscores", () => {
    assert.deepEqual(envKey("BERTH_TLS_IMPLICIT_PORT"), ["tls", "implicitPort"]);
    assert.deepEqual(envKey("BERTH_TLS_IMPLICITPORT"), ["tls", "implicitPort"]);
    assert.deepEqual(envKey("BERTH_LIMITS_MAX_SESSIONS_PER_ADDRESS"), ["limits", "maxSessionsPerAddress"]);
    assert.deepEqual(envKey("BERTH_LOG_LEVEL"), ["log", "level"]);
    assert.equal(envKey("BERTH_LISTEN_PROT"), undefined);
    assert.equal(envKey("BERTH_LISTEN"), undefined);
  });

  void test("--file and BERTH_CONFIG name the file; a named missing file is an error", () => {
    const cwd = workdir();
    writeFileSync(path.join(cwd, "other.yaml"), "listen:\n  port: 0\n");
    assert.equal(loadConfig({ cwd, env: { BERTH_CONFIG: "other.yaml" } }).listen.port, 0);
    assert.equal(loadConfig({ cwd, file: "other.yaml", env: { BERTH_CONFIG: "nope.yaml" } }).listen.port, 0);
    expectError(() => loadConfig({ cwd, file: "missing.yaml", env: {} }), "missing.yaml", "cannot read missing.yaml", "no such file");
    expectError(() => loadConfig({ cwd, env: { BERTH_CONFIG: "gone.yaml" } }), "gone.yaml", "gone.yaml");
  });

  void test("the result is deep-frozen", () => {
    const config = loadConfig({ cwd: workdir(), env: {} });
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.listen));
    assert.ok(Object.isFrozen(config.limits));
    assert.throws(() => {
      (config.listen as { port: number }).port = 1;
    }, TypeError);
  });

  void test("paths stay as written; resolvePath resolves them against cwd", () => {
    const config = loadConfig({ cwd: workdir("storage:\n  root: ./files\n"), env: {} });
    assert.equal(config.storage.root, "./files");
    assert.equal(resolvePath(config.storage.root, "/srv"), "/srv/files");
    assert.equal(resolvePath("/abs/x", "/srv"), "/abs/x");
    assert.equal(resolvePath("", "/srv"), "");
  });

  void test("tls mode without cert and key is not an error", () => {
    const config = loadConfig({ cwd: workdir(), env: { BERTH_TLS_MODE: "both", BERTH_TLS_IMPLICIT_PORT: "990" } });
    assert.equal(config.tls.mode, "both");
    assert.equal(config.tls.cert, "");
  });
});

void describe("loadConfig errors name the key", () => {
  const env = (vars: Record<string, string>) => () => loadConfig({ cwd: workdir(), env: vars });
  const file = (yaml: string) => () => loadConfig({ cwd: workdir(yaml), env: {} });

  void test("a bad number from the environment", () => {
    const msg = expectError(env({ BERTH_LISTEN_PORT: "abc" }), "listen.port");
    assert.equal(msg, 'config: listen.port must be an integer 0..65535 (got "abc") [from BERTH_LISTEN_PORT]');
  });

  void test("ports out of range", () => {
    expectError(env({ BERTH_LISTEN_PORT: "65536" }), "listen.port", "0..65535");
    expectError(env({ BERTH_TLS_IMPLICIT_PORT: "-1" }), "tls.implicitPort", "0..65535");
    expectError(file("listen:\n  port: 1.5\n"), "listen.port", "integer", "config/berth.yaml");
  });

  void test("sizes: a fraction needs a unit, and a size that is not 0 comes to a byte at least (0 is unlimited)", () => {
    expectError(env({ BERTH_QUOTA_BYTES: "0.4" }), "quota.bytes", '"0.4"');
    expectError(env({ BERTH_QUOTA_BYTES: "1.5" }), "quota.bytes", '"1.5"');
    expectError(env({ BERTH_QUOTA_BYTES: "0.0001K" }), "quota.bytes");
    expectError(file('bandwidth:\n  transferUp: "0.2"\n'), "bandwidth.transferUp");
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_QUOTA_BYTES: "1.5K" } }).quota.bytes, 1536);
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_QUOTA_BYTES: "0" } }).quota.bytes, 0);
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_QUOTA_BYTES: "0.0K" } }).quota.bytes, 0);
  });

  void test("a bad passive range", () => {
    expectError(env({ BERTH_PASSIVE_PORTS: "5000-4000" }), "passive.ports", "MIN-MAX", '"5000-4000"');
    expectError(file('passive:\n  ports: "0-10"\n'), "passive.ports", "1..65535");
  });

  void test("bad enums", () => {
    expectError(env({ BERTH_TLS_MODE: "on" }), "tls.mode", "off, explicit, implicit, both");
    expectError(env({ BERTH_LOG_LEVEL: "verbose" }), "log.level", "info");
    expectError(env({ BERTH_LOG_PRETTY: "maybe" }), "log.pretty");
  });

  void test("bad booleans", () => {
    expectError(env({ BERTH_ACTIVE_ENABLED: "sure" }), "active.enabled", "true or false");
    expectError(file("tls:\n  require: 2\n"), "tls.require", "true or false");
    expectError(env({ BERTH_TRANSFER_SENDFILE: "maybe" }), "transfer.sendfile", "true or false");
    expectError(env({ BERTH_TRANSFER_FSYNC: "always" }), "transfer.fsync", "true or false");
    expectError(file("transfer:\n  sendfile: \"sometimes\"\n"), "transfer.sendfile", "true or false");
    expectError(env({ BERTH_TRANSFER_UPLOAD_THREADS: "yes please" }), "transfer.uploadThreads", "true or false");
    expectError(file("transfer:\n  uploadThreads: [on]\n"), "transfer.uploadThreads", "true or false");
  });

  void test("negative or zero durations and counts", () => {
    expectError(env({ BERTH_LIMITS_IDLE_TIMEOUT: "-5" }), "limits.idleTimeout", "seconds");
    expectError(env({ BERTH_LIMITS_LOGIN_TIMEOUT: "0" }), "limits.loginTimeout", "> 0");
    expectError(file("defender:\n  banTime: 0\n"), "defender.banTime", "> 0");
    expectError(env({ BERTH_LIMITS_COMMAND_RATE: "-1" }), "limits.commandRate", ">= 0");
    expectError(file("limits:\n  maxSessions: 0\n"), "limits.maxSessions", ">= 1");
    expectError(env({ BERTH_USERS_LOGIN_CACHE_SECONDS: "-1" }), "users.loginCacheSeconds", "0..86400", "BERTH_USERS_LOGIN_CACHE_SECONDS");
    expectError(file("users:\n  loginCacheSeconds: soon\n"), "users.loginCacheSeconds", "integer");
  });

  void test("durations kept in timers stop at the longest timer Node keeps (a longer one would fire at once)", () => {
    for (const [key, envName] of [
      ["limits.idleTimeout", "BERTH_LIMITS_IDLE_TIMEOUT"],
      ["limits.loginTimeout", "BERTH_LIMITS_LOGIN_TIMEOUT"],
      ["limits.dataTimeout", "BERTH_LIMITS_DATA_TIMEOUT"],
      ["limits.stalledTimeout", "BERTH_LIMITS_STALLED_TIMEOUT"],
      ["limits.failedLoginDelay", "BERTH_LIMITS_FAILED_LOGIN_DELAY"],
      ["limits.shutdownGrace", "BERTH_LIMITS_SHUTDOWN_GRACE"],
    ] as const) {
      expectError(env({ [envName]: "2147484" }), key, "at most 2147483 (about 24 days)", "2147484");
      const name = key.split(".")[1] as "idleTimeout";
      assert.equal(loadConfig({ cwd: workdir(), env: { [envName]: "2147483" } }).limits[name], 2147483);
    }
    expectError(file("limits:\n  idleTimeout: 1e400\n"), "limits.idleTimeout", "(got Infinity)");
    // Durations compared with the clock only have no such bound.
    assert.equal(loadConfig({ cwd: workdir("defender:\n  banTimeMax: 31536000\n"), env: {} }).defender.banTimeMax, 31536000);
  });

  void test("the removed failed-login keys name the defender keys that replace them", () => {
    const one = (msg: string): void => assert.equal(msg.split("\n").length, 1, msg);
    one(expectError(file("limits:\n  maxFailuresPerAddress: 20\n"), "limits.maxFailuresPerAddress", "defender.threshold"));
    one(expectError(file("limits:\n  banTime: 300\n"), "limits.banTime", "defender.banTime", "config/berth.yaml"));
    one(expectError(env({ BERTH_LIMITS_BAN_TIME: "60" }), "limits.banTime", "defender.banTime", "BERTH_LIMITS_BAN_TIME"));
    one(expectError(env({ BERTH_LIMITS_MAX_FAILURES_PER_ADDRESS: "5" }), "limits.maxFailuresPerAddress", "defender.scoreLoginFailure"));
  });

  void test("defender settings", () => {
    expectError(env({ BERTH_DEFENDER_ALLOW: "10.0.0.0/33" }), "defender.allow", "CIDR");
    expectError(env({ BERTH_DEFENDER_ALLOW: "10.0.0.0/8, not-an-ip" }), "defender.allow", "CIDR");
    expectError(env({ BERTH_DEFENDER_BAN_GROWTH: "0.5" }), "defender.banGrowth", ">= 1");
    expectError(env({ BERTH_DEFENDER_BAN_TIME_MAX: "10" }), "defender.banTimeMax", "defender.banTime");
    const ok = loadConfig({
      cwd: workdir(),
      env: { BERTH_DEFENDER_ALLOW: "127.0.0.0/8, ::1, fd00::/8, ::ffff:10.0.0.0/104", BERTH_DEFENDER_SCORE_LOGIN_FAILURE: "25" },
    });
    assert.equal(ok.defender.scoreLoginFailure, 25);
    assert.equal(ok.defender.allow, "127.0.0.0/8, ::1, fd00::/8, ::ffff:10.0.0.0/104");
  });

  void test("a defender.threshold with a fraction is refused as not a whole score (1.5 is a score >= 1)", () => {
    expectError(env({ BERTH_DEFENDER_THRESHOLD: "1.5" }), "defender.threshold", "must be a whole score >= 1");
    expectError(env({ BERTH_DEFENDER_THRESHOLD: "0" }), "defender.threshold", "must be a whole score >= 1");
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_DEFENDER_THRESHOLD: "25" } }).defender.threshold, 25);
  });

  void test("bcrypt cost outside 4..15", () => {
    expectError(env({ BERTH_USERS_BCRYPT_COST: "3" }), "users.bcryptCost", "4..15");
    expectError(env({ BERTH_USERS_BCRYPT_COST: "16" }), "users.bcryptCost", "4..15");
  });

  void test("anonymous.dirPerms with a DIR left out, which would read as the whole anonymous root (as --dir-perms refuses it)", () => {
    for (const value of ["=upload", "/pub=list; =upload,delete", " = upload"]) {
      expectError(env({ BERTH_ANONYMOUS_DIR_PERMS: value }), "anonymous.dirPerms", "with DIR inside the anonymous root");
    }
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_ANONYMOUS_DIR_PERMS: "/=list;/incoming=upload" } }).anonymous.dirPerms, "/=list;/incoming=upload");
  });

  void test("empty paths and a multi-line banner", () => {
    expectError(env({ BERTH_STORAGE_ROOT: "" }), "storage.root", "non-empty");
    expectError(file('server:\n  banner: "a\\r\\nb"\n'), "server.banner", "one line");
    // C1 controls (NEL among them, and U+009B, a terminal's CSI) and Unicode's line and paragraph
    // separators are no printable text of one line either.
    for (const banner of ["a\u0085b", "a\u009b2Jb", "a\u2028b", "a\u2029b"]) {
      expectError(env({ BERTH_SERVER_BANNER: banner }), "server.banner", "one line");
    }
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_SERVER_BANNER: "Grüße, ftp.example.com ✓" } }).server.banner, "Grüße, ftp.example.com ✓");
  });

  void test("hosts: an address that is not a valid IP, or a name with characters no host name has", () => {
    const ok = ["::", "0.0.0.0", "127.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "localhost", "ftp.example.com", "ftp.example.com.", "berth_ftp", "my-host"];
    for (const host of ok) {
      assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_LISTEN_HOST: host } }).listen.host, host);
      // PASV announces IPv4 only: an IPv6 address is no passive.address.
      if (isIP(host) === 6) expectError(env({ BERTH_PASSIVE_ADDRESS: host }), "passive.address", "must be an IPv4 address, a host name or empty");
      else assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_PASSIVE_ADDRESS: host } }).passive.address, host);
    }
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_METRICS_LISTEN: "[::1]:9121" } }).metrics.listen, "[::1]:9121");
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_METRICS_LISTEN: "metrics.example.com:9121" } }).metrics.listen, "metrics.example.com:9121");
    for (const host of ["999.1.1.1", "1.2.3", "1.2.3.4.5", "10.0.0.256", "2130706433", "[::1]", ":::1", "1::2::3", "ftp/example", "ftp..example.com", ".example.com", "ftp:21"]) {
      expectError(env({ BERTH_LISTEN_HOST: host }), "listen.host", "must be a host name or IP address", `(got ${JSON.stringify(host)})`);
      expectError(env({ BERTH_PASSIVE_ADDRESS: host }), "passive.address", "must be an IPv4 address, a host name or empty");
    }
    expectError(env({ BERTH_METRICS_LISTEN: "999.1.1.1:9121" }), "metrics.listen", '(got "999.1.1.1:9121")');
    expectError(env({ BERTH_METRICS_LISTEN: "[1::2::3]:9121" }), "metrics.listen");
  });

  void test("wrong YAML types", () => {
    expectError(file("listen:\n  port: [1, 2]\n"), "listen.port", "got a list");
    expectError(file("listen:\n  host: {a: 1}\n"), "listen.host", "got a mapping");
    expectError(file("listen: 5\n"), "listen", "mapping");
    expectError(file("- 1\n- 2\n"), "config/berth.yaml", "mapping");
  });

  void test("unknown keys in the file", () => {
    expectError(file("listen:\n  prot: 21\n"), "listen.prot", "unknown key listen.prot", "host, port");
    expectError(file("lisen:\n  port: 21\n"), "lisen", "unknown key lisen");
  });

  void test("unknown BERTH_* variables", () => {
    expectError(env({ BERTH_LISTEN_PROT: "21" }), "BERTH_LISTEN_PROT", "unknown environment variable BERTH_LISTEN_PROT");
    expectError(env({ BERTH_DEBUG: "1" }), "BERTH_DEBUG");
  });

  void test("the variables Kubernetes gives every pod for a Service named berth or berth-… are not config keys and are left alone", () => {
    // A Service "berth" with a port named "ftp" (enableServiceLinks is on by default).
    const links = {
      BERTH_SERVICE_HOST: "10.96.0.21",
      BERTH_SERVICE_PORT: "21",
      BERTH_SERVICE_PORT_FTP: "21",
      BERTH_PORT: "tcp://10.96.0.21:21",
      BERTH_PORT_21_TCP: "tcp://10.96.0.21:21",
      BERTH_PORT_21_TCP_PROTO: "tcp",
      BERTH_PORT_21_TCP_PORT: "21",
      BERTH_PORT_21_TCP_ADDR: "10.96.0.21",
    };
    const config = loadConfig({ cwd: workdir(), env: { ...links, BERTH_LISTEN_PORT: "2100" } });
    assert.equal(config.listen.port, 2100);
    // A Service "berth-ftp" gives the same with BERTH_FTP_ before each suffix.
    const named = Object.fromEntries(Object.entries(links).map(([k, v]) => [k.replace(/^BERTH_/, "BERTH_FTP_"), v]));
    assert.equal(loadConfig({ cwd: workdir(), env: { ...named, BERTH_TLS_IMPLICIT_PORT: "2990" } }).tls.implicitPort, 2990);
    // The same names with values Kubernetes never gives them are still mistakes: BERTH_PORT=2121
    // meant listen.port.
    expectError(env({ BERTH_PORT: "2121" }), "BERTH_PORT", "unknown environment variable BERTH_PORT");
    expectError(env({ BERTH_SERVICE_HOST: "ftp.example.com" }), "BERTH_SERVICE_HOST");
    expectError(env({ BERTH_LISTEN_PORT: "tcp" }), "listen.port", "listen.port must be an integer");
  });

  void test("two variables that name one key (underscores inside a key's name are optional) are refused, not one of them dropped", () => {
    expectError(
      env({ BERTH_LIMITS_LOGINTIMEOUT: "10", BERTH_LIMITS_LOGIN_TIMEOUT: "20" }),
      "limits.loginTimeout",
      "BERTH_LIMITS_LOGINTIMEOUT and BERTH_LIMITS_LOGIN_TIMEOUT both set limits.loginTimeout",
    );
    expectError(env({ BERTH_LISTEN_PORT: "2100", BERTH_LISTEN_P_O_R_T: "2100" }), "listen.port", "both set listen.port");
    // One spelling alone, either one, is taken.
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_LIMITS_LOGINTIMEOUT: "10" } }).limits.loginTimeout, 10);
    assert.equal(loadConfig({ cwd: workdir(), env: { BERTH_LIMITS_LOGIN_TIMEOUT: "20" } }).limits.loginTimeout, 20);
  });

  void test("invalid YAML and duplicate keys", () => {
    expectError(file("listen:\n  port: [\n"), "config/berth.yaml", "not valid YAML");
    expectError(file("listen:\n  port: 1\n  port: 2\n"), "config/berth.yaml", "not valid YAML");
  });

  void test("a file of two YAML documents (a second ---) is named as such, with where the second starts, not with a call of the YAML library to make", () => {
    for (const [text, at] of [
      ["listen:\n  port: 2100\n---\nlisten:\n  port: 2200\n", "line 3, column 1"],
      ["listen:\n  port: 2100\n...\nlisten:\n  port: 2200\n", "line 4, column 1"],
    ] as const) {
      const message = expectError(file(text), "config/berth.yaml", "config/berth.yaml", "more than one YAML document", at);
      assert.doesNotMatch(message, /parseAllDocuments|YAML\./, message);
    }
  });

  void test("an unreadable file", () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "config", "berth.yaml"), { recursive: true });
    expectError(() => loadConfig({ cwd, env: {} }), "config/berth.yaml", "cannot read", "is a directory");
  });

  void test("a file that never ends (/dev/zero) or is far too big is refused after a bounded read", () => {
    const cwd = workdir();
    expectError(() => loadConfig({ cwd, file: "/dev/zero", env: {} }), "/dev/zero", "cannot read /dev/zero", "larger than");
    // A long comment: valid YAML, but no config is this big.
    writeFileSync(path.join(cwd, "big.yaml"), `# ${"x".repeat(MAX_CONFIG_BYTES)}\nlisten:\n  port: 0\n`);
    expectError(() => loadConfig({ cwd, file: "big.yaml", env: {} }), "big.yaml", "larger than");
    // One just within the bound is read.
    writeFileSync(path.join(cwd, "fits.yaml"), `# ${"x".repeat(MAX_CONFIG_BYTES - 40)}\nlisten:\n  port: 0\n`);
    assert.equal(loadConfig({ cwd, file: "fits.yaml", env: {} }).listen.port, 0);
  });

  void test("contradictions between keys", () => {
    expectError(env({ BERTH_TLS_REQUIRE: "true" }), "tls.require", "tls.mode", "[from BERTH_TLS_REQUIRE]");
    expectError(
      env({ BERTH_TLS_MODE: "both", BERTH_LISTEN_PORT: "990" }),
      "tls.implicitPort",
      "listen.port",
    );
    // A port of the passive range that a control listener holds: a passive connection can never
    // have it (a range of that one port, none at all).
    const msg = expectError(env({ BERTH_TLS_MODE: "implicit", BERTH_TLS_IMPLICIT_PORT: "50050" }), "passive.ports", "tls.implicitPort");
    assert.equal(msg, "config: passive.ports 50000-50100 includes tls.implicitPort 50050, which the implicit FTPS listener holds; move one of them");
    expectError(env({ BERTH_TLS_MODE: "both", BERTH_PASSIVE_PORTS: "990" }), "passive.ports", "990", "tls.implicitPort", "[from BERTH_PASSIVE_PORTS]");
    expectError(env({ BERTH_LISTEN_PORT: "50000" }), "passive.ports", "listen.port 50000", "control connections");
    // Only listeners that are there: listen.port is not listened on in mode implicit, nor
    // tls.implicitPort without TLS, and port 0 picks a free port.
    assert.equal(env({ BERTH_TLS_MODE: "implicit", BERTH_LISTEN_PORT: "50000" })().listen.port, 50000);
    assert.equal(env({ BERTH_TLS_IMPLICIT_PORT: "50050" })().tls.implicitPort, 50050);
    assert.equal(env({ BERTH_TLS_MODE: "both", BERTH_LISTEN_PORT: "0", BERTH_TLS_IMPLICIT_PORT: "0", BERTH_PASSIVE_PORTS: "1-65535" })().listen.port, 0);
  });
});

void describe("redactConfig", () => {
  void test("keeps ordinary values and hides secret-named ones", () => {
    const config = loadConfig({ cwd: workdir(), env: { BERTH_TLS_KEY: "/etc/berth/key.pem" } });
    const shown = redactConfig(config);
    assert.equal(shown.tls?.key, "/etc/berth/key.pem");
    assert.equal(shown.listen?.port, 2121);
    const withSecret = { ...config, tls: { ...config.tls, passphrase: "hunter2" } };
    assert.equal(redactConfig(withSecret).tls?.passphrase, "[hidden]");
    assert.ok(!Object.isFrozen(shown));
  });
});
