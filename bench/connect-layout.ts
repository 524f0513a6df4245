/**
 * One rule layout's connection costs, for either family: fresh namespaces, the layout's text
 * loaded into the gateway, a check that each client leaves as the layout says (so a wrong
 * layout cannot pass as a fast one), then the interleaved rounds of connect-rounds.ts.
 */
import { parseIpv6 } from '../src/net/ipv6.js';
import type { Cleanup } from './cleanup.js';
import {
  measureRounds,
  type ConnectSettings,
  type Destination,
  type LayoutTimes,
  type Role,
} from './connect-rounds.js';
import { createConnectTopology, createLoneNamespace, type ConnectSite } from './netns.js';
import type { Metric, Target } from './report.js';
import { timed } from './shell.js';

/** What the server must see from a client: an address and, for a port block, its range. */
export interface ExpectedSource {
  readonly address: string;
  readonly ports?: { readonly first: number; readonly last: number } | undefined;
}

export interface LoadedLayout {
  readonly label: string;
  /** The command that reads `text` on stdin inside the gateway. */
  readonly loader: readonly string[];
  readonly text: string;
  expected(address: string): ExpectedSource;
}

export interface MeasuredLayout {
  readonly byDestination: Readonly<Partial<Record<Destination, LayoutTimes>>>;
  readonly loadMs: number;
  readonly ruleLines: number;
}

/** The loader of a tool's text: `nft -f -`, or `<tool>-restore -w 10`. */
export function loaderOf(tool: string): string[] {
  if (tool === 'nft') return ['nft', '-f', '-'];
  return [`${tool}-restore`, '-w', '10'];
}

/** Whether a legacy tool's nat table works in this kernel; the reason when it does not. */
export function legacyProblem(cleanup: Cleanup, tool: string): string | undefined {
  const ns = createLoneNamespace(cleanup, 'legacy');
  try {
    ns.exec(loaderOf(tool), '*nat\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message.split('\n')[0] : String(error);
  } finally {
    ns.remove();
  }
}

function sameAddress(a: string, b: string): boolean {
  if (a.includes(':') && b.includes(':')) return parseIpv6(a) === parseIpv6(b);
  return a === b;
}

/** `seen` is the server's `address:port` (the port after the last colon). */
function matches(seen: string, expected: ExpectedSource): boolean {
  const colon = seen.lastIndexOf(':');
  const address = seen.slice(0, colon);
  const port = Number(seen.slice(colon + 1));
  if (colon < 0 || !sameAddress(address, expected.address)) return false;
  return !expected.ports || (port >= expected.ports.first && port <= expected.ports.last);
}

function describe(expected: ExpectedSource): string {
  const ports = expected.ports ? `${expected.ports.first}-${expected.ports.last}` : 'any';
  return `${expected.address} port ${ports}`;
}

export async function measureLayout(
  cleanup: Cleanup,
  site: ConnectSite,
  layout: LoadedLayout,
  addresses: Readonly<Record<Role, string>>,
  settings: ConnectSettings,
  clientBinary: string,
): Promise<MeasuredLayout> {
  const topology = createConnectTopology(cleanup, [addresses.first, addresses.last], site);
  try {
    // The kernel's defaults stay (a reset or refused connection's entry lives 10 s): the
    // `closed` destination measures what a real gateway pays for them (see Destination).
    const load = timed(() => topology.gateway.exec(layout.loader, layout.text));
    const check = (address: string, seen: string) => {
      const expected = layout.expected(address);
      if (!matches(seen, expected)) {
        throw new Error(
          `${layout.label}: ${address} left as "${seen}", expected ${describe(expected)}`,
        );
      }
    };
    const byDestination = await measureRounds(
      site,
      topology,
      addresses,
      check,
      settings,
      clientBinary,
    );
    return { byDestination, loadMs: load.ms, ruleLines: layout.text.split('\n').length };
  } finally {
    topology.destroy();
  }
}

/** The progress line of one measured layout. */
export function describeTimes(what: string, measured: MeasuredLayout, seconds: number): string {
  const parts = Object.entries(measured.byDestination).map(
    ([destination, times]) =>
      `${destination}: ref ${times.median.reference.toFixed(1)} µs, ` +
      `first ${times.median.first.toFixed(1)} (${times.ratio.first.toFixed(2)}x), ` +
      `last ${times.median.last.toFixed(1)} (${times.ratio.last.toFixed(2)}x), ` +
      `p90 ${times.p90.reference.toFixed(0)}/${times.p90.first.toFixed(0)}/` +
      `${times.p90.last.toFixed(0)}, ${times.counts.last} each, ${times.failures} failed`,
  );
  return (
    `${what}: ${measured.ruleLines} lines loaded in ${(measured.loadMs / 1000).toFixed(1)} s; ` +
    `${parts.join('; ')} (${seconds.toFixed(0)} s)`
  );
}

/** The first and last client's metrics of one layout and destination. */
export function layoutMetrics(
  section: string,
  prefix: string,
  addresses: Readonly<Record<Role, string>>,
  layoutLabel: string,
  times: LayoutTimes,
  masquerade: LayoutTimes | undefined,
  targetFor: (role: 'first' | 'last', ratio: number) => Target | undefined,
): Metric[] {
  return (['first', 'last'] as const).map((role) => {
    const ratio = times.ratio[role];
    return {
      section,
      name: `${prefix} ${role} client (${addresses[role]}), ${layoutLabel}`,
      value: times.median[role],
      unit: 'µs',
      baseline: { name: 'ref', value: times.median.reference },
      ratio,
      masquerade: masquerade ? { name: '(a)', value: masquerade.median[role] } : undefined,
      target: targetFor(role, ratio),
      note:
        times.failures > 0
          ? `${times.failures} of the layout's connects failed or timed out (not counted)`
          : undefined,
    };
  });
}
