import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AnnounceResolver, isDirectClient, type NetFacts } from "../src/data/announce.ts";

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
