/**
 * Reads IPv6 client -> (public address, port block) back from a ruleset we rendered: the leaf
 * rules of rules.v6 (as written or as ip6tables-save prints them) or the leaf chains of our
 * `table ip6` (as written or as `nft list` prints them), and the NETMAP rules of prefix mode.
 * The stability input of the next plan, and what trace reads from an archived IPv6 half.
 */
import { previousFromBindings6, type PreviousAssignments6 } from '../mapping/map6.js';
import { parseIpv6 } from '../net/ipv6.js';
import { RuleCollector, type Netmap6, type ReadAssignment } from './read-rules.js';

const ADDRESS6 = String.raw`([0-9a-fA-F:.]+)`;
const CIDR6 = String.raw`([0-9a-fA-F:.]+/\d{1,3})`;
/** `-A CHAIN -s a/128 -o IF -p tcp|udp -j SNAT --to-source [P]:x[-y]`, maybe with counters. */
const IPTABLES_RULE = String.raw`^(?:\[\d+:\d+\] )?-A \S+ -s ${ADDRESS6}/128 (?:-o \S+ )?-p (tcp|udp) -j SNAT --to-source \[${ADDRESS6}\]:(\d+)(?:-(\d+))?[ \t\r]*$`;
/**
 * `ip6 saddr a meta l4proto tcp|udp snat [ip6 ]to [P]:x-y`, or `{ tcp, udp }` as rulesets
 * rendered before one rule per protocol have it (src/render/nftables6.ts).
 */
const NFT_RULE = String.raw`^\s*ip6 saddr ${ADDRESS6} meta l4proto (tcp|udp|\{ tcp, udp \}) snat (?:ip6 )?to \[${ADDRESS6}\]:(\d+)(?:-(\d+))?[ \t\r]*$`;
/** `-A TNAT -s R -o IF -j NETMAP --to P` and `ip6 saddr R oifname "IF" snat [ip6 ]prefix to P`. */
const IPTABLES_NETMAP = String.raw`^(?:\[\d+:\d+\] )?-A \S+ -s ${CIDR6} (?:-o \S+ )?-j NETMAP --to ${CIDR6}[ \t\r]*$`;
const NFT_NETMAP = String.raw`^\s*ip6 saddr ${CIDR6} (?:oifname \S+ )?snat (?:ip6 )?prefix to ${CIDR6}[ \t\r]*$`;
const PATTERN = new RegExp(`${IPTABLES_RULE}|${NFT_RULE}`, 'gm');
const NETMAP_PATTERN = new RegExp(`${IPTABLES_NETMAP}|${NFT_NETMAP}`, 'gm');

export interface ReadRules6 {
  /** Port blocks, in the text's order; tcp and udp of one client merged into `both`. */
  readonly assignments: readonly ReadAssignment<bigint>[];
  /** Prefix mode: the client ranges and the public prefix each is mapped into. */
  readonly netmaps: readonly Netmap6[];
}

/** Every IPv6 binding of ours a ruleset text holds. */
export function readRules6(text: string): ReadRules6 {
  const collector = new RuleCollector<bigint>();
  for (const match of text.matchAll(PATTERN)) {
    const iptables = match[1] !== undefined;
    const [clientText = '', proto, publicText = '', first = '', last] = iptables
      ? match.slice(1, 6)
      : [match[6], match[7]?.startsWith('{') ? 'both' : match[7], ...match.slice(8, 11)];
    const client = parseIpv6(clientText);
    const publicAddress = parseIpv6(publicText);
    if (client === undefined || publicAddress === undefined) continue;
    const firstPort = Number(first);
    const lastPort = last === undefined ? firstPort : Number(last);
    const entry = { client, publicAddress, firstPort, lastPort };
    // An old nft rule covers both protocols: read it as a tcp and a udp rule, which merge.
    if (proto === 'tcp' || proto === 'both') collector.add({ ...entry, proto: 'tcp' });
    if (proto === 'udp' || proto === 'both') collector.add({ ...entry, proto: 'udp' });
  }
  const netmaps = [...text.matchAll(NETMAP_PATTERN)].map((match) => ({
    range: match[1] ?? match[3] ?? '',
    to: match[2] ?? match[4] ?? '',
  }));
  return { assignments: collector.found, netmaps };
}

/** The bindings a ruleset text holds; undefined when it holds none. */
export function readPrevious6(text: string): PreviousAssignments6 | undefined {
  return previousFromBindings6(readRules6(text).assignments);
}
