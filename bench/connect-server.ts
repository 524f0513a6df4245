/**
 * Runs inside the server namespace. Listens on PORT_COUNT measurement ports from FIRST_PORT
 * (connections are accepted and dropped: the client resets them at once) and on one probe port
 * (FIRST_PORT - 1) that answers with the source address and port it saw (`address:port`, the
 * port after the last colon), so the benchmark can check that the gateway translated as the
 * layout says. Listens on HOST (`0.0.0.0` or `::`). Prints "ready"; exits when stdin closes or
 * after LIFETIME seconds.
 *   node connect-server.js FIRST_PORT PORT_COUNT LIFETIME HOST
 */
import { createServer, type Socket } from 'node:net';

const [firstText = '7001', countText = '64', lifetimeText = '600', host = '0.0.0.0'] =
  process.argv.slice(2);
const firstPort = Number(firstText);
const portCount = Number(countText);

function listen(port: number, onConnection: (socket: Socket) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      onConnection(socket);
    });
    server.once('error', reject);
    server.listen({ port, host, backlog: 4096 }, resolve);
  });
}

const listening = [
  listen(firstPort - 1, (socket) =>
    socket.end(`${socket.remoteAddress ?? ''}:${String(socket.remotePort ?? 0)}\n`),
  ),
];
for (let port = firstPort; port < firstPort + portCount; port++) {
  listening.push(listen(port, (socket) => socket.destroy()));
}
await Promise.all(listening);
process.stdout.write('ready\n');
setTimeout(() => process.exit(0), Number(lifetimeText) * 1000).unref();
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
