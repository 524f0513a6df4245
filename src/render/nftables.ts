/**
 * The per-client SNAT as one nftables table of our own, for eduVPN 3.x installs that use
 * nftables. Lookups are map lookups (no per-client rules to walk), and an `nft -f` transaction
 * replaces the table or changes single elements atomically.
 */
import { bindingsOf, publicAddressAt, walkBindings, type Bindings } from '../mapping/bindings.js';
import { assignmentColumns, type AssignmentColumns } from '../mapping/columns.js';
import type { Binding, PortMap } from '../mapping/types.js';
import { formatIpv4 } from '../net/ipv4.js';
import { encodeText, LineWriter } from './line-writer.js';

export const DEFAULT_NFT_TABLE = 'traceable_nat';

export interface NftOptions {
  /** The interface towards the internet: only packets leaving through it are translated. */
  readonly outInterface: string;
  /** Our table in family `ip`; `traceable_nat` by default. */
  readonly table?: string;
}

export type AssignmentSource = PortMap | Bindings | Iterable<Binding>;

function isPortMap(source: AssignmentSource): source is PortMap {
  return 'assignments' in source && typeof source.assignments === 'function';
}

function isBindings(source: AssignmentSource): source is Bindings {
  return 'count' in source && source.client instanceof Uint32Array;
}

/** One per client, ascending (the first of a client listed twice). */
function bindingsOfSource(source: AssignmentSource): Bindings {
  if (isPortMap(source)) return assignmentColumns(source);
  if (isBindings(source)) return source;
  return bindingsOf([...source]);
}

/** `client : public address`, the element of `others` and the start of one of `clients`. */
function pairOf(bindings: Bindings, row: number): string {
  return `${formatIpv4(bindings.client[row] ?? 0)} : ${formatIpv4(publicAddressAt(bindings, row))}`;
}

function clientElement(bindings: Bindings, row: number): string {
  // Always a range: nft 1.0.6 refuses a single port as the value of an interval map
  // ("Invalid argument"), though `nft list` prints a one-port range that way.
  return `${pairOf(bindings, row)} . ${bindings.firstPort[row] ?? 0}-${bindings.lastPort[row] ?? 0}`;
}

const TAB = 9;
const DASH = 45;
const COMMA = 44;

/**
 * Where renderNftTable put each map element, for the next render to copy the lines of clients
 * bound the same way instead of writing them again (issue 13: a change costs what it changes).
 */
export interface NftLayout {
  /** The rows rendered. */
  readonly rows: AssignmentColumns;
  /**
   * Where each row's line in map `clients` starts in the text, then where the last one ends
   * (a V8 string holds under 2^30 characters, so 32 bits hold any offset).
   */
  readonly clientsStart: Uint32Array;
  /** The same in map `others`. */
  readonly othersStart: Uint32Array;
}

/** A render of our table, with its layout. */
export interface NftRender {
  readonly text: string;
  readonly layout: NftLayout;
}

/** The element lines of one map of an earlier render, and which of its rows each row equals. */
interface MapReuse {
  readonly text: string;
  readonly starts: Uint32Array;
  /** For each row, the earlier row with the same client, address and block; or -1. */
  readonly match: Int32Array;
}

/**
 * For each row of `rows`, the row of `old` that binds the same client to the same address and
 * block, or -1; both ascending by client, so one walk. A row's element lines are a function of
 * its binding alone, so an equal row's lines are the ones this render would write.
 */
function matchRows(rows: AssignmentColumns, old: AssignmentColumns): Int32Array {
  const match = new Int32Array(rows.count).fill(-1);
  let j = 0;
  for (let i = 0; i < rows.count; i++) {
    const client = rows.client[i] ?? 0;
    while (j < old.count && (old.client[j] ?? 0) < client) j++;
    if (
      j < old.count &&
      old.client[j] === client &&
      old.firstPort[j] === rows.firstPort[i] &&
      old.lastPort[j] === rows.lastPort[i] &&
      publicAddressAt(old, j) === publicAddressAt(rows, i)
    ) {
      match[i] = j;
      j++;
    }
  }
  return match;
}

/**
 * A map declaration; an empty map leaves out `elements`, which nft requires to be non-empty.
 * `element` writes one element's text for row `row` of the columns; `starts` gets where each
 * row's line starts. With `reuse`, runs of rows that follow each other in the earlier render
 * too are copied from its text as one piece.
 */
