/** A connected pair of real TCP sockets on 127.0.0.1, for tests of the data path below a server. */
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";

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
