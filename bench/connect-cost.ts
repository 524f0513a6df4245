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
  describeTimes,
  layoutMetrics,
  legacyProblem,
  loaderOf,
  measureLayout,
  type ExpectedSource,
  type MeasuredLayout,
} from './connect-layout.js';
import { buildConnectClient } from './connect-client-build.js';
import { DESTINATION_TEXT, type ConnectSettings } from './connect-rounds.js';
import { connectLayouts, mapPools, wireguardPool, type ConnectLayout } from './layouts.js';
import { GATEWAY_ADDRESS, REFERENCE_CLIENT, SITE4 } from './netns.js';
import { atMost, type Metric } from './report.js';

const SECTION = 'new-connection cost: median per TCP connect';
const SIZES = [
  { label: '/24', cidr: '10.42.0.0/24' },
  { label: '/16', cidr: '10.42.0.0/16' },
] as const;

/** What the server must see for each address, so a wrong layout cannot pass as a fast one. */
function expectedSource(layout: ConnectLayout, map: PortMap, address: string): ExpectedSource {
  if (layout.key === 'masquerade' || address === REFERENCE_CLIENT) {
    return { address: GATEWAY_ADDRESS };
  }
  const assignment = map.forward(parseIpv4(address) ?? 0);
  if (!assignment) throw new Error(`${address} is not a client of the layout`);
  const ports = layout.anyPort
    ? undefined
    : { first: assignment.firstPort, last: assignment.lastPort };
  return { address: formatIpv4(assignment.publicAddress), ports };
}

/** Issue 13: the first and the last client of a /16, against the reference. */
function targetFor(size: string, layout: ConnectLayout, ratio: number) {
  if (size !== '/16') return undefined;
  if (layout.key === 'nft') return atMost(ratio, 1.05, '<= 1.05x ref');
  if (layout.key === 'tree') return atMost(ratio, 1.1, '<= 1.1x ref');
  return undefined;
}

export async function measureConnectCosts(
  cleanup: Cleanup,
  settings: ConnectSettings,
  progress: (line: string) => void,
): Promise<Metric[]> {
  const clientBinary = buildConnectClient(cleanup);
  const legacyReason = legacyProblem(cleanup, 'iptables-legacy');
  if (legacyReason) progress(`connect: iptables-legacy skipped: ${legacyReason}`);
  const layouts = connectLayouts(legacyReason === undefined);
  // One table per destination: the rows of every layout, in the order measured.
  const metrics = new Map(settings.destinations.map((each) => [each, [] as Metric[]]));
  for (const size of SIZES) {
    const pool = wireguardPool('bench', size.cidr);
    const map = mapPools([pool]);
    const addresses = {
      reference: REFERENCE_CLIENT,
      first: formatIpv4(pool.first),
      last: formatIpv4(pool.last),
    };
    let masquerade: MeasuredLayout | undefined;
    for (const layout of layouts) {
      if (layout.variant && size.label !== '/16') continue;
      const started = Date.now();
      const loaded = {
        label: layout.label,
        loader: loaderOf(layout.tool),
        text: layout.render(map),
        expected: (address: string) => expectedSource(layout, map, address),
      };
      const measured = await measureLayout(
        cleanup,
        SITE4,
        loaded,
        addresses,
        settings,
        clientBinary,
      );
      masquerade ??= measured;
      const seconds = (Date.now() - started) / 1000;
      progress(describeTimes(`connect ${size.label} ${layout.label}`, measured, seconds));
      for (const destination of settings.destinations) {
        const times = measured.byDestination[destination];
        if (!times) continue;
        metrics
          .get(destination)
          ?.push(
            ...layoutMetrics(
              `${SECTION}, ${DESTINATION_TEXT[destination]}`,
              size.label,
              addresses,
              layout.label,
              times,
              masquerade.byDestination[destination],
              (_role, ratio) => targetFor(size.label, layout, ratio),
            ),
          );
      }
    }
  }
  return [...metrics.values()].flat();
}
