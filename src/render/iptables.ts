/**
 * The per-client SNAT rules as iptables-restore lines. A new connection walks POSTROUTING into
 * our chains once (conntrack remembers the NAT decision), so the rules it passes are the cost of
 * every new connection: the clients sit in a 16-way tree of chains keyed by source prefix, which
 * bounds that cost by the depth of the tree instead of the number of clients.
 *
 * Rule lines are written in the form iptables-save prints them (`-s a/32 -p tcp -j ...`),
 * so what the kernel holds can be compared with what we render, line for line.
 */
import { assignmentColumns, type AssignmentColumns } from '../mapping/columns.js';
import type { PortMap } from '../mapping/types.js';
import { formatIpv4, prefixMask } from '../net/ipv4.js';
import { encodeText, LineWriter } from './line-writer.js';

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
  /**
   * When given, exactly the rules of `chains` in order, each followed by `\n`: a merge copies
   * it whole instead of joining two million lines again (issue 13).
   */
  readonly rulesText?: string | undefined;
}

/**
 * The canary (kube-proxy's idea, issue 13): an empty-handed chain of one comment rule naming
 * the SHA-256 of the archive whose ruleset the kernel was last brought to. Nothing jumps to it,
 * so no packet ever sees it; a flushed nat table loses it with our chains, so "does the kernel
 * still hold what we applied" is one read of one small chain instead of the whole table. It
 * lives only in the kernel: never in the rules file or an archive. Not one of "our chains"
 * (isOurChain) for the ruleset's diffs; the payloads set it.
 */
export const CANARY_CHAIN = `${CHAIN_PREFIX}_APPLIED`;

/** The canary's rule for an archive digest (a comment without spaces: no quoting to undo). */
export function canaryRule(sha256: string): string {
  return `-A ${CANARY_CHAIN} -m comment --comment sha256:${sha256}`;
}

/** The archive digest a canary rule names, or undefined for any other line. */
export function canaryOf(line: string): string | undefined {
  return /^-A \S+ -m comment --comment "?sha256:([0-9a-f]{64})"?\s*$/.exec(line)?.[1];
}

export function isOurChain(name: string): boolean {
  return name === CHAIN_PREFIX || name.startsWith(`${CHAIN_PREFIX}-`);
}

export function renderJump(options: IptablesOptions): string {
  return `-A POSTROUTING -o ${options.outInterface} -j ${ROOT_CHAIN}`;
}

/**
 * The constant pieces of our rule lines, as bytes. Only the POSTROUTING jump matches `-o IF`:
 * our chains are reached through it alone, and in iptables-nft a rule's `-o` is its first
 * test, so repeating it cost every rule a new connection passes about a fifth of the rule
 * (issue 13: the last client of a /16 went from 1.15x to 1.08x the reference).
 */
interface Pieces {
  /** What follows a client's address in its tcp rule, up to the public address. */
  readonly tcpSnat: Uint8Array;
  readonly udpSnat: Uint8Array;
  /** What follows a client's address in its rule for other protocols. */
  readonly otherSnat: Uint8Array;
  readonly tcpReturn: Uint8Array;
  readonly udpReturn: Uint8Array;
  readonly sharedSnat: Uint8Array;
  readonly jump: Uint8Array;
}

const PIECES: Pieces = {
  tcpSnat: encodeText('/32 -p tcp -j SNAT --to-source '),
  udpSnat: encodeText('/32 -p udp -j SNAT --to-source '),
  otherSnat: encodeText('/32 -j SNAT --to-source '),
  tcpReturn: encodeText(' -p tcp -j RETURN'),
  udpReturn: encodeText(' -p udp -j RETURN'),
  sharedSnat: encodeText(' -j SNAT --to-source '),
  jump: encodeText(' -j '),
};

const COLON = 58;
const DASH = 45;
const SLASH = 47;

interface RenderContext {
  readonly chains: Map<string, string[]>;
  readonly writer: LineWriter;
  readonly rows: AssignmentColumns;
  /** The text of each public address, by its index in `rows`. */
  readonly publicText: readonly Uint8Array[];
}

