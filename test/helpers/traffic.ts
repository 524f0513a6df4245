/** Real traffic through a test topology: see traffic-server.mjs and traffic-client.mjs. */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { resolve } from 'node:path';
import { SERVER_ADDRESS, type Topology } from './netns.js';

const SERVER_SCRIPT = resolve('test/helpers/traffic-server.mjs');
const CLIENT_SCRIPT = resolve('test/helpers/traffic-client.mjs');
const PORT = '7000';

export interface Seen {
  readonly address: string;
  readonly port: number;
}

export interface Probe {
  readonly local: string;
  readonly proto: 'tcp' | 'udp';
  readonly seen: Seen | undefined;
}

function parseSeen(text: string | null | undefined): Seen | undefined {
  const match = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text ?? '');
  return match?.[1] && match[2] ? { address: match[1], port: Number(match[2]) } : undefined;
}

function lines(child: ChildProcess): AsyncIterator<string> {
  if (!child.stdout) throw new Error('child has no stdout');
  return createInterface({ input: child.stdout })[Symbol.asyncIterator]();
}

async function nextLine(
  iterator: AsyncIterator<string>,
  timeoutMs: number,
  what: string,
): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer from ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    const result = await Promise.race([iterator.next(), timeout]);
    if (result.done) throw new Error(`${what} ended`);
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

export interface Server {
  stop(): void;
}

export async function startServer(net: Topology, lifetimeSeconds = 300): Promise<Server> {
  const child = net.spawn(net.server, ['node', SERVER_SCRIPT, PORT, String(lifetimeSeconds)]);
  const stop = () => {
    child.stdin?.end();
    child.kill();
  };
  try {
    expectLine(await nextLine(lines(child), 10000, 'the traffic server'), 'ready');
  } catch (error) {
    stop();
    throw error;
  }
  return { stop };
}

function expectLine(line: string, expected: string): void {
  if (line !== expected) throw new Error(`expected "${expected}", got "${line}"`);
}

/** One TCP connection and one UDP datagram from each local address; what the server saw. */
export function probe(net: Topology, addresses: readonly string[]): Promise<Probe[]> {
  const output = net.exec(net.client, [
    'node',
    CLIENT_SCRIPT,
    SERVER_ADDRESS,
    PORT,
    'probe',
    ...addresses,
  ]);
  return Promise.resolve(
    output
      .trim()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const parsed = JSON.parse(line) as {
          local: string;
          proto: 'tcp' | 'udp';
          seen: string | null;
        };
        return { local: parsed.local, proto: parsed.proto, seen: parseSeen(parsed.seen) };
      }),
  );
}

export interface HeldConnection {
  readonly seen: Seen;
  /** Sends a ping over the same connection; the source the server saw, or undefined if closed. */
  ping(): Promise<Seen | undefined>;
  close(): void;
}

export async function holdConnection(net: Topology, local: string): Promise<HeldConnection> {
  const child = net.spawn(net.client, ['node', CLIENT_SCRIPT, SERVER_ADDRESS, PORT, 'hold', local]);
  const iterator = lines(child);
  const read = async (): Promise<Seen | undefined> => {
    const parsed = JSON.parse(await nextLine(iterator, 5000, `the connection from ${local}`)) as {
      seen?: string;
    };
    return parseSeen(parsed.seen);
  };
  const close = () => {
    child.stdin?.end();
    child.kill();
  };
  const seen = await read();
  if (!seen) {
    close();
    throw new Error(`the connection from ${local} did not open`);
  }
  return {
    seen,
    ping: () => {
      child.stdin?.write('ping\n');
      return read().catch(() => undefined);
    },
    close,
  };
}
