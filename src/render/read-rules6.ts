/**
 * Reads IPv6 client -> (public address, port block) back from a ruleset we rendered: the leaf
 * rules of rules.v6 (as written or as ip6tables-save prints them) or the leaf chains of our
 * `table ip6` (as written or as `nft list` prints them). The stability input of the next plan.
 */
import { previousFromBindings6, type PreviousAssignments6 } from '../mapping/map6.js';
import { parseIpv6 } from '../net/ipv6.js';

const ADDRESS6 = String.raw`([0-9a-fA-F:.]+)`;
/** `-A CHAIN -s a/128 -o IF -p tcp -j SNAT --to-source [P]:x[-y]`, maybe with counters. */
const IPTABLES_RULE = String.raw`^(?:\[\d+:\d+\] )?-A \S+ -s ${ADDRESS6}/128 (?:-o \S+ )?-p tcp -j SNAT --to-source \[${ADDRESS6}\]:(\d+)(?:-(\d+))?[ \t\r]*$`;
/** `ip6 saddr a meta l4proto { tcp, udp } snat [ip6 ]to [P]:x-y` */
const NFT_RULE = String.raw`^\s*ip6 saddr ${ADDRESS6} meta l4proto \{ tcp, udp \} snat (?:ip6 )?to \[${ADDRESS6}\]:(\d+)(?:-(\d+))?[ \t\r]*$`;
const PATTERN = new RegExp(`${IPTABLES_RULE}|${NFT_RULE}`, 'gm');

/** The bindings a ruleset text holds; undefined when it holds none. */
export function readPrevious6(text: string): PreviousAssignments6 | undefined {
  const bindings: { client: bigint; publicAddress: bigint; firstPort: number; lastPort: number }[] =
    [];
  for (const match of text.matchAll(PATTERN)) {
    const groups = match[1] === undefined ? match.slice(5, 9) : match.slice(1, 5);
    const [clientText = '', publicText = '', first = '', last] = groups;
    const client = parseIpv6(clientText);
    const publicAddress = parseIpv6(publicText);
    if (client === undefined || publicAddress === undefined) continue;
    const firstPort = Number(first);
    bindings.push({
      client,
      publicAddress,
      firstPort,
      lastPort: last === undefined ? firstPort : Number(last),
    });
  }
  return previousFromBindings6(bindings);
}
