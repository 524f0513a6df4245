// Runs inside the server namespace: answers every TCP connection and UDP datagram with the
// source address and port it saw ("address:port\n"), so the client learns its translated
// source. Stops by itself after the given number of seconds, or when stdin closes.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

const port = Number(process.argv[2] ?? 7000);
const lifetimeSeconds = Number(process.argv[3] ?? 60);

const tcp = createServer((socket) => {
  socket.on('error', () => socket.destroy());
  socket.on('data', () => socket.write(`${socket.remoteAddress}:${socket.remotePort}\n`));
  socket.write(`${socket.remoteAddress}:${socket.remotePort}\n`);
});
const udp = createSocket('udp4');
udp.on('message', (_message, remote) =>
  udp.send(`${remote.address}:${remote.port}\n`, remote.port, remote.address),
);

let pending = 2;
const ready = () => {
  if (--pending === 0) process.stdout.write('ready\n');
};
tcp.listen(port, '0.0.0.0', ready);
udp.bind(port, '0.0.0.0', ready);

const stop = () => process.exit(0);
setTimeout(stop, lifetimeSeconds * 1000).unref();
process.stdin.on('end', stop);
process.stdin.resume();