function writeMap(
  writer: LineWriter,
  map: { readonly name: string; readonly type: string; readonly starts: Uint32Array },
  rows: AssignmentColumns,
  element: (row: number) => void,
  reuse: MapReuse | undefined,
): void {
  const line = (text: string) => {
    writer.bytes(encodeText(text));
    writer.endLine();
  };
  const { starts } = map;
  line(`\tmap ${map.name} {`);
  line(`\t\ttype ${map.type}`);
  if (rows.count > 0) {
    line('\t\telements = {');
    let row = 0;
    while (row < rows.count) {
      const old = reuse?.match[row] ?? -1;
      if (reuse !== undefined && old >= 0) {
        let end = row + 1;
        while (end < rows.count && reuse.match[end] === old + end - row) end++;
        const from = reuse.starts[old] ?? 0;
        const shift = writer.offset - from;
        for (let i = row; i < end; i++) starts[i] = (reuse.starts[old + i - row] ?? 0) + shift;
        writer.text(reuse.text.slice(from, reuse.starts[old + end - row] ?? from));
        row = end;
        continue;
      }
      starts[row] = writer.offset;
      writer.byte(TAB);
      writer.byte(TAB);
      writer.byte(TAB);
      element(row);
      writer.byte(COMMA);
      writer.endLine();
      row++;
    }
    starts[rows.count] = writer.offset;
    line('\t\t}');
  } else {
    starts[0] = writer.offset;
  }
  line('\t}');
}

/**
 * One `nft -f` transaction that replaces our whole table: declaring the table first makes the
 * `delete` succeed whether or not it exists. The map of port blocks has no `flags interval`:
 * with it, changing one element of a large map takes seconds.
 */
export function renderNftTable(map: PortMap, options: NftOptions): string {
  return renderNftTableReusing(map, options).text;
}

/**
 * renderNftTable, with the element lines of clients bound as in `previous` (an earlier render
 * of this renderer, whose text may go on past our table) copied from its text: the same text,
 * byte for byte, at the cost of the clients that changed (a /16 of 65 533 clients: 40-50 ms
 * to write whole).
 */
export function renderNftTableReusing(
  map: PortMap,
  options: NftOptions,
  previous?: NftRender,
): NftRender {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const rows = assignmentColumns(map);
  const match = previous && matchRows(rows, previous.layout.rows);
  const reuseOf = (starts: (layout: NftLayout) => Uint32Array): MapReuse | undefined =>
    previous && match && { text: previous.text, starts: starts(previous.layout), match };
  const layout: NftLayout = {
    rows,
    clientsStart: new Uint32Array(rows.count + 1),
    othersStart: new Uint32Array(rows.count + 1),
  };
  const oif = JSON.stringify(options.outInterface);
  const publicText = rows.publicAddresses.map((address) => encodeText(formatIpv4(address)));
  const between = encodeText(' : ');
  const dot = encodeText(' . ');
  // Both maps: about 60 bytes a client in all.
  const writer = new LineWriter(rows.count * 64 + 1024, 256 + oif.length + table.length);
  const pair = (row: number) => {
    writer.ipv4(rows.client[row] ?? 0);
    writer.bytes(between);
    writer.bytes(publicText[rows.publicIndex[row] ?? 0] ?? new Uint8Array());
  };
  const line = (text: string) => {
    writer.bytes(encodeText(text));
    writer.endLine();
  };
  line(
    `# traceable-nat: a fixed source port block per VPN client (table ip ${table}, replaced whole)`,
  );
  line(`table ip ${table}`);
  line(`delete table ip ${table}`);
  line(`table ip ${table} {`);
  writeMap(
    writer,
    {
      name: 'clients',
      type: 'ipv4_addr : interval ipv4_addr . inet_service',
      starts: layout.clientsStart,
    },
    rows,
    (row) => {
      // Always a range: nft 1.0.6 refuses a single port as the value of an interval map
      // ("Invalid argument"), though `nft list` prints a one-port range that way.
      pair(row);
      writer.bytes(dot);
      writer.decimal(rows.firstPort[row] ?? 0);
      writer.byte(DASH);
      writer.decimal(rows.lastPort[row] ?? 0);
    },
    reuseOf((earlier) => earlier.clientsStart),
  );
  writeMap(
    writer,
    { name: 'others', type: 'ipv4_addr : ipv4_addr', starts: layout.othersStart },
    rows,
    pair,
    reuseOf((earlier) => earlier.othersStart),
  );
  line('\tchain postrouting {');
  // Before eduVPN's masquerade chain (priority srcnat): the first NAT decision wins. The
  // snat-to-map form needs the l4proto match before it (nftables 1.0.6).
  line('\t\ttype nat hook postrouting priority srcnat - 10; policy accept;');
  line(`\t\toifname ${oif} meta l4proto { tcp, udp } snat ip to ip saddr map @clients`);
  line(`\t\toifname ${oif} meta l4proto != { tcp, udp } snat ip to ip saddr map @others`);
  line('\t}');
  line('}');
  return { text: writer.finish(), layout };
}

