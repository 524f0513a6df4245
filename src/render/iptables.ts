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
import { createHash } from 'node:crypto';
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
  /**
   * Where this render put each chain, for the next render to reuse what did not change
   * (renderIptablesChains); only renders have it, not rulesets read back from text.
   */
  readonly layout?: ChainLayout | undefined;
}

/**
 * A render's chains as the next render reuses them. A chain's subtree (the chain and, depth
 * first, all chains below it) is a pure function of its name and the rows of the clients in its
 * prefix, and comes out as one run of chains and one run of text: when a new render finds a
 * chain of the same name over the same rows, it takes the old run whole instead of writing it
 * again. A one-client change of a /16 then writes the few chains on that client's path (issue
 * 13: the render was 40-110 ms of every apply).
 */
export interface ChainLayout {
  /** The rows rendered (see AssignmentColumns). */
  readonly rows: AssignmentColumns;
  /** The chains, in the order of the text. */
  readonly names: readonly string[];
  /** For each chain, the rows it holds: rowLow[i] to rowHigh[i] (exclusive). */
  readonly rowLow: Int32Array;
  readonly rowHigh: Int32Array;
  /** For each chain, the index past the last chain of its subtree. */
  readonly subtreeEnd: Int32Array;
  /** For each chain, where its rules start in the rules text; then the text's length. */
  readonly textStart: Float64Array;
  /** The rules text as pieces that are each one flat string or a slice of one. */
  readonly pieces: readonly string[];
}

/**
 * Past this many pieces (each apply that reuses adds a few), a render starts over: the text
 * stays a few large strings, and the old ones it no longer needs are freed.
 */
const MAX_REUSED_PIECES = 256;

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

const CHAIN6_NAME = new RegExp(`^${CHAIN_PREFIX}-[0-9a-f]{12}/(\\d{1,3})$`);

/**
 * Whether we ever give a chain this name: the root, `TNAT-a.b.c.d/p` (IPv4), or
 * `TNAT-<12 hex digits>/p` (IPv6, see chainName6). Another name with our prefix is the
 * operator's, which a merge must not take for ours.
 */
