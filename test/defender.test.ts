/**
 * The defender (issue "Abuse resistance"): scores that add up within a window and expire, bans that
 * expire and grow on repeat, the allow-list, the memory cap — first on a fake clock, then against a
 * real server: failed logins, limit refusals, protocol abuse and TLS handshake failures each scored,
 * a banned address refused at connect with 421 while other addresses go on, reload keeping bans,
 * and the same 530 (text and delay) for unknown users and wrong passwords.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { connect as tlsConnect } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { handleRequest } from "../src/admin/socket.ts";
import { Defender, type DefenderSettings } from "../src/auth/defender.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { Metrics } from "../src/log/metrics.ts";
import { RawClient, type Reply } from "./helpers/raw.ts";
import { startUpload } from "./helpers/uploads.ts";
import { withServer } from "./helpers/run.ts";
import { makeConfig, waitFor, type ConfigPatch } from "./helpers/server.ts";

const settings = (over: Partial<DefenderSettings> = {}): DefenderSettings => ({ ...DEFAULTS.defender, ...over });

/** Opens a control connection from `local` and reads the first reply (220, or 421 when refused). */
async function greet(port: number, local = "127.0.0.1"): Promise<{ client: RawClient; first: Reply }> {
  const client = await RawClient.open(port, "127.0.0.1", local);
  return { client, first: await client.reply() };
}

/** One failed login on a new connection from `local`; returns the reply to PASS. */
async function badLogin(port: number, local = "127.0.0.1", user = "alice"): Promise<Reply> {
  const { client, first } = await greet(port, local);
  try {
    if (first.code !== 220) return first;
    await client.expect(`USER ${user}`, 331);
    return await client.cmd("PASS wrong");
  } finally {
    await client.close();
  }
}

