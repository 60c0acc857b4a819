/** Connected pairs of real TCP (and TLS) sockets on 127.0.0.1, for tests of the data path below a server. */
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { connect as tlsConnect, createSecureContext, TLSSocket } from "node:tls";
import { makeSelfSigned } from "../../src/data/selfsigned.ts";

/** [server side, client side]. With `pauseOnConnect`, the server side reads nothing until resumed,
 * as the passive listener hands it over. */
export async function socketPair(pauseOnConnect = false): Promise<[Socket, Socket]> {
  const srv = createServer({ pauseOnConnect });
  srv.listen(0, "127.0.0.1");
  await once(srv, "listening");
  const port = (srv.address() as { port: number }).port;
  const client = connect(port, "127.0.0.1");
  const [server] = (await once(srv, "connection")) as [Socket];
  srv.close();
  return [server, client];
}

let material: { cert: string; key: string } | null = null;

/** A connected pair of TLS sockets over real TCP on 127.0.0.1, handshake done: [server side,
 * client side, the client's TCP socket under TLS]. The server side reads nothing more until resumed, as a data connection is handed
 * over after its handshake. */
export async function tlsSocketPair(): Promise<[TLSSocket, TLSSocket, Socket]> {
  material ??= makeSelfSigned(["127.0.0.1"], 2);
  const [rawServer, rawClient] = await socketPair(true);
  const server = new TLSSocket(rawServer, { isServer: true, secureContext: createSecureContext(material) });
  const client = tlsConnect({ socket: rawClient, rejectUnauthorized: false });
  await Promise.all([once(server, "secure"), once(client, "secureConnect")]);
  server.pause();
  return [server, client, rawClient];
}
