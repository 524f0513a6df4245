/**
 * The interleaved rounds of one layout: a connect client in the client namespace and a server
 * in the server namespace (both node, see connect-client.ts and connect-server.ts); rounds of
 * connects from the reference, the first and the last client in turn, after a check that the
 * gateway translates each as expected and a warm-up.
 */
import { fileURLToPath } from 'node:url';
import { ChildLines } from './child-lines.js';
import type { ConnectSite, ConnectTopology } from './netns.js';
import { median } from './report.js';

export interface ConnectSettings {
  /** Connects per address (after the warm-up), unless the time limit comes first. */
  readonly connectsPerAddress: number;
  readonly roundSize: number;
  /** Time limit of the measuring rounds of one layout. */
  readonly layoutTimeMs: number;
}

export type Role = 'reference' | 'first' | 'last';
const ROLES: readonly Role[] = ['reference', 'first', 'last'];

export interface LayoutTimes {
  /** Median over all connects of the role. */
  readonly median: Readonly<Record<Role, number>>;
  /**
   * Median over the cycles of (the role's round median / the reference's round median in the
   * same cycle). The machine drifts between a fast and a slow regime for seconds at a time;
   * pairing each round with the reference's neighbouring round cancels that, pooling does not.
   */
  readonly ratio: Readonly<Record<'first' | 'last', number>>;
  readonly counts: Readonly<Record<Role, number>>;
  readonly failures: number;
}

const FIRST_SERVER_PORT = 7001;
/**
 * A /16 client SNATs to a block of 64 ports, and a reset connection still holds its NAT tuple
 * for a second. Thousands of connects a second over few server ports would make the kernel
 * search the block for a free tuple on every connect, a cost MASQUERADE (which keeps the
 * client's own, always new, port) never pays; with this many server ports a tuple is rarely
 * reused within that second.
 */
const SERVER_PORTS = 1024;
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
const CLIENT_SCRIPT = fileURLToPath(new URL('./connect-client.js', import.meta.url));
const SERVER_SCRIPT = fileURLToPath(new URL('./connect-server.js', import.meta.url));

export async function measureRounds(
  site: ConnectSite,
  topology: ConnectTopology,
  addresses: Readonly<Record<Role, string>>,
  check: (address: string, seen: string) => void,
  settings: ConnectSettings,
): Promise<LayoutTimes> {
  if (WARM_UP + settings.connectsPerAddress + settings.roundSize > LOCAL_PORTS_PER_ROLE) {
    throw new Error(
      `at most ${LOCAL_PORTS_PER_ROLE - WARM_UP - settings.roundSize} connects per address`,
    );
  }
  const node = process.execPath;
  const server = new ChildLines(
    topology.server.spawn([
      node,
      SERVER_SCRIPT,
      `${FIRST_SERVER_PORT}`,
      `${SERVER_PORTS}`,
      '600',
      site.anyAddress,
    ]),
  );
  const client = new ChildLines(
    topology.client.spawn([
      node,
      CLIENT_SCRIPT,
      site.serverAddress,
      `${FIRST_SERVER_PORT}`,
      `${SERVER_PORTS}`,
    ]),
  );
  try {
    await server.waitFor((line) => line === 'ready', 15000);
    const nextPort: Record<Role, number> = { reference: 0, first: 0, last: 0 };
    const micros: Record<Role, number[]> = { reference: [], first: [], last: [] };
    const cycleRatios: Record<'first' | 'last', number[]> = { first: [], last: [] };
    let failures = 0;
    const round = async (role: Role, count: number) => {
      const localPort = FIRST_LOCAL_PORT[role] + nextPort[role];
      nextPort[role] += count;
      const answer = JSON.parse(
        await client.ask(JSON.stringify({ address: addresses[role], count, localPort }), 60000),
      ) as { micros: number[]; failures: number };
      failures += answer.failures;
      return answer.micros;
    };
    for (const role of ROLES) {
      const seen = (
        JSON.parse(await client.ask(JSON.stringify({ probe: addresses[role] }), 10000)) as {
          seen: string;
        }
      ).seen;
      check(addresses[role], seen);
      await round(role, WARM_UP);
    }
    const deadline = Date.now() + settings.layoutTimeMs;
    while (
      Date.now() < deadline &&
      ROLES.some((role) => micros[role].length < settings.connectsPerAddress)
    ) {
      const cycle: Partial<Record<Role, number>> = {};
      for (const role of ROLES) {
        const got = await round(role, settings.roundSize);
        micros[role].push(...got);
        cycle[role] = median(got);
      }
      for (const role of ['first', 'last'] as const) {
        cycleRatios[role].push((cycle[role] ?? Number.NaN) / (cycle.reference ?? Number.NaN));
      }
    }
    return {
      median: {
        reference: median(micros.reference),
        first: median(micros.first),
        last: median(micros.last),
      },
      ratio: { first: median(cycleRatios.first), last: median(cycleRatios.last) },
      counts: {
        reference: micros.reference.length,
        first: micros.first.length,
        last: micros.last.length,
      },
      failures,
    };
  } finally {
    await client.stop();
    await server.stop();
  }
}