void describe("Defender (fake clock)", () => {
  it("bans at the threshold within the window; scores outside it do not add up; the ban expires", () => {
    let clock = 0;
    const d = new Defender(settings({ threshold: 30, observationTime: 100, banTime: 60 }), () => clock);
    d.record("10.0.0.1", "login");
    d.record("10.0.0.1", "login");
    assert.equal(d.score("10.0.0.1"), 20);
    clock += 100_000;
    assert.equal(d.score("10.0.0.1"), 0, "offences expire with the window");
    d.record("10.0.0.1", "login");
    d.record("10.0.0.1", "login");
    assert.equal(d.isBanned("10.0.0.1"), false);
    const ban = d.record("::ffff:10.0.0.1", "login");
    assert.ok(ban, "the IPv4-mapped form is the same client");
    assert.equal(ban.remaining, 60);
    assert.equal(ban.reason, "repeated failed logins");
    assert.equal(d.isBanned("10.0.0.1"), true);
    assert.equal(d.isBanned("10.0.0.2"), false);
    assert.equal(d.record("10.0.0.1", "login"), null, "a banned address is not scored again");
    clock += 59_999;
    assert.equal(d.isBanned("10.0.0.1"), true);
    clock += 1;
    assert.equal(d.isBanned("10.0.0.1"), false);
  });

  it("each repeated ban lasts banGrowth times longer, up to banTimeMax; forgotten after banTimeMax", () => {
    let clock = 0;
    const d = new Defender(settings({ threshold: 10, banTime: 10, banGrowth: 2, banTimeMax: 25 }), () => clock);
    const lengths: number[] = [];
    for (let i = 0; i < 4; i++) {
      const ban = d.record("2001:DB8::1", "abuse");
      assert.ok(ban);
      lengths.push(ban.remaining);
      clock = ban.until;
    }
    assert.deepEqual(lengths, [10, 20, 25, 25]);
    clock += 25_000;
    assert.equal(d.size, 0, "a quiet address is forgotten once banTimeMax has passed");
    assert.equal(d.record("2001:db8::1", "abuse")?.remaining, 10);
  });

  it("its own clock is steady: the wall clock set back (NTP, a restored virtual machine) does not make a ban last as much longer", () => {
    const realNow = Date.now;
    let step = 0;
    Date.now = () => realNow() + step;
    try {
      const d = new Defender(settings({ threshold: 10, banTime: 60 }));
      assert.ok(d.record("10.0.0.9", "login"));
      step = -3_600_000;
      const ban = d.banOf("10.0.0.9");
      assert.ok(ban !== null && ban.remaining <= 60, `${ban?.remaining} s left`);
    } finally {
      Date.now = realNow;
    }
  });

  it("never scores or bans the allow-list (IPv4, IPv6, IPv4-mapped)", () => {
    const d = new Defender(settings({ threshold: 1, allow: "192.168.0.0/16, fd00::/8" }));
    for (const a of ["192.168.4.5", "::ffff:192.168.4.5", "fd12::7"]) {
      assert.equal(d.record(a, "abuse"), null);
      assert.equal(d.isBanned(a), false);
    }
    assert.equal(d.size, 0);
    assert.ok(d.record("192.169.0.1", "abuse"));
  });

  it("scores each kind with its own weight; 0 means not scored; disabled scores nothing", () => {
    const d = new Defender(settings({ scoreLoginFailure: 1, scoreLimit: 0, scoreAbuse: 7 }));
    d.record("a", "login");
    d.record("a", "limit");
    d.record("a", "abuse");
    assert.equal(d.score("a"), 8);
    const off = new Defender(settings({ enabled: false, threshold: 1 }));
    off.record("b", "abuse");
    assert.equal(off.isBanned("b"), false);
  });

  it("memory is bounded: the least recently seen addresses are forgotten", () => {
    const d = new Defender(settings({ maxEntries: 100 }), () => 0);
    for (let i = 0; i < 1000; i++) d.record(`10.0.${i >> 8}.${i & 255}`, "login");
    assert.equal(d.size, 100);
    assert.equal(d.score("10.0.0.0"), 0);
    assert.equal(d.score("10.0.3.231"), 10);
  });

  it("configure() applies new settings and keeps the bans in effect", () => {
    const d = new Defender(settings({ threshold: 10 }));
    assert.ok(d.record("10.9.9.9", "abuse"));
    d.configure(settings({ threshold: 1000, scoreAbuse: 1 }));
    assert.equal(d.isBanned("10.9.9.9"), true);
    d.configure(settings({ allow: "10.0.0.0/8" }));
    assert.equal(d.isBanned("10.9.9.9"), false, "an address allowed from now on is no longer refused");
    d.configure(settings({ allow: "" }));
    assert.equal(d.isBanned("10.9.9.9"), true, "and refused again once the allow-list is emptied");
  });

  it("shows in `ctl status` and in the metrics", async () => {
    const d = new Defender(settings({ threshold: 10 }));
    d.record("10.1.1.1", "abuse", "overlong command lines");
    const target = { sessions: new Set(), started: performance.now(), version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
    const res = await handleRequest({ ...target, sessions: new Set(), defender: () => d.status() }, { cmd: "status" });
    const status = res.defender as ReturnType<Defender["status"]>;
    assert.equal(status.banned, 1);
    assert.equal(status.bans[0]?.address, "10.1.1.1");
    assert.equal(status.bans[0]?.reason, "overlong command lines");
    const text = new Metrics().render({ sessions: 0, passivePortsInUse: 0, passivePortsTotal: 5, defender: d.status(0) });
    assert.match(text, /^berth_banned_addresses 1$/m);
    assert.match(text, /^berth_bans_total 1$/m);
    assert.match(text, /^berth_defender_offences_total\{kind="abuse"\} 1$/m);
  });
});

/** A defender that bans after two failed logins, for one second, doubling up to four. */
const STRICT: ConfigPatch = {
  defender: { threshold: 20, scoreLoginFailure: 10, banTime: 1, banGrowth: 2, banTimeMax: 4, observationTime: 60 },
};

void describe("defender against a real server", () => {
  it("bans after failed logins: 421 at connect with the reason, other addresses go on, the ban expires and grows on repeat", async () => {
    await withServer(async (t) => {
      assert.equal((await badLogin(t.port)).code, 530);
      // The second failure bans the address; its own session is closed with the reason.
      const second = await badLogin(t.port);
      assert.equal(second.code, 421, second.message);
      assert.match(second.message, /banned for 1 s: repeated failed logins/);
      const refused = await greet(t.port);
      assert.equal(refused.first.code, 421);
      assert.match(refused.first.message, /banned.*repeated failed logins/);
      await refused.client.closed();
      // Bans are per address: 127.0.0.2 is not refused.
      const other = await greet(t.port, "127.0.0.2");
      assert.equal(other.first.code, 220);
      await other.client.close();

      await sleep(1100);
      const back = await RawClient.connect(t.port);
      await back.login();
      await back.close();

      // A repeat offence: the next ban lasts banGrowth (2) times as long.
      await badLogin(t.port);
      const again = await badLogin(t.port);
      assert.match(again.message, /banned for 2 s/);
      assert.equal(t.server.defender.banOf("127.0.0.1")?.bans, 2);
      assert.ok(t.logs.some((l) => l.event === "ban" && l.address === "127.0.0.1"));
    }, { config: STRICT });
  });

  it("a banned address that keeps connecting is seen: past defender.maxEntries the addresses not seen since are forgotten first, and the ban holds", async () => {
    await withServer(async (t) => {
      await badLogin(t.port, "127.0.0.2");
      assert.equal((await badLogin(t.port, "127.0.0.2")).code, 421);
      // Another address scores; then the banned one tries again, and is refused.
      assert.equal((await badLogin(t.port, "127.0.0.3")).code, 530);
      const refused = await greet(t.port, "127.0.0.2");
      assert.equal(refused.first.code, 421);
      await refused.client.closed();
      // A third address makes one too many: the one seen least recently is 127.0.0.3.
      assert.equal((await badLogin(t.port, "127.0.0.4")).code, 530);
      assert.equal(t.server.defender.score("127.0.0.3"), 0);
      const still = await greet(t.port, "127.0.0.2");
      assert.equal(still.first.code, 421, still.first.message);
      await still.client.closed();
    }, { config: { defender: { ...STRICT.defender, banTime: 60, banTimeMax: 60, maxEntries: 2 } } });
  });

  it("never bans an allow-listed address", async () => {
    await withServer(async (t) => {
      for (let i = 0; i < 6; i++) assert.equal((await badLogin(t.port)).code, 530);
      assert.equal(t.server.defender.isBanned("127.0.0.1"), false);
      const ok = await RawClient.connect(t.port);
      await ok.login();
      await ok.close();
      // The same failures from an address outside the list do ban it.
      await badLogin(t.port, "127.0.0.3");
      assert.equal((await badLogin(t.port, "127.0.0.3")).code, 421);
    }, { config: { defender: { ...STRICT.defender, allow: "127.0.0.1/32, ::1" } } });
  });

  it("scores connections refused by limits, and a ban closes the address's open sessions", async () => {
    await withServer(async (t) => {
      const a = await RawClient.connect(t.port);
      const b = await RawClient.connect(t.port);
      const third = await greet(t.port);
      assert.equal(third.first.code, 421);
      assert.equal(third.first.message, "Too many connections from your address");
      assert.equal(t.server.defender.score("127.0.0.1"), 10);
      await third.client.closed();
      // The refusal that reaches the threshold is told of the ban it starts, as the next one is.
      const fourth = await greet(t.port);
      assert.equal(fourth.first.code, 421);
      assert.match(fourth.first.message, /^Your address is banned for \d+ s: too many connections$/);
      await fourth.client.closed();
      // The threshold is reached: the two open sessions are told why and closed.
      for (const c of [a, b]) {
        const r = await c.expectReply(421);
        assert.match(r.message, /banned.*too many connections/);
        await c.closed();
      }
    }, { config: { limits: { maxSessionsPerAddress: 2 }, defender: { threshold: 20, scoreLimit: 10 } } });
  });

  it("a full server scores only the address that fills it: others refused by limits.maxSessions are not its offenders", async () => {
    await withServer(async (t) => {
      // Two addresses fill the server, one session each, and a third is refused: none of them
      // holds the server, so no one is scored (a flood from many addresses would otherwise get the
      // clients it keeps out banned).
      const a = await RawClient.connect(t.port, "127.0.0.1", "127.0.0.2");
      const b = await RawClient.connect(t.port, "127.0.0.1", "127.0.0.3");
      for (let i = 0; i < 3; i++) {
        const refused = await greet(t.port, "127.0.0.4");
        assert.equal(refused.first.code, 421);
        assert.equal(refused.first.message, "Too many connections; try again later");
        await refused.client.closed();
      }
      assert.equal(t.server.defender.score("127.0.0.4"), 0, "a client kept out of a full server is not scored");
      await b.expect("QUIT", 221);
      await b.closed();
      assert.ok(await waitFor(() => t.server.sessions.size === 1, 5000), "the session that quit is gone");
      // One address holding the whole server is its cause: its next tries are scored, up to a ban.
      const c = await RawClient.connect(t.port, "127.0.0.1", "127.0.0.2");
      const refused = await greet(t.port, "127.0.0.2");
      assert.equal(refused.first.message, "Too many connections; try again later");
      await refused.client.closed();
      assert.equal(t.server.defender.score("127.0.0.2"), 10);
      const banned = await greet(t.port, "127.0.0.2");
      assert.match(banned.first.message, /^Your address is banned for \d+ s: too many connections$/);
      await banned.client.closed();
      for (const s of [a, c]) {
        assert.match((await s.expectReply(421)).message, /banned.*too many connections/);
        await s.closed();
      }
    }, { config: { limits: { maxSessions: 2 }, defender: { threshold: 20, scoreLimit: 10 } } });
  });

  it("a ban cuts a running transfer of the address with 426 saying why, then closes its session with 421", async () => {
    await withServer(async (t) => {
      const a = await RawClient.connect(t.port);
      await a.login();
      const data = await startUpload(a, "STOR", "cut.bin", Buffer.alloc(64 * 1024, 7));
      data.on("error", () => undefined);
      assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.transfer !== null), 5000), "the upload runs");
      const refused = await greet(t.port);
      assert.equal(refused.first.code, 421);
      await refused.client.closed();
      const cut = await a.expectReply(426);
      assert.equal(cut.message, "Transfer aborted: your address is banned");
      assert.match((await a.expectReply(421)).message, /banned.*too many connections/);
      await a.closed();
      data.destroy();
    }, { config: { limits: { maxSessionsPerAddress: 1 }, defender: { threshold: 10, scoreLimit: 10 } } });
  });

  it("scores protocol abuse: overlong lines, floods of unknown commands, unused passive ports", async () => {
    await withServer(async (t) => {
      const c = await RawClient.connect(t.port);
      c.sendRaw(`${"A".repeat(600)}\r\n`);
      await c.expectReply(500);
      assert.equal(t.server.defender.score("127.0.0.1"), 1);
      for (let i = 0; i < 9; i++) await c.expect(`XYZZY${i % 2 ? "" : " arg"}`, 500);
      assert.equal(t.server.defender.score("127.0.0.1"), 1, "a few unknown commands are not scored");
      await c.expect("FOO", 502);
      assert.equal(t.server.defender.score("127.0.0.1"), 2, "the tenth is");
      await c.login();
      for (let i = 0; i < 3; i++) await c.expect("PASV", 227);
      await c.expect("EPSV", 229);
      assert.equal(t.server.defender.score("127.0.0.1"), 3, "three passive ports never connected to");
      await c.close();
      assert.ok(await waitFor(() => t.server.context.pool.used === 0, 2000));
    }, { config: { limits: { maxLineLength: 512 }, defender: { scoreAbuse: 1 } } });
  });

  it("scores TLS handshake failures on the implicit port", async () => {
    await withServer(async (t) => {
      const port = t.implicitPort ?? 0;
      for (let i = 0; i < 2; i++) {
        const s = connect({ port, host: "127.0.0.1" });
        s.on("error", () => undefined);
        await once(s, "connect");
        s.write("USER alice\r\nPASS alice-pw\r\n");
        await once(s, "close");
      }
      assert.ok(await waitFor(() => t.server.defender.score("127.0.0.1") === 2, 2000));
    }, { config: { tls: { mode: "both", implicitPort: 0 }, defender: { scoreAbuse: 1 } } });
  });

  it("does not score a client that asks for another application protocol (ALPN), and says so in the log", async () => {
    await withServer(async (t) => {
      const port = t.implicitPort ?? 0;
      for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
        const s = tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: false, maxVersion: version, ALPNProtocols: ["h2", "http/1.1"] });
        const err = await once(s, "error").then(([e]) => e as Error);
        assert.ok(err instanceof Error); // OpenSSL refuses the handshake (the client sees it cut)
        s.destroy();
      }
      assert.ok(await waitFor(() => t.logs.filter((l) => l.event === "tls-handshake-failed").length === 2, 2000));
      for (const l of t.logs.filter((l) => l.event === "tls-handshake-failed")) assert.match(String(l.msg), /application protocol \(ALPN\)/);
      assert.equal(t.server.defender.score("127.0.0.1"), 0);
    }, { config: { tls: { mode: "both", implicitPort: 0 }, defender: { scoreAbuse: 1 } } });
  });

  it("does not score a client that refuses the certificate", async () => {
    await withServer(async (t) => {
      const port = t.implicitPort ?? 0;
      // With TLS 1.2 the client's alert reaches the server before the handshake is over.
      for (const version of ["TLSv1.2", "TLSv1.2", "TLSv1.3"] as const) {
        const s = tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: true, maxVersion: version });
        const err = await once(s, "error").then(([e]) => e as Error);
        assert.match(err.message, /self[- ]signed|certificate/i);
        s.destroy();
      }
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(t.server.defender.score("127.0.0.1"), 0);
    }, { config: { tls: { mode: "both", implicitPort: 0 }, defender: { scoreAbuse: 1 } } });
  });

  it("reload applies new defender settings and keeps current bans", async () => {
    await withServer(async (t) => {
      await badLogin(t.port);
      await badLogin(t.port);
      assert.equal(t.server.defender.isBanned("127.0.0.1"), true);
      const next = makeConfig(t.root, { ...STRICT, defender: { ...STRICT.defender, scoreLoginFailure: 1 } });
      const result = t.server.reload({ ...next, passive: t.config.passive, users: t.config.users, storage: t.config.storage });
      assert.ok(result.applied.includes("defender.scoreLoginFailure"), JSON.stringify(result));
      assert.equal(t.server.defender.isBanned("127.0.0.1"), true, "the ban survives the reload");
      assert.equal((await greet(t.port)).first.code, 421);
      await badLogin(t.port, "127.0.0.2");
      assert.equal(t.server.defender.score("127.0.0.2"), 1, "new scores use the new settings");
    }, { config: { ...STRICT, defender: { ...STRICT.defender, banTime: 30, banTimeMax: 30 } } });
  });

  it("unknown users and wrong passwords get the same 530 text after about the same delay", async () => {
    await withServer(async (t) => {
      const timed = async (user: string): Promise<{ text: string; ms: number }> => {
        const c = await RawClient.connect(t.port);
        await c.expect(`USER ${user}`, 331);
        const started = performance.now();
        const r = await c.expect("PASS not-the-password", 530);
        const ms = performance.now() - started;
        await c.close();
        return { text: r.lines.join("\n"), ms };
      };
      const known = await timed("alice");
      const unknown = await timed("nobody-here");
      assert.equal(unknown.text, known.text);
      // Loose on purpose (a busy machine): both wait out failedLoginDelay, neither much longer.
      for (const r of [known, unknown]) assert.ok(r.ms >= 280 && r.ms < 1500, `530 after ${r.ms} ms`);
      assert.ok(Math.abs(known.ms - unknown.ms) < 400, `${known.ms} vs ${unknown.ms} ms`);
    }, { config: { limits: { failedLoginDelay: 0.3 } } });
  });

  it("a wall clock stepped while a password is checked neither holds the 530 for as long as the step nor skips the delay", async () => {
    await withServer(async (t) => {
      const realNow = Date.now;
      let step = 0;
      const real = t.store.authenticate.bind(t.store);
      t.store.authenticate = async (name: string, password: string) => {
        const user = await real(name, password);
        // NTP, or a virtual machine resumed, sets the clock while the check runs.
        Date.now = () => realNow() + step;
        return user;
      };
      const failed = async (): Promise<number> => {
        const c = await RawClient.connect(t.port);
        try {
          await c.expect("USER alice", 331);
          const started = performance.now();
          // Timed by a timer of its own: the client's wait reads the stepped clock too.
          const r = await Promise.race([c.cmd("PASS not-the-password", 60_000), sleep(5000, null, { ref: false })]);
          assert.ok(r !== null, "no 530 within 5 s");
          assert.equal(r.code, 530);
          return performance.now() - started;
        } finally {
          Date.now = realNow;
          c.socket.destroy();
        }
      };
      try {
        step = -3_600_000;
        await failed();
        step = 3_600_000;
        const ms = await failed();
        assert.ok(ms >= 280, `530 after ${ms} ms`);
      } finally {
        Date.now = realNow;
      }
    }, { config: { limits: { failedLoginDelay: 0.3 } } });
  });
});
