/**
 * Reads client -> (public address, port block) back from a ruleset: our iptables chains, the
 * POSTROUTING lines of the original vpn-generate-natfw (archives it wrote), or the `clients`
 * map of our nftables table (as rendered or as `nft list` prints it). One pass of one regular
 * expression over the text.
 */
import { mostCommonBlockSize } from '../mapping/bindings.js';
import type { Binding } from '../mapping/types.js';
import { isOurChain } from './iptables.js';

export type ProtocolSet = 'tcp' | 'udp' | 'both';

/**
 * One client's binding as read back. `A` is the address type: number for IPv4, bigint for IPv6
 * (src/render/read-rules6.ts), so trace and lookup run the same code over either.
 */
export interface ReadAssignment<A extends number | bigint = number> extends Binding<A> {
  readonly proto: ProtocolSet;
  /** IPv6 prefix mode: the NETMAP that gives the client its own public address (every port). */
  readonly netmap?: Netmap6 | undefined;
}

/** A NETMAP (nft `snat ip6 prefix to`): sources in `range` keep their bits below `to`'s length. */
export interface Netmap6 {
  readonly range: string;
  readonly to: string;
}

export interface ReadRules {
  readonly format: 'iptables' | 'nft';
  /** The most common block size (ports per client); 0 when nothing was found. */
  readonly blockSize: number;
  /** Ascending by client; tcp before udp where a client's two rules differ. */
  readonly assignments: readonly ReadAssignment[];
}

const IPV4 = String.raw`(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})`;
/** `-A CHAIN -s a[/32] [-o IF] -p tcp|udp -j SNAT --to-source P:x[-y]`, maybe with counters. */
const SNAT_RULE = String.raw`^(?:\[\d+:\d+\] )?-A (\S+) -s ${IPV4}(?:/32)? (?:-o \S+ )?-p (tcp|udp) -j SNAT --to-source ${IPV4}:(\d+)(?:-(\d+))?[ \t\r]*$`;
/** One element of the `clients` map: `a : P . x[-y]`. */
const NFT_ELEMENT = String.raw`${IPV4}\s*:\s*${IPV4}\s*\.\s*(\d+)(?:-(\d+))?`;

interface MutableAssignment<A extends number | bigint> {
  client: A;
  publicAddress: A;
  firstPort: number;
  lastPort: number;
  proto: ProtocolSet;
}

/**
 * A dotted quad the patterns above matched, as uint32; NaN when an octet exceeds 255. Done by
 * hand: this runs twice per client, and the validating parser in net/ipv4 is the slow part.
 */
function quad(text: string | undefined): number {
  if (text === undefined) return NaN;
  let value = 0;
  let octet = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 46) {
      value = value * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + code - 48;
      if (octet > 255) return NaN;
    }
  }
  return value * 256 + octet;
}

/** The most common block size (ports per client) of a list of bindings; 0 for none. */
export function mostCommonSize(list: readonly ReadAssignment<number | bigint>[]): number {
  return mostCommonBlockSize(
    list.map((binding) => binding.firstPort),
    list.map((binding) => binding.lastPort),
    list.length,
  );
}

/** Gathers SNAT rules of one origin: a client's tcp and udp rules with one target merge. */
export class RuleCollector<A extends number | bigint = number> {
  readonly found: MutableAssignment<A>[] = [];
  /** The first entry read for a client, and which protocols (1 tcp, 2 udp) it had so far. */
  private readonly byClient = new Map<A, { first: MutableAssignment<A>; seen: number }>();

  add(entry: MutableAssignment<A>): void {
    const bit = entry.proto === 'tcp' ? 1 : 2;
    const known = this.byClient.get(entry.client);
    if (!known) {
      this.byClient.set(entry.client, { first: entry, seen: bit });
      this.found.push(entry);
      return;
    }
    // A second rule for the same client and protocol is never reached: the first one wins.
    if ((known.seen & bit) !== 0) return;
    known.seen |= bit;
    const { first } = known;
    if (
      first.publicAddress === entry.publicAddress &&
      first.firstPort === entry.firstPort &&
      first.lastPort === entry.lastPort
    ) {
      first.proto = 'both';
    } else {
      this.found.push(entry);
    }
  }
}

/**
 * Our chains' rules; the original script's POSTROUTING rules only when there are none of ours
 * (a file merged over an old one may hold both, and our jump comes before them).
 */
function fromIptables(text: string): ReadAssignment[] {
  const ours = new RuleCollector();
  const original = new RuleCollector();
  for (const match of text.matchAll(new RegExp(SNAT_RULE, 'gm'))) {
    const chain = match[1] ?? '';
    const collector = isOurChain(chain) ? ours : chain === 'POSTROUTING' ? original : undefined;
    const client = quad(match[2]);
    const publicAddress = quad(match[4]);
    if (!collector || Number.isNaN(client) || Number.isNaN(publicAddress)) continue;
    collector.add({
      client,
      publicAddress,
      firstPort: Number(match[5]),
      lastPort: Number(match[6] ?? match[5]),
      proto: match[3] === 'tcp' ? 'tcp' : 'udp',
    });
  }
  const found = ours.found.length > 0 ? ours.found : original.found;
  const order = { tcp: 0, both: 0, udp: 1 };
  return found.sort((a, b) => a.client - b.client || order[a.proto] - order[b.proto]);
}

function fromNft(text: string, mapStart: number): ReadAssignment[] {
  const open = text.indexOf('{', mapStart);
  const elements = text.indexOf('elements', open);
  const close = text.indexOf('}', open);
  const found: ReadAssignment[] = [];
  // A map without elements closes before any `elements =`.
  if (elements < 0 || (close >= 0 && close < elements)) return found;
  const end = text.indexOf('}', text.indexOf('{', elements));
  const body = text.slice(elements, end < 0 ? text.length : end);
  for (const match of body.matchAll(new RegExp(NFT_ELEMENT, 'g'))) {
    const client = quad(match[1]);
    const publicAddress = quad(match[2]);
    if (Number.isNaN(client) || Number.isNaN(publicAddress)) continue;
    found.push({
      client,
      publicAddress,
      firstPort: Number(match[3]),
      lastPort: Number(match[4] ?? match[3]),
      proto: 'both',
    });
  }
  return found.sort((a, b) => a.client - b.client);
}

/** Reads our assignments back from iptables(-save) text or from nft text. */
export function readAssignments(text: string): ReadRules {
  const nftMap = /\bmap clients \{/.exec(text);
  const assignments = nftMap ? fromNft(text, nftMap.index) : fromIptables(text);
  return {
    format: nftMap ? 'nft' : 'iptables',
    blockSize: mostCommonSize(assignments),
    assignments,
  };
}
