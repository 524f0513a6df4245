/**
 * The per-client SNAT rules as iptables-restore lines. A new connection walks POSTROUTING into
 * our chains once (conntrack remembers the NAT decision), so the rules it passes are the cost of
 * every new connection: the clients sit in a 16-way tree of chains keyed by source prefix, which
 * bounds that cost by the depth of the tree instead of the number of clients.
 *
 * Rule lines are written in the form iptables-save prints them (`-s a/32 -o IF -p tcp -j ...`),
 * so what the kernel holds can be compared with what we render, line for line.
 */
import { formatIpv4, prefixMask } from '../net/ipv4.js';
import type { Assignment, PortBlock, PortMap } from '../mapping/types.js';
import { groupRuns } from './group-runs.js';

/** Every chain we own is `TNAT` or starts with `TNAT-`; nothing else in a ruleset is ours. */
export const CHAIN_PREFIX = 'TNAT';
/** The root chain, the target of the POSTROUTING jump. */
export const ROOT_CHAIN = CHAIN_PREFIX;
/** iptables' limit (XT_EXTENSION_MAXNAMELEN - 1); our names stay at 23 or less. */
export const MAX_CHAIN_NAME_LENGTH = 28;

/** A chain holding at most this many clients holds their rules itself (a leaf). */
const LEAF_CLIENTS = 16;
/** Each tree level narrows the source prefix by this many bits: 16 children per chain. */
const LEVEL_BITS = 4;

export interface IptablesOptions {
  /** The interface towards the internet: rules match `-o` on it only. */
  readonly outInterface: string;
}

export interface IptablesNat {
  /** Chain name -> its rules, each a complete `-A CHAIN ...` line, in order. */
  readonly chains: ReadonlyMap<string, readonly string[]>;
  /** The `-A POSTROUTING -o IF -j TNAT` line that sends traffic into our chains. */
  readonly jump: string;
}

export function isOurChain(name: string): boolean {
  return name === CHAIN_PREFIX || name.startsWith(`${CHAIN_PREFIX}-`);
}

export function renderJump(options: IptablesOptions): string {
  return `-A POSTROUTING -o ${options.outInterface} -j ${ROOT_CHAIN}`;
}

function formatPortBlock(block: PortBlock): string {
  // iptables-save prints a one-port range as a single port; match it.
  return block.first === block.last ? `${block.first}` : `${block.first}-${block.last}`;
}

/** Ascending by client (already so from a PortMap; the sort then costs one pass). */
function sortedAssignments(map: PortMap): Assignment[] {
  return [...map.assignments()].sort((a, b) => a.client - b.client);
}

/** Formats addresses for one render; public addresses repeat for every client. */
function addressFormatter(): (address: number) => string {
  const known = new Map<number, string>();
  return (address) => {
    let text = known.get(address);
    if (text === undefined) {
      text = formatIpv4(address);
      known.set(address, text);
    }
    return text;
  };
}

interface RenderContext {
  readonly chains: Map<string, string[]>;
  readonly out: string;
  readonly publicText: (address: number) => string;
}

/**
 * The rules of a chain that holds `clients` itself. `scoped` says the chain is only reached
 * through a `-s prefix` jump, so a rule without `-s` still only sees addresses of that prefix.
 */
function leafRules(
  context: RenderContext,
  chain: string,
  clients: readonly Assignment[],
  scoped: boolean,
): string[] {
  const { publicText } = context;
  const rules: string[] = [];
  if (clients.length === 0) return rules;
  const head = `-A ${chain}`;
  const out = `-o ${context.out}`;
  const sources: string[] = [];
  let sharedAddress: number | undefined = clients[0]?.publicAddress;
  for (const { client, publicAddress, block } of clients) {
    if (publicAddress !== sharedAddress) sharedAddress = undefined;
    const target = `-j SNAT --to-source ${publicText(publicAddress)}:${formatPortBlock(block)}`;
    const source = `-s ${formatIpv4(client)}/32`;
    sources.push(source);
    rules.push(
      `${head} ${source} ${out} -p tcp ${target}`,
      `${head} ${source} ${out} -p udp ${target}`,
    );
  }
  // tcp/udp that matched no client must not reach the port-less SNAT below: it would get an
  // arbitrary port, possibly inside a client's block, and a trace would name that client.
  rules.push(`${head} ${out} -p tcp -j RETURN`, `${head} ${out} -p udp -j RETURN`);
  if (scoped && sharedAddress !== undefined) {
    rules.push(`${head} ${out} -j SNAT --to-source ${publicText(sharedAddress)}`);
  } else {
    clients.forEach(({ publicAddress }, i) => {
      rules.push(
        `${head} ${sources[i] ?? ''} ${out} -j SNAT --to-source ${publicText(publicAddress)}`,
      );
    });
  }
  return rules;
}

