/**
 * The one-line error of a listen that the operator's system refuses: a kernel booted without IPv6
 * (ipv6.disable=1, as some hardened Docker hosts are) cannot bind the default listen.host "::",
 * and the error says how to listen on IPv4 alone instead of being an "unexpected error".
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { listenFailure } from "../src/cli/serve.ts";
import { DEFAULTS } from "../src/config/schema.ts";

/** An error as net.Server emits it when the socket's address family is not supported. */
function noIPv6(address: string, port: number): Error {
  return Object.assign(new Error(`listen EAFNOSUPPORT: address family not supported ${address}:${port}`), {
    code: "EAFNOSUPPORT",
    errno: -97,
    syscall: "listen",
    address,
    port,
  });
}

void describe("listen failures", () => {
  void test("no IPv6 on the system: one line naming the address, with listen.host 0.0.0.0 as the way out", () => {
    const err = listenFailure(noIPv6("::", 21), DEFAULTS);
    assert.ok(err !== undefined, "an operator error, not an unexpected one");
    assert.equal(err.message, "cannot listen on [::]:21: address family not supported (this system has no IPv6: listen on every IPv4 address with listen.host 0.0.0.0, e.g. BERTH_LISTEN_HOST=0.0.0.0)");
    assert.equal(err.exitCode, 1);
  });

  void test("the same error for an IPv4 address gets no IPv6 hint", () => {
    const err = listenFailure(noIPv6("127.0.0.1", 2121), DEFAULTS);
    assert.equal(err?.message, "cannot listen on 127.0.0.1:2121: address family not supported");
  });
});
