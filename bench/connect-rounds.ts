/**
 * The interleaved rounds of one layout: the C client (connect-client.c) in the client
 * namespace and a node server (connect-server.ts) in the server namespace; rounds of connects
 * from the reference, the first and the last client in turn, to each destination in turn,
 * after a check that the gateway translates each client as expected and a warm-up.
 */
import { fileURLToPath } from 'node:url';
import { ChildLines } from './child-lines.js';
import type { ConnectSite, ConnectTopology } from './netns.js';
import { median } from './report.js';

/**
 * Where the connects go. `fresh`: 1024 listening server ports in turn, so a client's 64-port
 * block rarely meets a tuple it used to the same destination within the 10 s a reset
 * connection's conntrack entry lives. `closed`: one server port nobody listens on, answered
 * with RST (issue 13's independent measurement); the kernel deletes the entry of a connection
 * whose only reply was a RST at once (nf_conntrack_proto_tcp.c, "If only reply is a RST"), so
 * no tuple stays taken. `same`: one listening server port, every connection accepted and
 * reset by the client, so after 64 connects every tuple of a client's block is held by a
 * closed entry for 10 s and each new connect must search the block and evict one
 * (nf_nat_core.c, nf_nat_used_tuple_harder: only the last 32 of the 64 attempts may evict),
 * while MASQUERADE keeps the client's own, new, port.
 */
export type Destination = 'fresh' | 'closed' | 'same';

/** How the sections name each destination. */
export const DESTINATION_TEXT: Readonly<Record<Destination, string>> = {
  fresh: '1024 listening server ports in turn',
  closed: 'one closed server port (RST)',
  same: 'one listening server port',
};

export interface ConnectSettings {
  /** Connects per address and destination (after the warm-up), unless time runs out first. */
  readonly connectsPerAddress: number;
  readonly roundSize: number;
  /** Time limit of the measuring rounds of one layout. */
  readonly layoutTimeMs: number;
  readonly destinations: readonly Destination[];
}

export type Role = 'reference' | 'first' | 'last';
const ROLES: readonly Role[] = ['reference', 'first', 'last'];

export interface LayoutTimes {
  /** Median over all connects of the role, in µs. */
  readonly median: Readonly<Record<Role, number>>;
  /** The 90th percentile over all connects of the role, in µs. */
  readonly p90: Readonly<Record<Role, number>>;
  /**
   * Median over the cycles of (the role's round median / the reference's round median in the
   * same cycle). The machine drifts between a fast and a slow regime for seconds at a time;
   * pairing each round with the reference's neighbouring round cancels that, pooling does not.
   */
  readonly ratio: Readonly<Record<'first' | 'last', number>>;
  readonly counts: Readonly<Record<Role, number>>;
  /** Connects that neither connected nor were refused (a time-out: the SYN was dropped). */
  readonly failures: number;
}

const PROBE_PORT = 7000;
const FIRST_SERVER_PORT = 7001;
const SERVER_PORTS = 1024;
/** Nothing listens here: the server's kernel answers with RST. */
const CLOSED_PORT = 6999;
const PORTS: Readonly<Record<Destination, { first: number; count: number }>> = {
  fresh: { first: FIRST_SERVER_PORT, count: SERVER_PORTS },
  closed: { first: CLOSED_PORT, count: 1 },
  same: { first: FIRST_SERVER_PORT, count: 1 },
};
const WARM_UP = 100;
/**
 * Each role counts up its own local ports: MASQUERADE keeps the source port, so two addresses
 * sharing ports would collide on the gateway's address and pay for a port search.
 */
const FIRST_LOCAL_PORT: Readonly<Record<Role, number>> = {
  reference: 10000,
  first: 26000,
  last: 42000,
};
const LOCAL_PORTS_PER_ROLE = 16000;
const SERVER_SCRIPT = fileURLToPath(new URL('./connect-server.js', import.meta.url));

/** What the rounds to one destination have measured so far. */
interface Collected {
  readonly destination: Destination;
  readonly micros: Record<Role, number[]>;
  readonly cycleRatios: Record<'first' | 'last', number[]>;
  failures: number;
}

function percentile(values: readonly number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN;
}