/** The longest prefix, in whole tree levels, that both addresses share (32 when equal). */
function commonLevel(low: number, high: number): number {
  const bits = Math.clz32((low ^ high) >>> 0);
  return bits === 32 ? 32 : bits - (bits % LEVEL_BITS);
}

/** Splits ascending clients into runs that share the top `prefix` bits. */
function groupByPrefix(clients: readonly Assignment[], prefix: number): Assignment[][] {
  const shift = 32 - prefix;
  return groupRuns(clients, (assignment) => assignment.client >>> shift);
}

/**
 * Renders `chain` for `clients` (ascending) and, depth first, its children. A child that would
 * only forward to a single grandchild is skipped: the jump names the narrowest prefix that still
 * holds all of the child's clients.
 */
function renderSubtree(
  context: RenderContext,
  chain: string,
  clients: readonly Assignment[],
  scoped: boolean,
): void {
  const first = clients[0]?.client ?? 0;
  const last = clients.at(-1)?.client ?? 0;
  if (clients.length <= LEAF_CLIENTS || first === last) {
    context.chains.set(chain, leafRules(context, chain, clients, scoped));
    return;
  }
  const rules: string[] = [];
  context.chains.set(chain, rules);
  for (const group of groupByPrefix(clients, commonLevel(first, last) + LEVEL_BITS)) {
    const low = group[0]?.client ?? 0;
    const prefix = commonLevel(low, group.at(-1)?.client ?? 0);
    const network = (low & prefixMask(prefix)) >>> 0;
    const child = `${CHAIN_PREFIX}-${formatIpv4(network)}/${prefix}`;
    rules.push(`-A ${chain} -s ${formatIpv4(network)}/${prefix} -o ${context.out} -j ${child}`);
    renderSubtree(context, child, group, true);
  }
}

/**
 * The tree of chains for `map`: root `TNAT`, then chains named by the source prefix they hold
 * (`TNAT-10.42.0.0/20`), in depth-first ascending order.
 */
export function renderIptablesChains(map: PortMap, options: IptablesOptions): IptablesNat {
  const context = {
    chains: new Map<string, string[]>(),
    out: options.outInterface,
    publicText: addressFormatter(),
  };
  renderSubtree(context, ROOT_CHAIN, sortedAssignments(map), false);
  return { chains: context.chains, jump: renderJump(options) };
}

/**
 * All clients in the one chain `TNAT`, as the original vpn-generate-natfw does (but with `-o`
 * and the same handling of other protocols as the tree): the baseline for benchmarks.
 */
export function renderLinearChain(map: PortMap, options: IptablesOptions): IptablesNat {
  const context = {
    chains: new Map<string, string[]>(),
    out: options.outInterface,
    publicText: addressFormatter(),
  };
  const rules = leafRules(context, ROOT_CHAIN, sortedAssignments(map), false);
  return { chains: new Map([[ROOT_CHAIN, rules]]), jump: renderJump(options) };
}

/**
 * Our declarations, the jump and our rules as one `*nat` table: for a dry run and for tests.
 * Not a `--noflush` payload: that would append the jump again on every apply.
 */
export function renderNatTable(nat: IptablesNat): string {
  const declarations = [...nat.chains.keys()].map((name) => `:${name} - [0:0]`);
  const rules = [...nat.chains.values()].flat();
  return ['*nat', ...declarations, nat.jump, ...rules, 'COMMIT', ''].join('\n');
}
