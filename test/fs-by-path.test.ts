/**
 * The jail's suites, in process and over FTP against a real server, with the shortcut below the
 * held root off (fs/beneath.ts): every operation takes the way through fs/pin.ts, as on a kernel
 * without openat2 or under a seccomp filter that refuses it. The same files run with the shortcut
 * on under their own names.
 */
import { setBeneathForTest } from "../src/fs/beneath.ts";

setBeneathForTest(false);
await import("./fs-jail.test.ts");
await import("./fs-pin.test.ts");
// And the attacks over a real socket, against a server whose jails take that way too.
await import("./jail.test.ts");

const { after } = await import("node:test");
const { beneathNow } = await import("../src/fs/beneath.ts");
const assert = (await import("node:assert/strict")).default;
after(() => assert.equal(beneathNow(), false, "the shortcut came back on during the suites"));
