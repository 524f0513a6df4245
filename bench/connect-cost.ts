/**
 * New-connection cost: median microseconds per TCP connect through the gateway for the first
 * and the last client of a pool, under each rule layout. The machine is shared and noisy, so
 * the reference client (only MASQUERADE handles it) is measured in the same layout, in small
 * rounds interleaved with the first and last client; the ratio to it is the median over the
 * cycles of round against round (see LayoutTimes.ratio). The ratio to (a) is plain: this
 * layout's median over (a)'s, measured some seconds apart. Each layout gets fresh namespaces,
 * so no conntrack entry or rule carries over.
 */
import type { PortMap } from '../src/mapping/types.js';
import { formatIpv4, parseIpv4 } from '../src/net/ipv4.js';
import type { Cleanup } from './cleanup.js';
import {
  measureRounds,
  type ConnectSettings,
  type LayoutTimes,
  type Role,
} from './connect-rounds.js';
import { connectLayouts, mapPools, wireguardPool, type ConnectLayout } from './layouts.js';
import {
  createConnectTopology,
  createLoneNamespace,
  GATEWAY_ADDRESS,
  REFERENCE_CLIENT,
} from './netns.js';
import { atMost, type Metric } from './report.js';
import { timed } from './shell.js';

const SECTION = 'new-connection cost: median per TCP connect';
const SIZES = [
  { label: '/24', cidr: '10.42.0.0/24' },
  { label: '/16', cidr: '10.42.0.0/16' },
] as const;

/** Whether iptables-legacy's nat table works in this kernel; the reason when it does not. */
function legacyProblem(cleanup: Cleanup): string | undefined {
  const ns = createLoneNamespace(cleanup, 'legacy');
  try {
    ns.exec(['iptables-legacy-restore'], '*nat\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message.split('\n')[0] : String(error);
  } finally {
    ns.remove();
  }
}

function loaderOf(layout: ConnectLayout): string[] {
  if (layout.tool === 'nft') return ['nft', '-f', '-'];
  return [`${layout.tool}-restore`, '-w', '10'];
}

/** What the server must see for each address, so a wrong layout cannot pass as a fast one. */
function expectedSource(layout: ConnectLayout, map: PortMap, address: string): string {
  if (layout.key === 'masquerade' || address === REFERENCE_CLIENT) return `${GATEWAY_ADDRESS}:any`;
  const assignment = map.forward(parseIpv4(address) ?? 0);
  if (!assignment) throw new Error(`${address} is not a client of the layout`);
  const { block } = assignment;
  return `${formatIpv4(assignment.publicAddress)}:${block.first}-${block.last}`;
}

function matches(seen: string, expected: string): boolean {
  const [address, port] = seen.split(':');
  const [wantAddress, range = 'any'] = expected.split(':');
  if (address !== wantAddress) return false;
  if (range === 'any') return true;
  const [low, high] = range.split('-').map(Number);
  return Number(port) >= (low ?? 0) && Number(port) <= (high ?? 0);
}

async function measureLayout(
  cleanup: Cleanup,
  layout: ConnectLayout,
  map: PortMap,
  addresses: Readonly<Record<Role, string>>,
  settings: ConnectSettings,
): Promise<LayoutTimes & { readonly loadMs: number; readonly ruleLines: number }> {
  const text = layout.render(map);
  const topology = createConnectTopology(cleanup, [addresses.first, addresses.last]);
  try {
    // A reset connection holds its NAT tuple for 10 s by default; see SERVER_PORTS.
    topology.gateway.exec(['sysctl', '-qw', 'net.netfilter.nf_conntrack_tcp_timeout_close=1']);
    const load = timed(() => topology.gateway.exec(loaderOf(layout), text));
    const check = (address: string, seen: string) => {
      const expected = expectedSource(layout, map, address);
      if (!matches(seen, expected)) {
        throw new Error(`${layout.label}: ${address} left as "${seen}", expected ${expected}`);
      }
    };
    const times = await measureRounds(topology, addresses, check, settings);
    return { ...times, loadMs: load.ms, ruleLines: text.split('\n').length };
  } finally {
    topology.destroy();
  }
}

function targetFor(size: string, role: Role, layout: ConnectLayout, ratio: number) {
  if (size !== '/16' || role !== 'last') return undefined;
  if (layout.key === 'nft') return atMost(ratio, 1.05, '<= 1.05x ref');
  if (layout.key === 'tree') return atMost(ratio, 1.1, '<= 1.1x ref');
  return undefined;
}

export async function measureConnectCosts(
  cleanup: Cleanup,
  settings: ConnectSettings,
  progress: (line: string) => void,
): Promise<Metric[]> {
  const legacyReason = legacyProblem(cleanup);
  if (legacyReason) progress(`connect: iptables-legacy skipped: ${legacyReason}`);
  const layouts = connectLayouts(legacyReason === undefined);
  const metrics: Metric[] = [];
  for (const size of SIZES) {
    const pool = wireguardPool('bench', size.cidr);
    const map = mapPools([pool]);
    const addresses = {
      reference: REFERENCE_CLIENT,
      first: formatIpv4(pool.first),
      last: formatIpv4(pool.last),
    };
    let masquerade: LayoutTimes | undefined;
    for (const layout of layouts) {
      const started = Date.now();
      const times = await measureLayout(cleanup, layout, map, addresses, settings);
      masquerade ??= times;
      progress(
        `connect ${size.label} ${layout.label}: ${times.ruleLines} lines loaded in ` +
          `${(times.loadMs / 1000).toFixed(1)} s; median ref ${times.median.reference.toFixed(0)} µs, ` +
          `first ${times.median.first.toFixed(0)} (${times.ratio.first.toFixed(2)}x), ` +
          `last ${times.median.last.toFixed(0)} (${times.ratio.last.toFixed(2)}x) ` +
          `(${times.counts.last} connects each, ${times.failures} failed, ${((Date.now() - started) / 1000).toFixed(0)} s)`,
      );
      for (const role of ['first', 'last'] as const) {
        const value = times.median[role];
        const ratio = times.ratio[role];
        metrics.push({
          section: SECTION,
          name: `${size.label} ${role} client (${addresses[role]}), ${layout.label}`,
          value,
          unit: 'µs',
          baseline: { name: 'ref', value: times.median.reference },
          ratio,
          masquerade: { name: '(a)', value: masquerade.median[role] },
          target: targetFor(size.label, role, layout, ratio),
          note:
            times.failures > 0
              ? `${times.failures} of the layout's connects failed or timed out (not counted)`
              : undefined,
        });
      }
    }
  }
  return metrics;
}
