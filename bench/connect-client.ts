/**
 * Runs inside the client namespace and times TCP connects through the gateway. Each stdin line
 * is a JSON request {"address","count","localPort"}: `count` connects one after the other from
 * `address`, with local ports counting up from `localPort` and the server port cycling over the
 * measurement ports, so no NAT tuple is reused while the gateway still remembers it. A connect
 * is timed from connect() to the established socket, then reset (SO_LINGER 0: no TIME_WAIT).
 * Answers one JSON line {"micros":[...],"failures":n} per request; {"probe":address} answers
 * {"seen":"address:port"} from the server's probe port.
 *   node connect-client.js SERVER FIRST_PORT PORT_COUNT
 */
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const [server = '', firstText = '7001', countText = '64'] = process.argv.slice(2);
const firstPort = Number(firstText);
const portCount = Number(countText);
const CONNECT_TIMEOUT_MS = 3000;

interface RoundRequest {
  readonly address: string;
  readonly count: number;
  readonly localPort: number;
}

/** Microseconds to establish one connection, or undefined when it failed or timed out. */
function timeConnect(
  address: string,
  localPort: number,
  port: number,
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const socket = connect({ host: server, port, localAddress: address, localPort });
    const timer = setTimeout(() => {
      finish(undefined);
    }, CONNECT_TIMEOUT_MS);
    const finish = (micros: number | undefined) => {
      clearTimeout(timer);
      socket.resetAndDestroy();
      resolve(micros);
    };
    socket.once('connect', () => {
      finish(Number(process.hrtime.bigint() - start) / 1000);
    });
    socket.once('error', () => {
      finish(undefined);
    });
  });
}

async function round(request: RoundRequest): Promise<{ micros: number[]; failures: number }> {
  const micros: number[] = [];
  let failures = 0;
  for (let i = 0; i < request.count; i++) {
    const port = firstPort + (i % portCount);
    const took = await timeConnect(request.address, request.localPort + i, port);
    if (took === undefined) failures++;
    else micros.push(Math.round(took * 10) / 10);
  }
  return { micros, failures };
}

function probe(address: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: server, port: firstPort - 1, localAddress: address });
    let seen = '';
    socket.setEncoding('utf8');
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => socket.destroy());
    socket.on('data', (chunk: string) => (seen += chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      resolve(seen.trim());
    });
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line) as RoundRequest | { probe: string };
  const answer = 'probe' in request ? { seen: await probe(request.probe) } : await round(request);
  process.stdout.write(JSON.stringify(answer) + '\n');
}
