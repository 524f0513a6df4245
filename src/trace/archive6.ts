/**
 * The IPv6 half of an archived activation, as trace and lookup see it: the same moment, the
 * same switch windows, other rules. Where it lives depends on the backend:
 * - iptables: `rules.v6.<the same seconds>[.gz]`, whose SHA-256 the rules.v4 header records
 *   (`# ipv6: sha256:...`); a rules.v4 without that line had no IPv6 rules of ours (eduVPN's
 *   own MASQUERADE translated IPv6, untraceably).
 * - nftables: our `table ip6` after the `table ip` in the same archive; none, none of ours.
 * The rules are the truth: the header's `settings.nat6` only adds configured addresses, as the
 * IPv4 side does with `settings.publicAddresses`. A half that is missing or not what was
 * archived is never answered from with confidence (`archive-damaged`).
 */
import { archiveBody, parseArchiveHeader, rulesetLooksComplete } from '../archive/header.js';
import { parseIpv6 } from '../net/ipv6.js';
import { readRules6 } from '../render/read-rules6.js';
import type { ReadAssignment } from '../render/read-rules.js';
import type { ClientRange6 } from '../mapping/map6.js';
import { clientRangesOf, netmapClient, netmapPublic, netmapUses } from './netmap6.js';
import { buildPortIndex, type PortIndex } from './port-index.js';
import type { LoadedArchive } from './timeline.js';

/** An IPv6 half as stored: its file name, its text and the SHA-256 of its bytes. */
export interface Ipv6Source {
  readonly name: string;
  readonly text: string;
  readonly sha256: string;
}

type Base = Omit<LoadedArchive, 'ipv6'>;

const ALL_PORTS = { firstPort: 0, lastPort: 65535, proto: 'both' } as const;

/** The nat6 public addresses of the header's settings (not needed: the rules are the truth). */
function configuredAddresses6(settings: Readonly<Record<string, unknown>>): bigint[] {
  const nat6 = settings.nat6;
  if (typeof nat6 !== 'object' || nat6 === null) return [];
  const list = (nat6 as Record<string, unknown>).publicAddresses;
  if (!Array.isArray(list)) return [];
  return list
    .map((text) => (typeof text === 'string' ? parseIpv6(text) : undefined))
    .filter((address): address is bigint => address !== undefined);
}

function half(
  base: Base,
  state: 'ours' | 'not-ours' | 'unreadable',
  damaged: string | undefined,
  rulesText = '',
  configured: readonly bigint[] = [],
  clientRanges?: readonly ClientRange6[],
): LoadedArchive<bigint> {
  const { assignments, netmaps } = readRules6(rulesText);
  const addresses = new Set([...assignments.map((a) => a.publicAddress), ...configured]);
  let index: PortIndex<bigint> | undefined;
  // Every port of a netmapped address is its client's.
  const prefixHolding = (address: bigint | undefined): ReadAssignment<bigint>[] =>
    address === undefined
      ? []
      : netmaps.flatMap((netmap) => {
          const client = netmapClient(netmap, address, clientRanges);
          if (client === undefined) return [];
          return [{ ...ALL_PORTS, client, publicAddress: address, netmap }];
        });
  return {
    ...base,
    publicAddresses: [...addresses].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    assignments: () => assignments,
    netmaps,
    clientRanges,
    damaged: base.damaged ?? damaged,
    ipv6State: state,
    holding: (port, address) => [
      ...(index ??= buildPortIndex(assignments)).holding(port, address),
      ...prefixHolding(address),
    ],
  };
}

/** The assignments of a client in an IPv6 half: its port blocks, or its netmapped address. */
export function blocksOfClient6(
  archive: LoadedArchive<bigint>,
  client: bigint,
): ReadAssignment<bigint>[] {
  const blocks = archive.assignments().filter((assignment) => assignment.client === client);
  for (const netmap of archive.netmaps ?? []) {
    const publicAddress = netmapPublic(netmap, client);
    if (publicAddress === undefined) continue;
    // The client's own address back: none when it is no client of the range.
    if (netmapClient(netmap, publicAddress, archive.clientRanges) !== client) continue;
    blocks.push({ ...ALL_PORTS, client, publicAddress, netmap });
  }
  return blocks;
}

/** Whether an IPv6 half translates to `address`: one of its addresses, or in a netmap's prefix. */
export function uses6(archive: LoadedArchive<bigint>, address: bigint): boolean {
  return (
    archive.ipv6State === 'unreadable' ||
    archive.publicAddresses.includes(address) ||
    (archive.netmaps ?? []).some((netmap) => netmapUses(netmap, address))
  );
}

const TABLE_IP6 = /^table ip6 \S+ \{/m;

/**
 * The IPv6 half of an archive whose header (as bindingsOfText keeps it) is `headerText`; its
 * whole `text` is read only for nftables, whose IPv6 table is in the same file.
 */
export function ipv6HalfOf(
  base: Base,
  headerText: string,
  text: () => string,
  source: () => Ipv6Source | undefined,
): LoadedArchive<bigint> {
  const header = parseArchiveHeader(headerText);
  const configured = configuredAddresses6(header?.settings ?? {});
  const { name } = base.entry;
  if (base.entry.backend === 'nftables') {
    const body = archiveBody(text());
    const start = body.search(TABLE_IP6);
    if (start < 0) return half(base, 'not-ours', undefined);
    return half(
      base,
      'ours',
      undefined,
      body.slice(start),
      configured,
      clientRangesOf(header?.settings ?? {}),
    );
  }
  const recorded = header?.ipv6?.sha256;
  if (recorded === undefined) return half(base, 'not-ours', undefined);
  const found = source();
  if (found === undefined) {
    return half(
      base,
      'unreadable',
      `the IPv6 half of ${name} (rules.v6 of the same seconds, SHA-256 ${recorded}) is missing: deleted or renamed since`,
    );
  }
  let damaged: string | undefined;
  if (found.sha256 !== recorded) {
    damaged = `${found.name} is not what was archived: ${name} recorded its SHA-256 as ${recorded}, the file now has ${found.sha256} (edited, cut or replaced since)`;
  } else if (!rulesetLooksComplete(archiveBody(found.text))) {
    damaged = `${found.name} stops before the end of its ruleset (cut by a full disk or a copy?)`;
  }
  return half(
    base,
    'ours',
    damaged,
    archiveBody(found.text),
    configured,
    clientRangesOf(header?.settings ?? {}),
  );
}

/** The IPv6 half of an archive that cannot be read at all (see loadArchive): unknown. */
export function unreadableHalf(base: Base): LoadedArchive<bigint> {
  return half(base, 'unreadable', undefined);
}

/** The IPv6 half of a loaded archive (an archive read without one had no IPv6 of ours). */
export function ipv6Of(archive: LoadedArchive): LoadedArchive<bigint> {
  return archive.ipv6?.() ?? half(archive, 'not-ours', undefined);
}
