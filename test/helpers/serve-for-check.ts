/**
 * A standalone berth for checks by hand with outside clients (FileZilla, curl, lftp):
 * plain and explicit FTPS on one port, implicit FTPS on another, a fixed passive range.
 * Prints one JSON line with the ports and the data directory, then runs until killed.
 *
 *   node --import tsx test/helpers/serve-for-check.ts [PASSIVE_RANGE]
 */
import { startTestServer } from "./server.ts";

const range = process.argv[2] ?? "41800-41849";
const t = await startTestServer({
  config: { tls: { mode: "both", implicitPort: 0 }, passive: { ports: range, address: "" }, log: { level: "info" } },
});
process.stdout.write(
  JSON.stringify({ port: t.port, implicitPort: t.implicitPort, passive: range, home: t.home("alice") }) + "\n",
);

const stop = (): void => {
  void t.close().finally(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