export function isGivenChainName(name: string): boolean {
  if (name === ROOT_CHAIN || prefixOfChain(name) !== undefined) return true;
  const prefix6 = CHAIN6_NAME.exec(name)?.[1];
  return prefix6 !== undefined && Number(prefix6) >= 1 && Number(prefix6) <= 128;
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

/** The layout being written, in growable columns. */
class LayoutBuilder {
  readonly names: string[] = [];
  readonly rowLow: number[] = [];
  readonly rowHigh: number[] = [];
  readonly subtreeEnd: number[] = [];
  readonly textStart: number[] = [];

  /** Starts chain `name`; its subtree ends with end(). Returns its index. */
  begin(name: string, low: number, high: number, offset: number): number {
    this.rowLow.push(low);
    this.rowHigh.push(high);
    this.textStart.push(offset);
    this.subtreeEnd.push(-1);
    return this.names.push(name) - 1;
  }

  end(index: number): void {
    this.subtreeEnd[index] = this.names.length;
  }

  finish(rows: AssignmentColumns, offset: number, pieces: readonly string[]): ChainLayout {
    return {
      rows,
      names: this.names,
      rowLow: Int32Array.from(this.rowLow),
      rowHigh: Int32Array.from(this.rowHigh),
      subtreeEnd: Int32Array.from(this.subtreeEnd),
      textStart: Float64Array.from([...this.textStart, offset]),
      pieces,
    };
  }
}

/** An earlier render, to take unchanged subtrees from. */
interface Reuse {
  readonly layout: ChainLayout;
  readonly chains: ReadonlyMap<string, readonly string[]>;
  readonly indexOf: ReadonlyMap<string, number>;
  /** Where each piece starts in the text. */
  readonly pieceStart: Float64Array;
}

interface RenderContext {
  readonly chains: Map<string, readonly string[]>;
  readonly writer: LineWriter;
  readonly rows: AssignmentColumns;
  /** The text of each public address, by its index in `rows`. */
  readonly publicText: readonly Uint8Array[];
  readonly layout: LayoutBuilder;
  readonly reuse: Reuse | undefined;
}

function renderContext(rows: AssignmentColumns, previous: IptablesNat | undefined): RenderContext {
  const reuse = reuseOf(previous);
  // A line holds a chain name (28 at most), two addresses, a port block and the pieces.
  const longestLine = 128 + PIECES.tcpSnat.length;
  return {
    chains: new Map(),
    // About two lines of 100 bytes per client (pages of the buffer that stay unwritten, when
    // most of the text is reused, cost nothing).
    writer: new LineWriter(rows.count * 200, longestLine),
    rows,
    publicText: rows.publicAddresses.map((address) => encodeText(formatIpv4(address))),
    layout: new LayoutBuilder(),
    reuse,
  };
}

function reuseOf(previous: IptablesNat | undefined): Reuse | undefined {
  const layout = previous?.layout;
  if (!previous || !layout || layout.pieces.length > MAX_REUSED_PIECES) return undefined;
  const pieceStart = new Float64Array(layout.pieces.length + 1);
  layout.pieces.forEach((piece, i) => (pieceStart[i + 1] = (pieceStart[i] ?? 0) + piece.length));
  return {
    layout,
    chains: previous.chains,
    indexOf: new Map(layout.names.map((name, i) => [name, i])),
    pieceStart,
  };
}

/** Whether rows `low`..`high` of `a` bind the same clients the same way as `b`'s rows. */
function sameRows(
  a: AssignmentColumns,
  low: number,
  high: number,
  b: AssignmentColumns,
  bLow: number,
  bHigh: number,
): boolean {
  if (high - low !== bHigh - bLow) return false;
  for (let i = low, j = bLow; i < high; i++, j++) {
    if (
      a.client[i] !== b.client[j] ||
      a.firstPort[i] !== b.firstPort[j] ||
      a.lastPort[i] !== b.lastPort[j] ||
      a.publicAddresses[a.publicIndex[i] ?? 0] !== b.publicAddresses[b.publicIndex[j] ?? 0]
    )
      return false;
  }
  return true;
}

/**
 * Takes `chain`'s subtree from the earlier render when it held the same rows; false when it
 * did not (the subtree must be written).
 */
function reuseSubtree(context: RenderContext, chain: string, low: number, high: number): boolean {
  const { reuse, writer, layout, chains } = context;
  const index = reuse?.indexOf.get(chain);
  if (reuse === undefined || index === undefined) return false;
  const old = reuse.layout;
  if (!sameRows(context.rows, low, high, old.rows, old.rowLow[index] ?? 0, old.rowHigh[index] ?? 0))
    return false;
  const end = old.subtreeEnd[index] ?? index + 1;
  const from = old.textStart[index] ?? 0;
  const to = old.textStart[end] ?? from;
  const shift = writer.offset - from;
  const rowShift = low - (old.rowLow[index] ?? 0);
  const first = layout.names.length;
  for (let i = index; i < end; i++) {
    const name = old.names[i] ?? '';
    layout.begin(
      name,
      (old.rowLow[i] ?? 0) + rowShift,
      (old.rowHigh[i] ?? 0) + rowShift,
      (old.textStart[i] ?? 0) + shift,
    );
    layout.subtreeEnd[first + i - index] = (old.subtreeEnd[i] ?? 0) - index + first;
    chains.set(name, reuse.chains.get(name) ?? []);
  }
  appendOldText(context, reuse, from, to);
  return true;
}

/** The earlier render's text from `from` to `to`, as slices of its pieces. */
function appendOldText(context: RenderContext, reuse: Reuse, from: number, to: number): void {
  const { pieces } = reuse.layout;
  const { pieceStart } = reuse;
  // The last piece that starts at or before `from`.
  let below = 0;
  let above = pieces.length;
  while (above - below > 1) {
    const middle = (below + above) >>> 1;
    if ((pieceStart[middle] ?? 0) <= from) below = middle;
    else above = middle;
  }
  for (let i = below; i < pieces.length && (pieceStart[i] ?? 0) < to; i++) {
    const start = pieceStart[i] ?? 0;
    const piece = pieces[i] ?? '';
    const a = Math.max(from, start) - start;
    const b = Math.min(to, start + piece.length) - start;
    context.writer.text(a === 0 && b === piece.length ? piece : piece.slice(a, b));
  }
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
  if (reuseSubtree(context, chain, low, high)) return;
  const { layout, writer } = context;
  const index = layout.begin(chain, low, high, writer.offset);
  writeChainAndChildren(context, chain, low, high, scoped);
  layout.end(index);
}

function writeChainAndChildren(
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
 * (`TNAT-10.42.0.0/20`), in depth-first ascending order. With `previous` (an earlier render,
 * of any map), the subtrees whose clients are bound as they were there are taken from it, not
 * written again: the result is the same, byte for byte.
 */
export function renderIptablesChains(
  map: PortMap,
  options: IptablesOptions,
  previous?: IptablesNat,
): IptablesNat {
  return renderRows(assignmentColumns(map), options, previous);
}

function renderRows(
  rows: AssignmentColumns,
  options: IptablesOptions,
  previous?: IptablesNat,
): IptablesNat {
  const context = renderContext(rows, previous);
  writeSubtree(context, ROOT_CHAIN, 0, context.rows.count, false);
  const offset = context.writer.offset;
  const pieces = context.writer.finishPieces();
  let rulesText = '';
  for (const piece of pieces) rulesText += piece;
  return {
    chains: context.chains,
    jump: renderJump(options),
    rulesText,
    layout: context.layout.finish(context.rows, offset, pieces),
  };
}

/** The prefix a chain of ours holds, by its name; undefined for a name we never give. */
function prefixOfChain(name: string): { network: number; prefix: number } | undefined {
  if (name === ROOT_CHAIN) return { network: 0, prefix: 0 };
  // `TNAT-a.b.c.d/p`, read by hand: a /16 has 8 000 chains.
  if (!name.startsWith(`${CHAIN_PREFIX}-`)) return undefined;
  let at = CHAIN_PREFIX.length + 1;
  let network = 0;
  let prefix = -1;
  for (let part = 0; part < 5; part++) {
    let value = 0;
    const start = at;
    for (let code = name.charCodeAt(at); code >= 48 && code <= 57; code = name.charCodeAt(++at))
      value = value * 10 + code - 48;
    const digits = at - start;
    const separator = part < 3 ? 46 : part === 3 ? 47 : Number.NaN;
    if (digits === 0 || digits > 3) return undefined;
    if (part < 4) {
      if (value > 255 || name.charCodeAt(at) !== separator) return undefined;
      network = network * 256 + value;
      at++;
    } else {
      prefix = value;
    }
  }
  if (at !== name.length || prefix < 1 || prefix > 32) return undefined;
  return (network & prefixMask(prefix)) >>> 0 === network ? { network, prefix } : undefined;
}

/** The first row at or past `address` (rows ascending by client). */
function firstRowFrom(client: Uint32Array, count: number, address: number): number {
  let below = 0;
  let above = count;
  while (below < above) {
    const middle = (below + above) >>> 1;
    if ((client[middle] ?? 0) < address) below = middle + 1;
    else above = middle;
  }
  return below;
}

/**
 * The layout of our chains as a rules file holds them, for a render to reuse (see ChainLayout):
 * `nat` as the merge wrote it (its rules one run of text in the chains' order), `rows` the
 * bindings it was rendered from. Only for a file this renderer wrote from those bindings (the
 * caller's to know: see renderFormat); undefined when the chains are not one tree in our
 * order, or the text is not their rules.
 */
export function layoutOfRulesFile(
  nat: {
    readonly chains: ReadonlyMap<string, readonly string[]>;
    readonly rulesText?: string | undefined;
  },
  rows: AssignmentColumns,
): ChainLayout | undefined {
  const { rulesText } = nat;
  if (rulesText === undefined) return undefined;
  const names = [...nat.chains.keys()];
  const textStart = new Float64Array(names.length + 1);
  let offset = 0;
  for (const [i, rules] of [...nat.chains.values()].entries()) {
    textStart[i] = offset;
    for (const rule of rules) offset += rule.length + 1;
  }
  textStart[names.length] = offset;
  return layoutOfChains(names, textStart, rows, rulesText);
}

/**
 * The layout of chains `names` whose rules are `rulesText`, chain `names[i]` holding the part
 * from `textStart[i]` to `textStart[i + 1]`, rendered from `rows`: their tree and each one's
 * rows (see layoutOfRulesFile). Undefined when the chains are not one tree in our order, or
 * the offsets do not span the text.
 */
export function layoutOfChains(
  names: readonly string[],
  textStart: Float64Array,
  rows: AssignmentColumns,
  rulesText: string,
): ChainLayout | undefined {
  const count = names.length;
  if (textStart.length !== count + 1 || textStart[count] !== rulesText.length) return undefined;
  const rowLow = new Int32Array(count);
  const rowHigh = new Int32Array(count);
  const subtreeEnd = new Int32Array(count);
  const ranges: { first: number; last: number; prefix: number }[] = [];
  const open: number[] = [];
  for (let i = 0; i < count; i++) {
    const name = names[i] ?? '';
    const range = prefixOfChain(name);
    if (range === undefined || (i === 0) !== (name === ROOT_CHAIN)) return undefined;
    if ((textStart[i] ?? 0) > (textStart[i + 1] ?? 0)) return undefined;
    const first = range.network;
    const last = first + 2 ** (32 - range.prefix) - 1;
    ranges.push({ first, last, prefix: range.prefix });
    // Close the subtrees this chain lies outside of; it must lie inside the one left open.
    for (let top = open.at(-1); top !== undefined; top = open.at(-1)) {
      const outer = ranges[top];
      if (outer && outer.prefix < range.prefix && outer.first <= first && last <= outer.last) break;
      subtreeEnd[top] = i;
      open.pop();
    }
    if (i > 0 && open.length === 0) return undefined;
    open.push(i);
    rowLow[i] = firstRowFrom(rows.client, rows.count, first);
    rowHigh[i] = firstRowFrom(rows.client, rows.count, last + 1);
  }
  for (const top of open) subtreeEnd[top] = count;
  return { rows, names, rowLow, rowHigh, subtreeEnd, textStart, pieces: [rulesText] };
}

/**
 * Where `fileText` holds the rules text of `nat` as one run, its rules in order, each on a line
 * of its own: found by its first line (searching for the whole rules text would first copy its
 * pieces into one string), then compared line by line. Undefined when it holds no such run.
 */
export function rulesRunIn(nat: IptablesNat, fileText: string): number | undefined {
  const { rulesText } = nat;
  if (rulesText === undefined || rulesText.length === 0) return undefined;
  const firstLine = [...nat.chains.values()].find((rules) => rules.length > 0)?.[0];
  if (firstLine === undefined) return undefined;
  const found = fileText.indexOf(`\n${firstLine}\n`);
  if (found < 0) return undefined;
  const at = found + 1;
  let start = at;
  for (const rules of nat.chains.values()) {
    for (const rule of rules) {
      const end = start + rule.length;
      // A slice compared is some 3x faster than startsWith at an offset here (a /16: 20 ms).
      if (fileText.charCodeAt(end) !== 10 || fileText.slice(start, end) !== rule) return undefined;
      start = end + 1;
    }
  }
  return start === at + rulesText.length ? at : undefined;
}

/**
 * Chains whose rules are lines of `text` from `at` on, one after the other: chain `names[i]`
 * holds the lines from `at + textStart[i]` to `at + textStart[i + 1]` (each line with its
 * `\n`). Undefined when a chain's part does not end with a line break, or, with `checkNames`,
 * when its first or last line is not a rule of its chain (`-A NAME ...`).
 */
export function chainsOfText(
  names: readonly string[],
  text: string,
  at: number,
  textStart: ArrayLike<number>,
  checkNames = false,
): Map<string, readonly string[]> | undefined {
  const chains = new Map<string, readonly string[]>();
  let start = at;
  for (const [i, name] of names.entries()) {
    const end = at + (textStart[i + 1] ?? 0);
    if (start !== at + (textStart[i] ?? 0)) return undefined;
    const lead = `-A ${name} `;
    const lines: string[] = [];
    while (start < end) {
      const newline = text.indexOf('\n', start);
      if (newline < 0 || newline >= end) return undefined;
      lines.push(text.slice(start, newline));
      start = newline + 1;
    }
    // In a file our merge wrote, each chain's rules are one group of lines in the order of
    // `names`: a group starting and ending with rules of its chain lies where the text has it.
    const first = lines[0];
    const last = lines.at(-1);
    if (checkNames && first !== undefined && last !== undefined) {
      if (!first.startsWith(lead) || !last.startsWith(lead)) return undefined;
    }
    chains.set(name, lines);
  }
  return chains;
}

/**
 * Our chains as `rulesRunIn` found them in `text` at `at`, for a render `layout` whose pieces
 * were let go: the daemon keeps the layout alone between applies, and gets the chains back from
 * the rules file when it still is the file it wrote (see TextlessPlan). Undefined when `text`
 * cannot hold them there (too short, or a chain's part does not end a line).
 */
export function chainsFromLayout(
  layout: ChainLayout,
  jump: string,
  text: string,
  at: number,
): IptablesNat | undefined {
  const { names, textStart } = layout;
  const length = textStart[names.length] ?? 0;
  if (at < 1 || at + length > text.length || text.charCodeAt(at - 1) !== 10) return undefined;
  const chains = chainsOfText(names, text, at, textStart);
  if (chains === undefined) return undefined;
  const rulesText = text.slice(at, at + length);
  return { chains, jump, rulesText, layout: { ...layout, pieces: [rulesText] } };
}

/**
 * A digest of how this renderer writes rules: the render of a small map that takes every form
 * a rule can have (jumps, tcp, udp and other rules, one-port blocks, a shared address). A
 * rules file whose archive records the same digest was written the way this renderer would
 * write it, so its text may be reused (layoutOfRulesFile); after an upgrade that changed the
 * form, the first apply renders whole.
 */
export function renderFormat(): string {
  return (format ??= computeRenderFormat());
}

let format: string | undefined;

function computeRenderFormat(): string {
  const hash = createHash('sha256');
  for (const [name, rules] of renderFormatSample().chains)
    hash.update(`${name}\n${rules.join('\n')}\n`);
  return hash.digest('hex').slice(0, 16);
}

/** The small map renderFormat renders (exported for the test that it takes every form). */
export function renderFormatSample(): IptablesNat {
  const base = 0x0a000000;
  const clients = [
    ...Array.from({ length: 21 }, (_, i) => base + 2 + i),
    ...Array.from({ length: 4 }, (_, i) => base + 0x10000 + i),
    base + 0x90001,
  ];
  const count = clients.length;
  const rows: AssignmentColumns = {
    count,
    client: Uint32Array.from(clients),
    // The four of 10.1.0.0/30 share the first address; the others alternate.
    publicIndex: Uint32Array.from(clients, (client, i) => (client >>> 16 === 0x0a01 ? 0 : i % 2)),
    publicAddresses: [0xc0000201, 0xc6336407],
    firstPort: Int32Array.from(clients, (_, i) => 1024 + i * 64),
    lastPort: Int32Array.from(clients, (_, i) => (i === 3 ? 1024 + i * 64 : 1087 + i * 64)),
  };
  return renderRows(rows, { outInterface: 'eth0' });
}

/**
 * All clients in the one chain `TNAT`, as the original vpn-generate-natfw does (but behind the
 * `-o` jump and with the same handling of other protocols as the tree): the baseline for
 * benchmarks.
 */
export function renderLinearChain(map: PortMap, options: IptablesOptions): IptablesNat {
  const context = renderContext(assignmentColumns(map), undefined);
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
