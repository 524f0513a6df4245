/**
 * The binding index of one archive (issue 15): what a trace reads from a /16 archive (its
 * header, whether its ruleset is complete, and every client's binding), kept compact beside it
 * so a trace need not decompress and parse 14.5 MB of rules. It is a cache, never evidence:
 * it names the archive and the SHA-256 of the archive's bytes it was made from, and a reader
 * that finds another name, another digest, another tool version or a damaged index parses the
 * archive instead. Pure: bytes in, bytes out.
 *
 * Layout: one text line `traceable-nat binding index 1 sha256:<hex>` (the SHA-256 of the rest
 * of the file, so a cut or altered index is never read), then gzip of one line of JSON (what
 * the index is of) followed by the bindings in columns of little-endian integers (a column
 * compresses far better than rows): client deltas (u32), public address numbers (u16, into
 * the JSON's address list), first ports (u16), last ports (u16), protocols (u8), and the
 * positions in search order (u32, src/archive/binding-columns.ts).
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { readAssignments, type ReadAssignment } from '../render/read-rules.js';
import type { Bindings } from '../mapping/bindings.js';
import {
  bindingAt,
  columnsHolding,
  PROTOCOLS,
  rowsOfBindings,
  rowsOfList,
  searchOrder,
  type BindingColumns,
  type BindingRows,
} from './binding-columns.js';
import { TOOL_VERSION } from '../version.js';
import { archiveBody, parseArchiveHeader, rulesetLooksComplete, sha256 } from './header.js';

/** What a trace reads from an archive, whether from its text or from its index. */
export interface ArchiveBindings {
  /** The archive's header as parseArchiveHeader reads it; empty for a foreign archive. */
  readonly header: string;
  /** Whether the ruleset reaches its end (rulesetLooksComplete of the body). */
  readonly complete: boolean;
  /** The distinct public addresses of the bindings. */
  readonly addresses: readonly number[];
  /** Every binding as readAssignments gives them, in its order (made on first call). */
  readonly assignments: () => readonly ReadAssignment[];
  /**
   * Every binding in the index's columns (src/archive/binding-columns.ts), when known without
   * making an object per binding; undefined when a port does not fit them (then no index).
   */
  readonly rows?: (() => BindingRows | undefined) | undefined;
  /** The bindings holding a port, from the index's columns; absent for a parsed text. */
  readonly holding?: ((port: number, address: number | undefined) => ReadAssignment[]) | undefined;
}

/** An archive read for a trace: its index's bindings when they match its bytes, else its text. */
export type ReadForTrace =
  | { readonly sha256: string; readonly bindings: ArchiveBindings; readonly text?: undefined }
  | { readonly sha256: string; readonly text: string; readonly bindings?: undefined };

const END_OF_HEADER = '# end of traceable-nat header\n';
/** parseArchiveHeader reads no further than this many lines. */
const HEADER_LINES = 20;

/**
 * What a trace reads from an archive's text (what its index holds). `known`: the bindings
 * readAssignments would read from the body, when the caller has them without parsing it (the
 * plan it rendered the body from: one per client, for tcp and udp alike).
 */
export function bindingsOfText(text: string, known?: () => Bindings): ArchiveBindings {
  const end = text.indexOf(END_OF_HEADER);
  let header = '';
  // Whatever parseArchiveHeader reads of the text, so it reads the same from the index.
  if (parseArchiveHeader(text) !== undefined) {
    header =
      end < 0
        ? text.split('\n', HEADER_LINES).join('\n')
        : text.slice(0, end + END_OF_HEADER.length);
  }
  return bindingsOfParts(header, archiveBody(text), known);
}

/**
 * bindingsOfText of `head + body`, where `head` is an archive header as renderArchive writes it
 * (up to its end line), without joining a /16's text to its header only to split it again.
 */
export function bindingsOfArchive(
  head: string,
  body: string,
  known?: () => Bindings,
): ArchiveBindings {
  return bindingsOfParts(parseArchiveHeader(head) === undefined ? '' : head, body, known);
}

function bindingsOfParts(
  header: string,
  body: string,
  known: (() => Bindings) | undefined,
): ArchiveBindings {
  const complete = rulesetLooksComplete(body);
  const rows = known && rowsOfBindings(known());
  if (rows) {
    let list: ReadAssignment[] | undefined;
    return {
      header,
      complete,
      addresses: rows.addresses,
      assignments: () =>
        (list ??= Array.from({ length: rows.client.length }, (_, at) => bindingAt(rows, at))),
      rows: () => rows,
    };
  }
  const assignments = readAssignments(body).assignments;
  return {
    header,
    complete,
    addresses: [...new Set(assignments.map((assignment) => assignment.publicAddress))],
    assignments: () => assignments,
  };
}

interface IndexMeta {
  readonly archive: string;
  readonly archiveSha256: string;
  /** Another version may read the rules differently: its index is not used. */
  readonly tool: string;
  readonly header: string;
  readonly complete: boolean;
  readonly count: number;
  readonly addresses: readonly number[];
}

const MAGIC = 'traceable-nat binding index 1 sha256:';
const DIGEST_LENGTH = 64;
/** The columns are little-endian and read as typed arrays, which use the machine's order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Bytes per binding over the columns: 4 + 2 + 2 + 2 + 1 + 4 (its place in search order). */
const BYTES_PER_BINDING = 15;

/** The file name of an archive's index: hidden, so `ls` and the archive globs never show it. */
export function bindingIndexName(archiveName: string): string {
  return `.${archiveName}.idx`;
}

