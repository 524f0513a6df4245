/**
 * Our nftables table as `nft -j list table` describes it (libnftables-json(5)). The JSON listing
 * of a 65 000-element map takes a third of the time of the text listing, whose formatting of
 * concatenated intervals dominates, and it needs no guessing at line wrapping.
 */
import { parseIpv4 } from '../net/ipv4.js';
import { nftCanaryOf } from '../render/nftables.js';
import type { ReadAssignment } from '../render/read-rules.js';

export interface NftRuleView {
  /** The `oifname` it matches, if any. */
  readonly outInterface: string | undefined;
  /** `==` for `meta l4proto { tcp, udp }`, `!=` for its negation. */
  readonly l4protoOp: string | undefined;
  /** The map the snat statement looks the source address up in (`@clients`). */
  readonly snatMap: string | undefined;
}

export interface NftChainView {
  readonly priority: number;
  readonly hook: string;
  readonly type: string;
}

export interface NftTableView {
  readonly chain: NftChainView | undefined;
  readonly rules: readonly NftRuleView[];
  /** The `clients` map's elements as bindings. */
  readonly clients: readonly ReadAssignment[];
  /**
   * The `others` map gives each client of `clients` its public address and holds nothing else
   * (an element deleted from one map by hand breaks this; a delta of `clients` assumes it).
   */
  readonly othersMatch: boolean;
  /** The archive digests our canary chains name (src/render/nftables.ts), normally one. */
  readonly canaries: readonly string[];
}

/** Our table's chains as `nft -j list chains ip` gives them: no rules, no map elements. */
export interface NftChainsView {
  readonly chain: NftChainView | undefined;
  readonly canaries: readonly string[];
}

type Json = unknown;

function field(value: Json, key: string): Json {
  return value !== null && typeof value === 'object'
    ? (value as Record<string, Json>)[key]
    : undefined;
}

function ports(value: Json): [number, number] | undefined {
  if (typeof value === 'number') return [value, value];
  const range = field(value, 'range');
  if (Array.isArray(range) && typeof range[0] === 'number' && typeof range[1] === 'number') {
    return [range[0], range[1]];
  }
  return undefined;
}

function clientOf(element: Json): ReadAssignment | undefined {
  if (!Array.isArray(element)) return undefined;
  const [key, data] = element as [Json, Json];
  const concat = field(data, 'concat');
  if (typeof key !== 'string' || !Array.isArray(concat)) return undefined;
  const client = parseIpv4(key);
  const publicAddress = typeof concat[0] === 'string' ? parseIpv4(concat[0]) : undefined;
  const block = ports(concat[1]);
  if (client === undefined || publicAddress === undefined || !block) return undefined;
  return { client, publicAddress, firstPort: block[0], lastPort: block[1], proto: 'both' };
}

function ruleOf(rule: Json): NftRuleView {
  let outInterface: string | undefined;
  let l4protoOp: string | undefined;
  let snatMap: string | undefined;
  const expressions = field(rule, 'expr');
  for (const expression of Array.isArray(expressions) ? expressions : []) {
    const match = field(expression, 'match');
    const key = field(field(field(match, 'left'), 'meta'), 'key');
    if (key === 'oifname' && typeof field(match, 'right') === 'string')
      outInterface = field(match, 'right') as string;
    if (key === 'l4proto') l4protoOp = String(field(match, 'op'));
    const data = field(field(field(field(expression, 'snat'), 'addr'), 'map'), 'data');
    if (typeof data === 'string') snatMap = data;
  }
  return { outInterface, l4protoOp, snatMap };
}

export function parseNftTableJson(text: string): NftTableView {
  const objects = field(JSON.parse(text) as Json, 'nftables');
  let chain: NftTableView['chain'];
  const rules: NftRuleView[] = [];
  const clients: ReadAssignment[] = [];
  const others = new Map<number, number>();
  const canaries: string[] = [];
  for (const object of Array.isArray(objects) ? objects : []) {
    const map = field(object, 'map');
    const elements = field(map, 'elem');
    if (field(map, 'name') === 'clients' && Array.isArray(elements)) {
      for (const element of elements) {
        const assignment = clientOf(element);
        if (assignment) clients.push(assignment);
      }
    } else if (field(map, 'name') === 'others' && Array.isArray(elements)) {
      for (const element of elements) {
        const [key, data] = Array.isArray(element) ? (element as [Json, Json]) : [];
        const client = typeof key === 'string' ? parseIpv4(key) : undefined;
        const publicAddress = typeof data === 'string' ? parseIpv4(data) : undefined;
        // An element not understood matches no client.
        others.set(client ?? -1, publicAddress ?? -1);
      }
    }
    const chainJson = field(object, 'chain');
    if (field(chainJson, 'name') === 'postrouting') chain = chainOf(chainJson);
    const canary = canaryOfChain(chainJson);
    if (canary !== undefined) canaries.push(canary);
    const rule = field(object, 'rule');
    if (rule !== undefined && field(rule, 'chain') === 'postrouting') rules.push(ruleOf(rule));
  }
  clients.sort((a, b) => a.client - b.client);
  const othersMatch =
    others.size === clients.length &&
    clients.every(({ client, publicAddress }) => others.get(client) === publicAddress);
  return { chain, rules, clients, othersMatch, canaries };
}

function chainOf(chainJson: Json): NftChainView {
  return {
    priority: Number(field(chainJson, 'prio')),
    hook: String(field(chainJson, 'hook')),
    type: String(field(chainJson, 'type')),
  };
}

function canaryOfChain(chainJson: Json): string | undefined {
  const name = field(chainJson, 'name');
  return typeof name === 'string' ? nftCanaryOf(name) : undefined;
}

/** `nft -j list chains ip`: the chains of every `ip` table; `table` picks ours. */
export function parseNftChainsJson(text: string, table: string): NftChainsView {
  const objects = field(JSON.parse(text) as Json, 'nftables');
  let chain: NftChainView | undefined;
  const canaries: string[] = [];
  for (const object of Array.isArray(objects) ? objects : []) {
    const chainJson = field(object, 'chain');
    if (field(chainJson, 'table') !== table) continue;
    if (field(chainJson, 'name') === 'postrouting') chain = chainOf(chainJson);
    const canary = canaryOfChain(chainJson);
    if (canary !== undefined) canaries.push(canary);
  }
  return { chain, canaries };
}