function renderContext(map: PortMap): RenderContext {
  const rows = assignmentColumns(map);
  // A line holds a chain name (28 at most), two addresses, a port block and the pieces.
  const longestLine = 128 + PIECES.tcpSnat.length;
  return {
    chains: new Map(),
    // About two lines of 100 bytes per client.
    writer: new LineWriter(rows.count * 200, longestLine),
    rows,
    publicText: rows.publicAddresses.map((address) => encodeText(formatIpv4(address))),
  };
}

function publicTextOf(context: RenderContext, row: number): Uint8Array {
  return context.publicText[context.rows.publicIndex[row] ?? 0] ?? new Uint8Array();
}

/** A client's rule for one protocol: `-A chain -s client/32 -p tcp -j SNAT --to-source public:ports`. */
function writeClientRule(
  context: RenderContext,
  lead: Uint8Array,
  snat: Uint8Array,
  row: number,
  rules: string[],
) {
  const { writer, rows } = context;
  writer.bytes(lead);
  writer.ipv4(rows.client[row] ?? 0);
  writer.bytes(snat);
  writer.bytes(publicTextOf(context, row));
  writer.byte(COLON);
  // iptables-save prints a one-port range as a single port; match it.
  const first = rows.firstPort[row] ?? 0;
  const last = rows.lastPort[row] ?? 0;
  writer.decimal(first);
  if (first !== last) {
    writer.byte(DASH);
    writer.decimal(last);
  }
  writer.endLine(rules);
}

/**
 * The rules of a chain that holds rows `low` to `high` (exclusive) itself. `scoped` says the
 * chain is only reached through a `-s prefix` jump, so a rule without `-s` still only sees
 * addresses of that prefix.
 */
function writeLeaf(
  context: RenderContext,
  chain: string,
  low: number,
  high: number,
  scoped: boolean,
): void {
  const rules: string[] = [];
  context.chains.set(chain, rules);
  if (high <= low) return;
  const { writer, rows } = context;
  const head = encodeText(`-A ${chain}`);
  const lead = encodeText(`-A ${chain} -s `);
  let shared = rows.publicIndex[low] ?? 0;
  for (let row = low; row < high; row++) {
    if (rows.publicIndex[row] !== shared) shared = -1;
  }
  // Every client's tcp rule, then every udp rule: a new tcp connection passes at most the
  // leaf's tcp rules, not the udp rules of the clients before it (issue 13). tcp/udp that
  // matched no client must not reach the port-less SNAT below: it would get an arbitrary
  // port, possibly inside a client's block, and a trace would name that client.
  const protocols = [
    { snat: PIECES.tcpSnat, ret: PIECES.tcpReturn },
    { snat: PIECES.udpSnat, ret: PIECES.udpReturn },
  ];
  for (const { snat, ret } of protocols) {
    for (let row = low; row < high; row++) writeClientRule(context, lead, snat, row, rules);
    writer.bytes(head);
    writer.bytes(ret);
    writer.endLine(rules);
  }
  if (scoped && shared >= 0) {
    writer.bytes(head);
    writer.bytes(PIECES.sharedSnat);
    writer.bytes(publicTextOf(context, low));
    writer.endLine(rules);
    return;
  }
  for (let row = low; row < high; row++) {
    writer.bytes(lead);
    writer.ipv4(rows.client[row] ?? 0);
    writer.bytes(PIECES.otherSnat);
    writer.bytes(publicTextOf(context, row));
    writer.endLine(rules);
  }
}

/** The longest prefix, in whole tree levels, that both addresses share (32 when equal). */
function commonLevel(low: number, high: number): number {
  const bits = Math.clz32((low ^ high) >>> 0);
  return bits === 32 ? 32 : bits - (bits % LEVEL_BITS);
}

/**
 * Where the runs of rows `low` to `high` that share their top `prefix` bits start and end: a
 * binary search for the end of each run, as the rows are ascending.
 */