/** The index of an archive's bindings; undefined when they do not fit its columns (no index). */
export function encodeBindingIndex(
  archive: string,
  archiveSha256: string,
  bindings: ArchiveBindings,
): Buffer | undefined {
  const rows = bindings.rows ? bindings.rows() : rowsOfList(bindings.assignments());
  // Typed arrays are in the machine's order; the columns are little-endian.
  if (!rows || !LITTLE_ENDIAN || rows.addresses.length > 0x10000) return undefined;
  const count = rows.client.length;
  const meta: IndexMeta = {
    archive,
    archiveSha256,
    tool: TOOL_VERSION,
    header: bindings.header,
    complete: bindings.complete,
    count,
    addresses: rows.addresses,
  };
  // Clients ascend, mostly by one: their deltas are what compresses.
  const deltas = new Uint32Array(count);
  let previous = 0;
  for (let at = 0; at < count; at++) {
    const client = rows.client[at] ?? 0;
    deltas[at] = (client - previous) >>> 0;
    previous = client;
  }
  const bytes = (array: ArrayBufferView) =>
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  const body = gzipSync(
    Buffer.concat([
      Buffer.from(`${JSON.stringify(meta)}\n`),
      bytes(deltas),
      bytes(rows.address),
      bytes(rows.firstPort),
      bytes(rows.lastPort),
      bytes(rows.proto),
      bytes(searchOrder(rows.address, rows.firstPort)),
    ]),
    { level: 6 },
  );
  return Buffer.concat([Buffer.from(`${MAGIC}${sha256(body)}\n`), body]);
}

function isMeta(value: unknown): value is IndexMeta {
  if (typeof value !== 'object' || value === null) return false;
  const meta = value as Record<string, unknown>;
  return (
    typeof meta.archive === 'string' &&
    typeof meta.archiveSha256 === 'string' &&
    typeof meta.tool === 'string' &&
    typeof meta.header === 'string' &&
    typeof meta.complete === 'boolean' &&
    Number.isSafeInteger(meta.count) &&
    Array.isArray(meta.addresses) &&
    meta.addresses.every((address) => Number.isInteger(address))
  );
}

/** The meta line and the columns, when the index is whole; undefined when it is not. */
function unpack(bytes: Buffer): { meta: IndexMeta; columns: Buffer } | undefined {
  const digestEnd = MAGIC.length + DIGEST_LENGTH;
  if (bytes.length <= digestEnd + 1 || bytes.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    return undefined;
  }
  const body = bytes.subarray(digestEnd + 1);
  if (
    bytes[digestEnd] !== 0x0a ||
    bytes.toString('latin1', MAGIC.length, digestEnd) !== sha256(body)
  ) {
    return undefined;
  }
  let payload: Buffer;
  let meta: unknown;
  try {
    // One output chunk of 1 MiB instead of 16 KiB ones: a /16's columns in one piece.
    payload = gunzipSync(body, { chunkSize: 1 << 20 });
    const end = payload.indexOf(0x0a);
    meta = JSON.parse(payload.toString('utf8', 0, end < 0 ? 0 : end));
    const columns = payload.subarray(end + 1);
    if (!isMeta(meta) || columns.length !== meta.count * BYTES_PER_BINDING) return undefined;
    return { meta, columns };
  } catch {
    return undefined;
  }
}

/**
 * The bindings an index holds, when it is whole and was made by this version from exactly the
 * archive named `archive` whose bytes have SHA-256 `archiveSha256`; else undefined (parse the
 * archive instead).
 */
export function decodeBindingIndex(
  bytes: Buffer,
  archive: string,
  archiveSha256: string,
): ArchiveBindings | undefined {
  const unpacked = unpack(bytes);
  if (!unpacked) return undefined;
  const { meta, columns } = unpacked;
  if (
    meta.archive !== archive ||
    meta.archiveSha256 !== archiveSha256 ||
    meta.tool !== TOOL_VERSION
  ) {
    return undefined;
  }
  const { count, addresses } = meta;
  if (!LITTLE_ENDIAN) return undefined;
  // Copies, as typed arrays want aligned memory; a /16 is some 1 MB of columns.
  const column = <T>(of: (buffer: ArrayBuffer) => T, offset: number, bytes: number): T =>
    of(new Uint8Array(columns.subarray(offset, offset + bytes)).buffer);
  const client = column((b) => new Uint32Array(b), 0, count * 4);
  for (let at = 1; at < count; at++) client[at] = ((client[at - 1] ?? 0) + (client[at] ?? 0)) >>> 0;
  const table: BindingColumns = {
    addresses,
    client,
    address: column((b) => new Uint16Array(b), count * 4, count * 2),
    firstPort: column((b) => new Uint16Array(b), count * 6, count * 2),
    lastPort: column((b) => new Uint16Array(b), count * 8, count * 2),
    proto: column((b) => new Uint8Array(b), count * 10, count),
    order: column((b) => new Uint32Array(b), count * 11, count * 4),
  };
  // Made by this version from these very bytes (the checks above): sound unless tampered
  // with, and then its SHA-256 line no longer matches; bounds are checked all the same.
  const sound =
    table.address.every((number) => number < addresses.length) &&
    table.proto.every((proto) => proto < PROTOCOLS.length) &&
    table.order.every((position) => position < count);
  if (!sound) return undefined;
  let list: ReadAssignment[] | undefined;
  return {
    header: meta.header,
    complete: meta.complete,
    addresses,
    assignments: () => (list ??= Array.from({ length: count }, (_, at) => bindingAt(table, at))),
    rows: () => table,
    holding: columnsHolding(table),
  };
}