/**
 * The nftables canary (see CANARY_CHAIN in iptables.ts): an empty chain `applied_<sha256>` in
 * our table, named after the archive whose ruleset the kernel was last brought to. No hook, so
 * no packet sees it; `nft list chains` lists it in some 10 ms where `nft list table` takes
 * seconds for a /16, and a table loaded from the rules file (a boot) has none.
 */
export const NFT_CANARY_PREFIX = 'applied_';

/** The archive digest a chain name carries, or undefined when it is not a canary. */
export function nftCanaryOf(chain: string): string | undefined {
  const digest = chain.startsWith(NFT_CANARY_PREFIX) ? chain.slice(NFT_CANARY_PREFIX.length) : '';
  return /^[0-9a-f]{64}$/.test(digest) ? digest : undefined;
}

/**
 * Transaction lines that leave `sha256` the only canary in our table (empty if it already is).
 * `held`: the canaries the table holds; `unsure`: ones it may hold (not read): each is added
 * before it is deleted, as nft refuses to delete a chain that is not there and takes an `add`
 * of one that is.
 */
export function renderNftCanary(
  table: string,
  held: readonly string[],
  sha256: string,
  unsure: readonly string[] = [],
): string {
  if (held.length === 1 && held[0] === sha256 && unsure.every((digest) => digest === sha256))
    return '';
  const chain = (digest: string) => `chain ip ${table} ${NFT_CANARY_PREFIX}${digest}`;
  const gone = held
    .filter((digest) => digest !== sha256)
    .map((digest) => `delete ${chain(digest)}\n`);
  const maybeGone = unsure
    .filter((digest) => digest !== sha256 && !held.includes(digest))
    .map((digest) => `add ${chain(digest)}\ndelete ${chain(digest)}\n`);
  return (
    gone.join('') + maybeGone.join('') + (held.includes(sha256) ? '' : `add ${chain(sha256)}\n`)
  );
}

/**
 * The text of our `table ip`'s chain as renderNftTable wrote it, or undefined: two rulesets
 * whose chains are the same text differ at most in their maps' elements.
 */
export function nftChainText(text: string, table: string): string | undefined {
  const start = text.indexOf(`\ntable ip ${table} {\n`);
  const open = start < 0 ? -1 : text.indexOf('\n\tchain postrouting {\n', start);
  const close = open < 0 ? -1 : text.indexOf('\n\t}\n', open);
  return close < 0 ? undefined : text.slice(open, close);
}

function elementCommand(verb: string, table: string, map: string, elements: readonly string[]) {
  if (elements.length === 0) return [];
  return [
    `${verb} element ip ${table} ${map} {`,
    ...elements.map((element) => `\t${element},`),
    '}',
  ];
}

/**
 * The element changes that turn `before` into `after` as one `nft -f` transaction: clients
 * whose address or block changed are deleted and added again, vanished clients deleted, new
 * ones added. Empty when nothing changed.
 */
export function renderNftDelta(
  before: AssignmentSource,
  after: AssignmentSource,
  options: NftOptions,
): string {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const was = bindingsOfSource(before);
  const now = bindingsOfSource(after);
  const clientsGone: string[] = [];
  const othersGone: string[] = [];
  const clientsNew: string[] = [];
  const othersNew: string[] = [];
  const address = (row: number) => formatIpv4(was.client[row] ?? 0);
  // One merge walk, ascending by client: every list comes out ascending.
  walkBindings(was, now, {
    gone(row) {
      clientsGone.push(address(row));
      othersGone.push(address(row));
    },
    added(row) {
      clientsNew.push(clientElement(now, row));
      othersNew.push(pairOf(now, row));
    },
    both(held, planned, same) {
      if (same) return;
      clientsGone.push(address(held));
      clientsNew.push(clientElement(now, planned));
      if (publicAddressAt(was, held) === publicAddressAt(now, planned)) return;
      othersGone.push(address(held));
      othersNew.push(pairOf(now, planned));
    },
  });
  const lines = [
    ...elementCommand('delete', table, 'clients', clientsGone),
    ...elementCommand('delete', table, 'others', othersGone),
    ...elementCommand('add', table, 'clients', clientsNew),
    ...elementCommand('add', table, 'others', othersNew),
  ];
  if (lines.length === 0) return '';
  return [`# traceable-nat: changed clients of table ip ${table}`, ...lines].join('\n') + '\n';
}
