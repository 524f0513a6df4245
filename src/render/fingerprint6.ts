/**
 * Whether the kernel still holds our `table ip6` as planned (nftables). `nft list table ip6`
 * prints what we rendered in its own way (elements regrouped, `snat ip6 prefix to` as `snat
 * prefix to`), so both texts are reduced to the lines that decide a translation, normalized:
 * the hook, the lookup of the leaf map and its elements, every snat rule, every return. Equal fingerprints mean
 * every client leaves with the same address and ports.
 */

import { formatCidr6, formatIpv6, parseCidr6, parseIpv6 } from '../net/ipv6.js';

const DECIDING = /\b(?:snat|hook postrouting|vmap|return)\b/;

/** An element of the leaf map, `fd42::10/124 : jump leaf_fd42__10/124`, however it is wrapped. */
const LEAF_ELEMENT = /([0-9a-fA-F:]+\/\d+) : jump (\S+?),?(?=\s|$)/g;

export function fingerprint6(text: string): string {
  const lines: string[] = [];
  for (const raw of text.split('\n')) {
    // `nft -a` ends a line with `# handle N`: a comment, like our own `#` lines.
    const line = raw.replace(/\s*#.*$/, '').trim();
    for (const [, range, chain] of line.matchAll(LEAF_ELEMENT)) lines.push(`${range} > ${chain}`);
    if (!DECIDING.test(line)) continue;
    lines.push(line.replace(/\bsnat ip6 /, 'snat ').replace(/\s+/g, ' '));
  }
  return lines.sort().join('\n');
}

const ADDRESS = String.raw`[0-9a-fA-F:.]+`;
/**
 * Each rule that decides a client's IPv6 translation, in any of the four forms we render or
 * the kernel prints: ip6tables port blocks (`-s A/128 ... -p tcp -j SNAT --to-source [P]:a-b`)
 * and NETMAP (`-s R -o IF -j NETMAP --to X`), nft port blocks (`ip6 saddr A meta l4proto tcp
 * snat [ip6 ]to [P]:a-b`, older `{ tcp, udp }`) and prefixes (`ip6 saddr R oifname "IF" snat [ip6 ]prefix
 * to X`).
 */
const TRANSLATION = new RegExp(
  [
    String.raw`-s (${ADDRESS})/128 (?:-o \S+ )?-p tcp -j SNAT --to-source (\[${ADDRESS}\]:\d+(?:-\d+)?)`,
    String.raw`-s (${ADDRESS}/\d+) -o \S+ -j NETMAP --to (${ADDRESS}/\d+)`,
    String.raw`ip6 saddr (${ADDRESS}) meta l4proto (?:tcp|\{ tcp, udp \}) snat (?:ip6 )?to (\[${ADDRESS}\]:\d+(?:-\d+)?)`,
    String.raw`ip6 saddr (${ADDRESS}/\d+) oifname "[^"]*" snat (?:ip6 )?prefix to (${ADDRESS}/\d+)`,
  ].join('|'),
  'gm',
);

/**
 * Source (a client address, or a client range in prefix mode) -> where it is translated to,
 * as written in the text. The conntrack step compares the kernel's with the plan's: a source
 * whose translation changed or went away has connections that no longer match the rules.
 */
export function translations6(text: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const match of text.matchAll(TRANSLATION)) {
    // Only the two groups of the form that matched are set.
    const groups = match.slice(1).filter(Boolean);
    const [source, to] = groups;
    if (source === undefined || to === undefined) continue;
    const key = normalize(source);
    if (!found.has(key)) found.set(key, normalize(to));
  }
  return found;
}

/** One spelling per address (RFC 5952), whoever printed it: `[A]:a-b`, `A/n` or `A`. */
function normalize(text: string): string {
  const bracketed = /^\[([^\]]+)\](.*)$/.exec(text);
  if (bracketed) return `[${normalize(bracketed[1] ?? '')}]${bracketed[2] ?? ''}`;
  if (text.includes('/')) {
    const cidr = parseCidr6(text);
    return cidr ? formatCidr6(cidr) : text;
  }
  const address = parseIpv6(text);
  return address === undefined ? text : formatIpv6(address);
}

/** Our `table ip6` of an nftables rules file or archive that holds both families ('' if none). */
export function table6Of(text: string): string {
  const start = /^table ip6 /m.exec(text)?.index;
  return start === undefined ? '' : text.slice(start);
}

/** translations6 as one comparable text, in any order of the rules (ip6tables-save reorders). */
export function translationsKey(text: string): string {
  return [...translations6(text)]
    .map(([source, to]) => `${source}>${to}`)
    .sort()
    .join('\n');
}
