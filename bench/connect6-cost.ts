/**
 * Issue 14's IPv6 new-connection cost: the first and the last IPv6 client of a /16-sized pool
 * (the 65 533 twins of 10.42.0.0/16 in fd42::/64; the last is network6 + 65534) against the
 * reference client in the same rounds, as connect-cost.ts does for IPv4, in both nat6 modes.
 * The targets are the IPv4 ones.
 */
import { formatIpv6, parseIpv6 } from '../src/net/ipv6.js';
import type { Cleanup } from './cleanup.js';
import {
  describeTimes,
  layoutMetrics,
  legacyProblem,
  loaderOf,
  measureLayout,
  type ExpectedSource,
  type MeasuredLayout,
} from './connect-layout.js';
import { buildConnectClient } from './connect-client-build.js';
import { DESTINATION_TEXT, type ConnectSettings, type Role } from './connect-rounds.js';
import {
  connectLayouts6,
  mapPool6,
  twinOf,
  wireguardPool6,
  type ConnectLayout6,
  type Mode6,
} from './layouts6.js';
import type { Map6 } from '../src/mapping/map6.js';
import { CLIENT_RANGE6, SITE6 } from './netns.js';
import { atMost, type Metric, type Target } from './report.js';

const SECTION = 'IPv6 new-connection cost: median per TCP connect';
const SIZE = '/16-sized';

function expectedSource(layout: ConnectLayout6, map: Map6, address: string): ExpectedSource {
  if (layout.mode === undefined || address === SITE6.referenceClient) {
    return { address: SITE6.gatewayAddress };
  }
  const assignment = map.forward(parseIpv6(address) ?? 0n);
  if (!assignment) throw new Error(`${address} is not a client of the layout`);
  // Prefix mode: NETMAP keeps the client's port (no block to check).
  return { address: formatIpv6(assignment.publicAddress), ports: assignment.block };
}

/** Issue 13: the first and the last client, against the reference. */
function targetFor(layout: ConnectLayout6, ratio: number) {
  const limits: Partial<Record<ConnectLayout6['key'], Target>> = {
    tree: atMost(ratio, 1.1, '<= 1.1x ref'),
    netmap: atMost(ratio, 1.1, '<= 1.1x ref'),
    nft: atMost(ratio, 1.05, '<= 1.05x ref'),
    'nft-prefix': atMost(ratio, 1.05, '<= 1.05x ref'),
  };
  return limits[layout.key];
}

export async function measureConnectCosts6(
  cleanup: Cleanup,
  settings: ConnectSettings,
  progress: (line: string) => void,
): Promise<Metric[]> {
  const clientBinary = buildConnectClient(cleanup);
  const legacyReason = legacyProblem(cleanup, 'ip6tables-legacy');
  if (legacyReason) progress(`connect6: ip6tables-legacy skipped: ${legacyReason}`);
  const pool = wireguardPool6('bench', '10.42.0.0/16', CLIENT_RANGE6);
  const maps: Record<Mode6, Map6> = {
    ports: mapPool6(pool, 'ports'),
    prefix: mapPool6(pool, 'prefix'),
  };
  const addresses: Record<Role, string> = {
    reference: SITE6.referenceClient,
    first: twinOf(pool, pool.first),
    last: twinOf(pool, pool.last),
  };
  const metrics = new Map(settings.destinations.map((each) => [each, [] as Metric[]]));
  let masquerade: MeasuredLayout | undefined;
  for (const layout of connectLayouts6(legacyReason === undefined)) {
    const started = Date.now();
    const map = maps[layout.mode ?? 'ports'];
    const loaded = {
      label: layout.label,
      loader: loaderOf(layout.tool),
      text: layout.render(map),
      expected: (address: string) => expectedSource(layout, map, address),
    };
    const measured = await measureLayout(cleanup, SITE6, loaded, addresses, settings, clientBinary);
    masquerade ??= measured;
    const seconds = (Date.now() - started) / 1000;
    progress(describeTimes(`connect6 ${layout.label}`, measured, seconds));
    for (const destination of settings.destinations) {
      const times = measured.byDestination[destination];
      if (!times) continue;
      metrics
        .get(destination)
        ?.push(
          ...layoutMetrics(
            `${SECTION}, ${DESTINATION_TEXT[destination]}`,
            SIZE,
            addresses,
            layout.label,
            times,
            masquerade.byDestination[destination],
            (_role, ratio) => targetFor(layout, ratio),
          ),
        );
    }
  }
  return [...metrics.values()].flat();
}