function runBounds(client: Uint32Array, low: number, high: number, prefix: number): number[] {
  const span = 2 ** (32 - prefix);
  const bounds = [low];
  for (let start = low; start < high;) {
    // The first address past the run of `start`.
    const limit = (Math.floor((client[start] ?? 0) / span) + 1) * span;
    let below = start + 1;
    let above = high;
    while (below < above) {
      const middle = (below + above) >>> 1;
      if ((client[middle] ?? 0) < limit) below = middle + 1;
      else above = middle;
    }
    bounds.push(below);
    start = below;
  }
  return bounds;
}

/**
 * Writes `chain` for rows `low` to `high` (exclusive; ascending clients) and, depth first, its
 * children: the chain's own jumps first, then each child's subtree, so the text comes out in
 * the order of the chains. A child that would only forward to a single grandchild is skipped:
 * the jump names the narrowest prefix that still holds all of the child's clients.
 */
function writeSubtree(
  context: RenderContext,
  chain: string,
  low: number,
  high: number,
  scoped: boolean,
): void {
  const { client } = context.rows;
  const first = client[low] ?? 0;
  const last = client[high - 1] ?? 0;
  if (high - low <= LEAF_CLIENTS || first === last) {
    writeLeaf(context, chain, low, high, scoped);
    return;
  }
  const { writer } = context;
  const rules: string[] = [];
  context.chains.set(chain, rules);
  const lead = encodeText(`-A ${chain} -s `);
  const bounds = runBounds(client, low, high, commonLevel(first, last) + LEVEL_BITS);
  const children: string[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const groupLow = bounds[i] ?? 0;
    const groupFirst = client[groupLow] ?? 0;
    const prefix = commonLevel(groupFirst, client[(bounds[i + 1] ?? 0) - 1] ?? 0);
    const network = (groupFirst & prefixMask(prefix)) >>> 0;
    const child = `${CHAIN_PREFIX}-${formatIpv4(network)}/${prefix}`;
    children.push(child);
    writer.bytes(lead);
    writer.ipv4(network);
    writer.byte(SLASH);
    writer.decimal(prefix);
    writer.bytes(PIECES.jump);
    writer.bytes(encodeText(child));
    writer.endLine(rules);
  }
  children.forEach((child, i) => {
    writeSubtree(context, child, bounds[i] ?? 0, bounds[i + 1] ?? 0, true);
  });
}

/**
 * The tree of chains for `map`: root `TNAT`, then chains named by the source prefix they hold
 * (`TNAT-10.42.0.0/20`), in depth-first ascending order.
 */
export function renderIptablesChains(map: PortMap, options: IptablesOptions): IptablesNat {
  const context = renderContext(map);
  writeSubtree(context, ROOT_CHAIN, 0, context.rows.count, false);
  const rulesText = context.writer.finish();
  return { chains: context.chains, jump: renderJump(options), rulesText };
}

/**
 * All clients in the one chain `TNAT`, as the original vpn-generate-natfw does (but behind the
 * `-o` jump and with the same handling of other protocols as the tree): the baseline for
 * benchmarks.
 */
export function renderLinearChain(map: PortMap, options: IptablesOptions): IptablesNat {
  const context = renderContext(map);
  writeLeaf(context, ROOT_CHAIN, 0, context.rows.count, false);
  const rulesText = context.writer.finish();
  return { chains: context.chains, jump: renderJump(options), rulesText };
}

/**
 * Our declarations, the jump and our rules as one `*nat` table: for a dry run and for tests.
 * Not a `--noflush` payload: that would append the jump again on every apply.
 */
export function renderNatTable(nat: IptablesNat): string {
  const declarations = [...nat.chains.keys()].map((name) => `:${name} - [0:0]`);
  const rules =
    nat.rulesText ??
    [...nat.chains.values()]
      .flat()
      .map((rule) => `${rule}\n`)
      .join('');
  return ['*nat', ...declarations, nat.jump, ''].join('\n') + rules + 'COMMIT\n';
}