/** The client's answer: "connected C refused R failed F", then the samples in ns. */
function parseAnswer(text: string): { micros: number[]; failures: number } {
  const [counts = '', samples = ''] = text.split('\n');
  const failed = /failed (\d+)/.exec(counts);
  if (!failed) throw new Error(`the connect client answered "${text.slice(0, 200)}"`);
  const micros = samples
    .split(' ')
    .filter((sample) => sample !== '')
    .map((ns) => Number(ns) / 1000);
  return { micros, failures: Number(failed[1]) };
}

function timesOf(
  micros: Readonly<Record<Role, readonly number[]>>,
  cycleRatios: Readonly<Record<'first' | 'last', readonly number[]>>,
  failures: number,
): LayoutTimes {
  const each = (measure: (values: readonly number[]) => number) => ({
    reference: measure(micros.reference),
    first: measure(micros.first),
    last: measure(micros.last),
  });
  return {
    median: each(median),
    p90: each((values) => percentile(values, 0.9)),
    ratio: { first: median(cycleRatios.first), last: median(cycleRatios.last) },
    counts: each((values) => values.length),
    failures,
  };
}

export async function measureRounds(
  site: ConnectSite,
  topology: ConnectTopology,
  addresses: Readonly<Record<Role, string>>,
  check: (address: string, seen: string) => void,
  settings: ConnectSettings,
  clientBinary: string,
): Promise<Readonly<Partial<Record<Destination, LayoutTimes>>>> {
  const destinations = settings.destinations.length;
  const perRole = (WARM_UP + settings.connectsPerAddress + settings.roundSize) * destinations;
  if (perRole > LOCAL_PORTS_PER_ROLE) {
    const most = Math.floor(LOCAL_PORTS_PER_ROLE / destinations) - WARM_UP - settings.roundSize;
    throw new Error(`at most ${most} connects per address and destination`);
  }
  const server = new ChildLines(
    topology.server.spawn([
      process.execPath,
      SERVER_SCRIPT,
      `${FIRST_SERVER_PORT}`,
      `${SERVER_PORTS}`,
      '600',
      site.anyAddress,
    ]),
  );
  try {
    await server.waitFor((line) => line === 'ready', 15000);
    const nextPort: Record<Role, number> = { reference: 0, first: 0, last: 0 };
    const round = (role: Role, destination: Destination, count: number) => {
      const localPort = FIRST_LOCAL_PORT[role] + nextPort[role];
      nextPort[role] += count;
      const ports = PORTS[destination];
      const args = [addresses[role], site.serverAddress, ports.first, ports.count, count];
      return parseAnswer(topology.client.exec([clientBinary, ...args.map(String), `${localPort}`]));
    };
    for (const role of ROLES) {
      const seen = topology.client.exec([
        clientBinary,
        addresses[role],
        site.serverAddress,
        `${PROBE_PORT}`,
        'probe',
      ]);
      check(addresses[role], seen.trim());
      for (const destination of settings.destinations) round(role, destination, WARM_UP);
    }
    const collected = settings.destinations.map((destination): Collected => ({
      destination,
      micros: { reference: [], first: [], last: [] },
      cycleRatios: { first: [], last: [] },
      failures: 0,
    }));
    const deadline = Date.now() + settings.layoutTimeMs;
    const unfinished = () =>
      collected.some((each) =>
        ROLES.some((role) => each.micros[role].length < settings.connectsPerAddress),
      );
    while (Date.now() < deadline && unfinished()) {
      for (const each of collected) {
        const cycle: Partial<Record<Role, number>> = {};
        for (const role of ROLES) {
          const answer = round(role, each.destination, settings.roundSize);
          each.failures += answer.failures;
          each.micros[role].push(...answer.micros);
          cycle[role] = median(answer.micros);
        }
        for (const role of ['first', 'last'] as const) {
          each.cycleRatios[role].push(
            (cycle[role] ?? Number.NaN) / (cycle.reference ?? Number.NaN),
          );
        }
      }
    }
    return Object.fromEntries(
      collected.map((each) => [
        each.destination,
        timesOf(each.micros, each.cycleRatios, each.failures),
      ]),
    );
  } finally {
    await server.stop();
  }
}
