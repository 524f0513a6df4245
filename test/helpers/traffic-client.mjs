// Runs inside the client namespace. For every local address given, opens one TCP connection
// and sends one UDP datagram to the server, and prints what source the server saw, as JSON
// lines {"local","proto","seen"}. Every operation is bounded by a timeout.
//   node traffic-client.mjs SERVER PORT probe ADDRESS...
//   node traffic-client.mjs SERVER PORT hold ADDRESS   (one TCP connection kept open; each
//       line on stdin sends a ping and prints the answer, or "closed")
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

const [server = '', portText = '7000', mode = 'probe', ...addresses] = process.argv.slice(2);
const port = Number(portText);
const TIMEOUT_MS = 3000;

function out(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

function tcpProbe(local) {
  return new Promise((resolve) => {
    const socket = connect({ host: server, port, localAddress: local, timeout: TIMEOUT_MS });
    let buffer = '';
    const done = (seen) => {
      socket.destroy();
      resolve(seen);
    };
    socket.on('data', (data) => {
      buffer += data;
      if (buffer.includes('\n')) done(buffer.trim().split('\n')[0]);
    });
    socket.on('timeout', () => done(null));
    socket.on('error', () => done(null));
  });
}

function udpProbe(local) {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => finish(null), TIMEOUT_MS);
    const finish = (seen) => {
      clearTimeout(timer);
      socket.close();
      resolve(seen);
    };
    socket.on('message', (message) => finish(String(message).trim()));
    socket.on('error', () => finish(null));
    socket.bind(0, local, () => socket.send('probe', port, server));
  });
}

if (mode === 'probe') {
  for (const local of addresses) {
    out({ local, proto: 'tcp', seen: await tcpProbe(local) });
    out({ local, proto: 'udp', seen: await udpProbe(local) });
  }
} else if (mode === 'hold') {
  const socket = connect({ host: server, port, localAddress: addresses[0] });
  let state = 'open';
  socket.setEncoding('utf8');
  socket.on('data', (data) => {
    for (const line of data.trim().split('\n'))
      out({ local: addresses[0], proto: 'tcp', seen: line });
  });
  socket.on('close', () => {
    state = 'closed';
    out({ event: 'closed' });
  });
  socket.on('error', () => undefined);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => {
    if (state === 'open') socket.write('ping\n');
    else out({ event: 'closed' });
  });
  lines.on('close', () => {
    socket.destroy();
    process.exit(0);
  });
  setTimeout(() => process.exit(0), 120000).unref();
}
