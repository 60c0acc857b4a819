import assert from "node:assert/strict";
import { networkInterfaces } from "node:os";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AnnounceResolver, isDirectClient, LOOKUP_WAIT_MS, readNetFacts, type LookupV4, type NetFacts } from "../src/data/announce.ts";
import { dataConnect, RawClient, readAll } from "./helpers/raw.ts";
import { withServer } from "./helpers/run.ts";

/** A container on a bridge: 172.17.0.5/16 behind gateway 172.17.0.1. */
const bridge: NetFacts = { interfaces: [{ address: "172.17.0.5", netmask: "255.255.0.0" }], gateway: "172.17.0.1" };
/** A LAN server: 192.168.1.10/24 behind router 192.168.1.1. */
const lan: NetFacts = {
  interfaces: [
    { address: "127.0.0.1", netmask: "255.0.0.0" },
    { address: "192.168.1.10", netmask: "255.255.255.0" },
  ],
  gateway: "192.168.1.1",
};

describe("which address PASV announces", () => {
  it("treats loopback clients and clients on our subnet as direct", () => {
    assert.equal(isDirectClient("127.0.0.1", "127.0.0.1", lan), true);
    assert.equal(isDirectClient("192.168.1.10", "192.168.1.20", lan), true);
    assert.equal(isDirectClient("::ffff:192.168.1.10", "::ffff:192.168.1.20", lan), true);
    assert.equal(isDirectClient("172.17.0.5", "172.17.0.6", bridge), true, "another container on the bridge");
  });

  it("treats the gateway (NAT: Docker's published ports, hairpin NAT) and other networks as remote", () => {
    assert.equal(isDirectClient("172.17.0.5", "172.17.0.1", bridge), false);
    assert.equal(isDirectClient("192.168.1.10", "192.168.1.1", lan), false);
    assert.equal(isDirectClient("172.17.0.5", "192.168.1.20", bridge), false, "LAN client DNATed into a container");
    assert.equal(isDirectClient("192.168.1.10", "203.0.113.7", lan), false);
  });

  it("announces passive.address to remote clients and the local address to direct ones", async () => {
    const r = new AnnounceResolver("198.51.100.9", lan);
    assert.equal(await r.forConnection("192.168.1.10", "203.0.113.7"), "198.51.100.9");
    assert.equal(await r.forConnection("192.168.1.10", "192.168.1.20"), "192.168.1.10");
    assert.equal(await r.forConnection("127.0.0.1", "127.0.0.1"), "127.0.0.1");
  });

  it("announces the local address to everyone when passive.address is empty, and resolves hostnames", async () => {
    assert.equal(await new AnnounceResolver("", lan).forConnection("192.168.1.10", "203.0.113.7"), "192.168.1.10");
    assert.equal(await new AnnounceResolver("localhost", lan).forConnection("192.168.1.10", "203.0.113.7"), "127.0.0.1");
  });

  it("has nothing to announce on an IPv6 control connection without passive.address (EPSV is the way)", async () => {
    assert.equal(await new AnnounceResolver("", lan).forConnection("::1", "::1"), null);
  });
});

/** A non-loopback IPv4 address of this machine, or null. A client that connects to 127.0.0.1 from
 * it reaches the server through no subnet of the server's local address: one PASV answers with
 * passive.address, as it would a client from the internet. */
function outsideAddress(): string | null {
  for (const list of Object.values(networkInterfaces())) {
    const found = list?.find((i) => i.family === "IPv4" && !i.internal);
    if (found) return found.address;
  }
  return null;
}
const OUTSIDE = outsideAddress();

describe("passive.address over a real connection", { skip: OUTSIDE === null ? "no non-loopback IPv4 address on this machine" : false }, () => {
  it("a host name that does not resolve gives PASV 425 and the operator one warning naming passive.address, not one per PASV", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port, "127.0.0.1", OUTSIDE ?? undefined);
        try {
          await raw.login();
          await raw.expect("PASV", 425);
          await raw.expect("PASV", 425);
          // EPSV announces no address: it still works.
          await raw.expect("EPSV", 229);
        } finally {
          await raw.close();
        }
        const lines = t.logs.filter((l) => l.event === "passive-address");
        assert.equal(lines.length, 1, JSON.stringify(lines));
        assert.equal(lines[0]?.level, 40);
        assert.equal(lines[0]?.address, "ftp.invalid");
        assert.match(String(lines[0]?.msg), /^passive\.address ftp\.invalid cannot be resolved to an IPv4 address \(.+\): PASV from outside gets 425 until it does$/);
      },
      { config: { passive: { address: "ftp.invalid" } } },
    );
  });

  it("a host name that resolves is announced to a client from outside, and its data connection is taken", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port, "127.0.0.1", OUTSIDE ?? undefined);
        try {
          await raw.login();
          const r = await raw.expect("PASV", 227);
          const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(r.message);
          assert.ok(m, r.message);
          assert.equal(m.slice(1, 5).join("."), "127.0.0.1");
          const data = await dataConnect(Number(m[5]) * 256 + Number(m[6]), "127.0.0.1", OUTSIDE ?? undefined);
          raw.send("NLST");
          await raw.expectReply(150);
          await readAll(data);
          await raw.expectReply(226);
        } finally {
          await raw.close();
        }
        assert.equal(t.logs.filter((l) => l.event === "passive-address").length, 0);
      },
      { config: { passive: { address: "localhost" } } },
    );
  });
});

