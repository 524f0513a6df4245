/**
 * The IPv6 NAT as a `table ip6` of our own, beside the `table ip` of src/render/nftables.ts
 * (same name, other family) and in the same rules file, so one `nft -f` transaction holds
 * both. Port blocks: one verdict-map lookup to a leaf of at most 16 clients. Prefix mode: `snat ip6 prefix to`, which keeps the
 * host bits like NETMAP (nft(8), NAT STATEMENTS).
 */
import type { Assignment6, Map6 } from '../mapping/map6.js';
import { formatCidr6, formatIpv6, parseCidr6 } from '../net/ipv6.js';
import { DEFAULT_NFT_TABLE, type NftOptions } from './nftables.js';

/** Clients per leaf chain: a /124, so a new connection passes at most 16 client rules. */
const LEAF_BITS = 4n;

/** A leaf's chain name: nft identifiers take letters, digits and `_/.-`, not `:`. */
function leafName(network: bigint): string {
  return `leaf_${formatIpv6(network).replaceAll(':', '_')}/${128n - LEAF_BITS}`;
}

function groupIntoLeaves(assignments: Iterable<Assignment6>): Map<bigint, Assignment6[]> {
  const leaves = new Map<bigint, Assignment6[]>();
  for (const assignment of assignments) {
    const network = (assignment.client >> LEAF_BITS) << LEAF_BITS;
    const leaf = leaves.get(network) ?? [];
    leaves.set(network, leaf);
    leaf.push(assignment);
  }
  return leaves;
}

/**
 * A rule per protocol, not one `meta l4proto { tcp, udp }`: that is an anonymous set in the
 * kernel, and the kernel names each new one by scanning every set of the table
 * (nf_tables_set_alloc_name), so a /16's 65 533 of them took over 400 s of kernel time to
 * load (a /20 1.56 s, with a rule per protocol 0.20 s; bench/connect6-cost.ts). The protocol
 * must be in the rule itself: nft refuses a port range after a named-set match ("transport
 * protocol mapping is only valid after transport protocol match").
 */
const PROTOCOLS = ['tcp', 'udp'] as const;

function leafChain(network: bigint, clients: readonly Assignment6[]): string[] {
  const rules: string[] = [];
  for (const { client, publicAddress, block } of clients) {
    if (!block) continue;
    for (const protocol of PROTOCOLS) {
      rules.push(
        `\t\tip6 saddr ${formatIpv6(client)} meta l4proto ${protocol} snat ip6 to [${formatIpv6(publicAddress)}]:${block.first}-${block.last}`,
      );
    }
  }
  // As in the ip6tables leaves: tcp/udp of a non-client must not get an arbitrary port below.
  for (const protocol of PROTOCOLS) rules.push(`\t\tmeta l4proto ${protocol} return`);
  const shared = clients.every((client) => client.publicAddress === clients[0]?.publicAddress);
  if (shared && clients[0]) {
    rules.push(`\t\tsnat ip6 to ${formatIpv6(clients[0].publicAddress)}`);
  } else {
    for (const { client, publicAddress } of clients) {
      rules.push(`\t\tip6 saddr ${formatIpv6(client)} snat ip6 to ${formatIpv6(publicAddress)}`);
    }
  }
  return [`\tchain ${leafName(network)} {`, ...rules, '\t}'];
}

/**
 * Port blocks as a verdict map from each /124 to a leaf chain of per-client rules. Not the
 * IPv4 form (one `ipv6_addr : interval ipv6_addr . inet_service` map): nft 1.0.6 loads its
 * IPv6 twin into a register the kernel (6.x, which rejects loads of unset registers) refuses
 * with "No data available", and the two-map form `snat ip6 to ... map @a : ... map @p` gives
 * only the first port of each range (both tried in a network namespace).
 */
function portBlockBody(map: Extract<Map6, { mode: 'ports' }>, oif: string): string[] {
  const leaves = groupIntoLeaves(map.assignments());
  const elements = [...leaves.keys()].map(
    (network) => `${formatIpv6(network)}/${128n - LEAF_BITS} : jump ${leafName(network)}`,
  );
  const lines = ['\tmap leaves {', '\t\ttype ipv6_addr : verdict', '\t\tflags interval'];
  // nft refuses an empty `elements = { }`: an empty map leaves it out.
  if (elements.length > 0) {
    lines.push('\t\telements = {', ...elements.map((element) => `\t\t\t${element},`), '\t\t}');
  }
  lines.push(
    '\t}',
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    `\t\toifname ${oif} ip6 saddr vmap @leaves`,
    '\t}',
  );
  for (const [network, clients] of leaves) lines.push(...leafChain(network, clients));
  return lines;
}

function prefixBody(map: Extract<Map6, { mode: 'prefix' }>, oif: string): string[] {
  const ranges = new Set<string>();
  for (const { pool } of map.assignments()) {
    const range = parseCidr6(pool.subnet6 ?? '');
    if (range) ranges.add(formatCidr6(range));
  }
  const to = formatCidr6(map.publicPrefix);
  return [
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    ...[...ranges].map((range) => `\t\tip6 saddr ${range} oifname ${oif} snat ip6 prefix to ${to}`),
    '\t}',
  ];
}

/** One `nft -f` transaction that replaces our `table ip6` whole (declared first so the delete works). */
export function renderNftTable6(map: Map6, options: NftOptions): string {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const oif = JSON.stringify(options.outInterface);
  const what =
    map.mode === 'prefix'
      ? 'one public IPv6 address per client'
      : 'a fixed source port block per IPv6 client';
  const lines = [
    `# traceable-nat: ${what} (table ip6 ${table}, replaced whole)`,
    `table ip6 ${table}`,
    `delete table ip6 ${table}`,
    `table ip6 ${table} {`,
    ...(map.mode === 'prefix' ? prefixBody(map, oif) : portBlockBody(map, oif)),
    '}',
  ];
  return lines.join('\n') + '\n';
}
