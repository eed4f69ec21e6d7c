/** An app under test on a free loopback port. */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export function listen(app: { listen(port: number, host: string, cb: () => void): Server }): Promise<Server> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** http://127.0.0.1:<port> of a listening server. */
export const urlOf = (server: Server): string => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