describe("passive.address while its resolver is slow or down", { skip: OUTSIDE === null ? "no non-loopback IPv4 address on this machine" : false }, () => {
  it("PASV announces the last address within LOOKUP_WAIT_MS while a new lookup hangs, and sessions share one lookup", async () => {
    await withServer(async (t) => {
      let calls = 0;
      let answer: ((ip: string) => void) | null = null;
      // The first lookup answers at once; the ones after it hang until the test lets them answer.
      const lookupV4: LookupV4 = (name) => {
        calls++;
        assert.equal(name, "ftp.example.com");
        if (calls === 1) return Promise.resolve("127.0.0.1");
        return new Promise((resolve) => {
          answer = resolve;
        });
      };
      (t.server.context as { announce: AnnounceResolver }).announce = new AnnounceResolver("ftp.example.com", readNetFacts(), 50, t.server.context.logger, lookupV4);
      const clients = await Promise.all([0, 1, 2, 3].map(() => RawClient.connect(t.port, "127.0.0.1", OUTSIDE ?? undefined)));
      try {
        for (const c of clients) await c.login();
        assert.match((await (clients[0] as RawClient).expect("PASV", 227)).message, /\(127,0,0,1,/);
        await sleep(100); // the cached address is now older than its 50 ms
        const started = Date.now();
        const replies = await Promise.all(clients.map((c) => c.expect("PASV", 227)));
        const took = Date.now() - started;
        for (const r of replies) assert.match(r.message, /\(127,0,0,1,/);
        assert.ok(took < LOOKUP_WAIT_MS + 1000, `PASV took ${took} ms while the lookup hung`);
        assert.equal(calls, 2, "one lookup for all the sessions' PASVs");
        (answer as ((ip: string) => void) | null)?.("127.0.0.1");
      } finally {
        for (const c of clients) await c.close();
      }
    });
  });
});

describe("passive.address that has never resolved", () => {
  it("is asked again only after the TTL, as one that stopped resolving is: PASVs from outside meanwhile get 425 at once, without waiting for the resolver again", async () => {
    let calls = 0;
    let resolves = false;
    const lookupV4: LookupV4 = () => {
      calls++;
      return resolves ? Promise.resolve("198.51.100.9") : Promise.reject(Object.assign(new Error("getaddrinfo EAI_AGAIN ftp.example.com"), { code: "EAI_AGAIN" }));
    };
    const r = new AnnounceResolver("ftp.example.com", lan, 100, null, lookupV4);
    assert.equal(await r.forConnection("192.168.1.10", "203.0.113.7"), null);
    assert.equal(await r.forConnection("192.168.1.10", "203.0.113.7"), null);
    assert.equal(await r.forConnection("192.168.1.10", "203.0.113.7"), null);
    assert.equal(calls, 1, "a failed lookup is not made again within the TTL");
    // Direct clients never needed the name.
    assert.equal(await r.forConnection("192.168.1.10", "192.168.1.20"), "192.168.1.10");
    resolves = true;
    await sleep(150);
    assert.equal(await r.forConnection("192.168.1.10", "203.0.113.7"), "198.51.100.9");
    assert.equal(calls, 2);
  });
});

describe("passive.address across a reload", { skip: OUTSIDE === null ? "no non-loopback IPv4 address on this machine" : false }, () => {
  it("a reload that leaves the name as it was keeps its last address: PASV from outside asks the name again, and announces the last address while it does not resolve", async () => {
    await withServer(
      async (t) => {
        // Resolved once (as at start), then the resolver stops answering: ftp.invalid never resolves.
        (t.server.context as { announce: AnnounceResolver }).announce = new AnnounceResolver("ftp.invalid", readNetFacts(), 30_000, t.server.context.logger, () => Promise.resolve("127.0.0.1"));
        const before = await RawClient.connect(t.port, "127.0.0.1", OUTSIDE ?? undefined);
        try {
          await before.login();
          assert.match((await before.expect("PASV", 227)).message, /\(127,0,0,1,/);
        } finally {
          await before.close();
        }
        // A reload for something else (a renewed certificate, say).
        t.server.reload({ ...t.config, limits: { ...t.config.limits, idleTimeout: 301 } });
        const after = await RawClient.connect(t.port, "127.0.0.1", OUTSIDE ?? undefined);
        try {
          await after.login();
          assert.match((await after.expect("PASV", 227)).message, /\(127,0,0,1,/);
        } finally {
          await after.close();
        }
      },
      { config: { passive: { address: "ftp.invalid" } } },
    );
  });
});

describe("the start-up check of passive.address", () => {
  it("a host name is judged by what it resolves to: one that resolves to loopback warns as 127.0.0.1 would, naming both", async () => {
    await withServer(
      async (t) => {
        const checks = t.logs.filter((l) => l.event === "passive-check").map((l) => l.msg);
        assert.deepEqual(checks, ["passive.address is localhost (127.0.0.1 here): only clients on this machine can open passive data connections"]);
      },
      { config: { listen: { host: "0.0.0.0" }, passive: { address: "localhost" } } },
    );
    // The address itself, as before.
    await withServer(
      async (t) => {
        const checks = t.logs.filter((l) => l.event === "passive-check").map((l) => l.msg);
        assert.deepEqual(checks, ["passive.address is 127.0.0.1: only clients on this machine can open passive data connections"]);
      },
      { config: { listen: { host: "0.0.0.0" }, passive: { address: "127.0.0.1" } } },
    );
  });
});
