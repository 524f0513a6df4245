/**
 * The IPv6 NAT as a `table ip6` of our own, beside the `table ip` of src/render/nftables.ts
 * (same name, other family) and in the same rules file, so one `nft -f` transaction holds
 * both. Port blocks: map lookups as for IPv4. Prefix mode: `snat ip6 prefix to`, which keeps the
 * host bits like NETMAP (nft(8), NAT STATEMENTS).
 */
import type { Map6 } from '../mapping/map6.js';
import { formatCidr6, formatIpv6, parseCidr6 } from '../net/ipv6.js';
import { DEFAULT_NFT_TABLE, type NftOptions } from './nftables.js';

function mapBlock(name: string, type: string, elements: readonly string[]): string[] {
  const lines = [`\tmap ${name} {`, `\t\ttype ${type}`];
  // nft refuses an empty `elements = { }`: an empty map leaves it out.
  if (elements.length > 0) {
    lines.push('\t\telements = {', ...elements.map((element) => `\t\t\t${element},`), '\t\t}');
  }
  lines.push('\t}');
  return lines;
}

function portBlockBody(map: Extract<Map6, { mode: 'ports' }>, oif: string): string[] {
  const clients: string[] = [];
  const others: string[] = [];
  for (const { client, publicAddress, block } of map.assignments()) {
    if (!block) continue;
    const pair = `${formatIpv6(client)} : ${formatIpv6(publicAddress)}`;
    // Always a range: nft 1.0.6 refuses a single port as the value of an interval map.
    clients.push(`${pair} . ${block.first}-${block.last}`);
    others.push(pair);
  }
  return [
    ...mapBlock('clients', 'ipv6_addr : interval ipv6_addr . inet_service', clients),
    ...mapBlock('others', 'ipv6_addr : ipv6_addr', others),
    '\tchain postrouting {',
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    `\t\toifname ${oif} meta l4proto { tcp, udp } snat ip6 to ip6 saddr map @clients`,
    `\t\toifname ${oif} meta l4proto != { tcp, udp } snat ip6 to ip6 saddr map @others`,
    '\t}',
  ];
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
