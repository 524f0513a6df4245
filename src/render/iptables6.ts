/**
 * The IPv6 NAT rules as ip6tables-restore lines, for rules.v6: the same shape as the IPv4 ones
 * (src/render/iptables.ts) so the same merge and the same manual trace work. Port blocks: a
 * 16-way tree of chains by source prefix with the seed's leaf form
 * (`-s fd87:12::4d/128 -p tcp -j SNAT --to-source [2001:db8::1]:65472-65535`), `-o` only on the
 * POSTROUTING jump and a leaf's tcp rules before its udp rules, as for IPv4 (issue 13).
 * Prefix mode: one NETMAP rule per client range, which keeps the host bits (ip6tables-extensions(8)).
 */
import { createHash } from 'node:crypto';
import type { Assignment6, Map6 } from '../mapping/map6.js';
import type { PortBlock } from '../mapping/types.js';
import { formatCidr6, formatIpv6, parseCidr6, prefixMask6 } from '../net/ipv6.js';
import { CHAIN_PREFIX, renderJump, ROOT_CHAIN } from './iptables.js';
import type { IptablesNat, IptablesOptions } from './iptables.js';
import { groupRuns } from './group-runs.js';

/** As in the IPv4 tree: a chain of at most 16 clients is a leaf, each level narrows by 4 bits. */
const LEAF_CLIENTS = 16;
const LEVEL_BITS = 4;

/**
 * A prefix's chain name. The IPv4 form `TNAT-<prefix>` does not fit iptables' 28 characters
 * for IPv6 (`TNAT-fd3c:9a1f:7d2e:1::4d00/120` is 31), so the name carries a digest of the
 * prefix; the jump to it names the prefix itself.
 */
export function chainName6(network: bigint, prefix: number): string {
  const digest = createHash('sha256').update(formatCidr6({ network, prefix })).digest('hex');
  return `${CHAIN_PREFIX}-${digest.slice(0, 12)}/${prefix}`;
}

function formatPorts(block: PortBlock): string {
  // ip6tables-save prints a one-port range as a single port; match it.
  return block.first === block.last ? `${block.first}` : `${block.first}-${block.last}`;
}

interface Context {
  readonly chains: Map<string, string[]>;
}

function leafRules(
  context: Context,
  chain: string,
  clients: readonly Assignment6[],
  scoped: boolean,
) {
  const head = `-A ${chain}`;
  const rules: string[] = [];
  const first = clients[0]?.publicAddress;
  const shared = clients.every((client) => client.publicAddress === first) ? first : undefined;
  const blocked = clients.filter((client) => client.block !== undefined);
  if (blocked.length === 0) return rules;
  for (const protocol of ['tcp', 'udp']) {
    for (const { client, publicAddress, block } of blocked) {
      const ports = block ? formatPorts(block) : '';
      const target = `-j SNAT --to-source [${formatIpv6(publicAddress)}]:${ports}`;
      rules.push(`${head} -s ${formatIpv6(client)}/128 -p ${protocol} ${target}`);
    }
    // As for IPv4: tcp/udp of a non-client must not get an arbitrary port from the SNAT below.
    rules.push(`${head} -p ${protocol} -j RETURN`);
  }
  if (scoped && shared !== undefined) {
    rules.push(`${head} -j SNAT --to-source ${formatIpv6(shared)}`);
  } else {
    for (const { client, publicAddress } of clients) {
      rules.push(
        `${head} -s ${formatIpv6(client)}/128 -j SNAT --to-source ${formatIpv6(publicAddress)}`,
      );
    }
  }
  return rules;
}

/** The longest prefix, in whole levels, that both addresses share (128 when equal). */
function commonLevel(low: bigint, high: bigint): number {
  const differing = low ^ high;
  const bits = differing === 0n ? 128 : 128 - differing.toString(2).length;
  return bits === 128 ? 128 : bits - (bits % LEVEL_BITS);
}

function groupByPrefix(clients: readonly Assignment6[], prefix: number): Assignment6[][] {
  const shift = BigInt(128 - prefix);
  return groupRuns(clients, (assignment) => assignment.client >> shift);
}

function renderSubtree(
  context: Context,
  chain: string,
  clients: readonly Assignment6[],
  scoped: boolean,
) {
  const first = clients[0]?.client ?? 0n;
  const last = clients.at(-1)?.client ?? 0n;
  if (clients.length <= LEAF_CLIENTS || first === last) {
    context.chains.set(chain, leafRules(context, chain, clients, scoped));
    return;
  }
  const rules: string[] = [];
  context.chains.set(chain, rules);
  for (const group of groupByPrefix(clients, commonLevel(first, last) + LEVEL_BITS)) {
    const low = group[0]?.client ?? 0n;
    const prefix = commonLevel(low, group.at(-1)?.client ?? 0n);
    const network = low & prefixMask6(prefix);
    const child = chainName6(network, prefix);
    rules.push(`-A ${chain} -s ${formatCidr6({ network, prefix })} -j ${child}`);
    renderSubtree(context, child, group, true);
  }
}

/** One NETMAP rule per client range, ascending: the client's host bits into the public prefix. */
function netmapRules(map: Extract<Map6, { mode: 'prefix' }>, out: string): string[] {
  const ranges = new Set<string>();
  // assignments() is ascending by address, so the ranges come out ascending too.
  for (const { pool } of map.assignments()) {
    const range = parseCidr6(pool.subnet6 ?? '');
    if (range) ranges.add(formatCidr6(range));
  }
  const to = formatCidr6(map.publicPrefix);
  return [...ranges].map((range) => `-A ${ROOT_CHAIN} -s ${range} -o ${out} -j NETMAP --to ${to}`);
}

/** Our chains and jump for rules.v6, in the shape the rules-file merge takes. */
export function renderIp6tablesChains(map: Map6, options: IptablesOptions): IptablesNat {
  const context: Context = { chains: new Map() };
  if (map.mode === 'prefix') {
    context.chains.set(ROOT_CHAIN, netmapRules(map, options.outInterface));
  } else {
    renderSubtree(context, ROOT_CHAIN, [...map.assignments()], false);
  }
  return { chains: context.chains, jump: renderJump(options) };
}
