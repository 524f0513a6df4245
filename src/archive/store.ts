/**
 * The archive directory on disk. Every ruleset that becomes active is written once, read-only,
 * and never modified or deleted by us. Writing happens in two steps around the kernel apply:
 * `prepare` writes the complete file, fsynced, as `<name>.pending` before the kernel is touched
 * (so a full disk or a read-only directory fails before anything changes, and a process killed
 * while the kernel takes the rules leaves a durable record of what it was loading), and `commit`
 * links it to its final name once the rules are active. link() refuses to replace an existing
 * file, so an archive is never clobbered. A pending archive found later (its applier was killed)
 * is resolved by the next apply, which reads the kernel: see apply/pending.ts.
 *
 * Archives are gzip-compressed unless firewall.compressArchives is off; a file is read as gzip
 * when it starts with gzip's magic bytes, whatever its name. Every SHA-256 (the chain's
 * `previous`, the state file, the journal) is of the bytes as stored, as `sha256sum` shows it.
 */
import {
  chmodSync,
  closeSync,
  openSync,
  readSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { constants, createGzip, gunzipSync, gzipSync } from 'node:zlib';
import { TnatError } from '../errors.js';
import { fsyncDirectory, writeTemporaryBeside } from '../system/atomic-write.js';
import { processIdentity } from '../system/process-alive.js';
import {
  bindingIndexName,
  bindingsOfArchive,
  decodeBindingIndex,
  type ArchiveBindings,
  type ReadForTrace,
} from './binding-index.js';
import { renderArchive, sha256, type ArchiveHeader, type Backend } from './header.js';
import { writeBindingIndex } from './index-file.js';
import type { Bindings } from '../mapping/bindings.js';
import {
  archiveName,
  ipv6SiblingNames,
  sortArchiveNames,
  type ArchiveKind,
  type ArchiveName,
} from './names.js';

export interface StoredArchive {
  readonly entry: ArchiveName;
  readonly path: string;
  /** The ruleset text (decompressed). */
  readonly text: string;
  /** Its start, which holds the header (without decompressing the rest when lazy). */
  readonly header?: string;
  /** SHA-256 of the file's bytes. */
  readonly sha256: string;
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The text of an archive file's bytes (gzip or plain). */
export function decodeArchive(bytes: Buffer, path: string): string {
  if (!isGzip(bytes)) return bytes.toString('utf8');
  try {
    return gunzipSync(bytes).toString('utf8');
  } catch (error) {
    throw new TnatError(
      'E_ARCHIVE',
      `${path} is not a complete gzip file (${(error as Error).message}): it was cut or damaged after it was archived`,
      { cause: error },
    );
  }
}

/** gzip level 3: a /16 ruleset (14.5 MB) in about 30 ms to 1.2 MB; higher levels gain little. */
const GZIP_LEVEL = 3;
/**
 * gzip of `parts` one after the other, in libuv's thread pool: byte for byte what gzip of
 * their concatenation gives (deflate does not see where one write ends), without first copying
 * them into one buffer (a /16: 14.5 MB of fresh memory, 4-8 ms of this thread).
 */
function gzipParts(parts: readonly Uint8Array[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const zip = createGzip({ level: GZIP_LEVEL, chunkSize: 1 << 20 });
    zip.on('data', (chunk: Buffer) => chunks.push(chunk));
    zip.on('error', reject);
    zip.on('end', () => {
      resolve(Buffer.concat(chunks));
    });
    for (const part of parts) zip.write(part);
    zip.end();
  });
}

/** An archive's bytes as stored: gzip, or the plain text. */
export function encodeArchive(content: string | Uint8Array, compress: boolean): Buffer {
  if (compress) return gzipSync(content, { level: GZIP_LEVEL });
  return typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
}

/** A ruleset's text with its UTF-8 bytes, when the caller has them (encoded once for all). */
export interface EncodedText {
  readonly text: string;
  readonly bytes: Uint8Array;
}

function archiveError(dir: string, action: string, error: unknown): TnatError {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return new TnatError(
    action === 'read' ? 'E_ARCHIVE' : 'E_WRITE',
    `the archive directory ${dir} cannot be ${action} (${code}): make it writable for root or change firewall.archiveDir; nothing was applied`,
    { cause: error },
  );
}

export function listArchives(dir: string): ArchiveName[] {
  try {
    return sortArchiveNames(readdirSync(dir));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw archiveError(dir, 'read', error);
  }
}

/** An archive file's stored bytes; one sentence naming the file when it cannot be read. */
function readArchiveBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
      cause: error,
    });
  }
}

/**
 * An archive read and hashed. `lazy`: its text is decompressed when first asked for, not now
 * (an apply that knows the text already, from the plan it archived, never asks).
 */
export function readArchive(dir: string, entry: ArchiveName, lazy = false): StoredArchive {
  const path = join(dir, entry.name);
  const bytes = readArchiveBytes(path);
  const digest = sha256(bytes);
  if (!lazy) return { entry, path, text: decodeArchive(bytes, path), sha256: digest };
  let text: string | undefined;
  return {
    entry,
    path,
    sha256: digest,
    get text() {
      return (text ??= decodeArchive(bytes, path));
    },
    get header() {
      return text ?? headerText(bytes);
    },
  };
}

function readIndexQuietly(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    // missing or unreadable: the archive is parsed instead
    return undefined;
  }
}

/**
 * An archive for a trace: read and hashed whole (the archive is the evidence), then its binding
 * index is used when it names exactly these bytes; else the text is decompressed for parsing.
 */
export function readArchiveForTrace(dir: string, entry: ArchiveName): ReadForTrace {
  const path = join(dir, entry.name);
  const bytes = readArchiveBytes(path);
  const digest = sha256(bytes);
  const bindings = indexedBindings(dir, entry, digest);
  return bindings
    ? { sha256: digest, bindings }
    : { sha256: digest, text: decodeArchive(bytes, path) };
}

/**
 * What the binding index of archive `entry` holds, when it names exactly the archive bytes
 * whose SHA-256 is `sha256` (read and hashed by the caller); undefined when there is no such
 * index (parse the archive's text instead). Its assignments are the same list, in the same
 * order, as readAssignments of the archive's body: the index was made from it.
 */
export function indexedBindings(
  dir: string,
  entry: ArchiveName,
  sha256: string,
): ArchiveBindings | undefined {
  const index = readIndexQuietly(join(dir, bindingIndexName(entry.name)));
  return index && decodeBindingIndex(index, entry.name, sha256);
}

/**
 * The IPv6 half of an iptables activation: `rules.v6.<the same seconds>` (.gz or plain), or
 * undefined when there is none. Whether it is the one the activation's header vouches for is
 * the caller's to check (its `ipv6` SHA-256 against this one's).
 */
export function readIpv6Half(
  dir: string,
  entry: ArchiveName,
): { path: string; text: string; sha256: string } | undefined {
  const half = ipv6HalfBytes(dir, entry);
  return (
    half && {
      path: half.path,
      text: decodeArchive(half.bytes, half.path),
      sha256: sha256(half.bytes),
    }
  );
}

/** SHA-256 of the IPv6 half as stored (undefined: there is none), without decompressing it. */
export function ipv6HalfDigest(dir: string, entry: ArchiveName): string | undefined {
  const half = ipv6HalfBytes(dir, entry);
  return half && sha256(half.bytes);
}

function ipv6HalfBytes(
  dir: string,
  entry: ArchiveName,
): { path: string; bytes: Buffer } | undefined {
  for (const name of ipv6SiblingNames(entry.activatedAt)) {
    const path = join(dir, name);
    try {
      return { path, bytes: readFileSync(path) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
        cause: error,
      });
    }
  }
  return undefined;
}

/** SHA-256 of an archive file as stored, without decompressing it (what the chain records). */
export function archiveDigest(dir: string, entry: ArchiveName): string {
  const path = join(dir, entry.name);
  try {
    return sha256(readFileSync(path));
  } catch (error) {
    throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
      cause: error,
    });
  }
}

/** The first few KiB of an archive: its header, without reading a whole /16 ruleset. */
export function readArchiveHeader(dir: string, entry: ArchiveName): string {
  const path = join(dir, entry.name);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const buffer = Buffer.alloc(HEADER_BYTES);
    const start = buffer.subarray(0, readSync(fd, buffer, 0, HEADER_BYTES, 0));
    return headerText(start);
  } catch (error) {
    throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
      cause: error,
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Enough for our header, whose settings line is the longest part. */
const HEADER_BYTES = 8192;

/** The text of an archive's first bytes: its header, compressed or not. */
function headerText(bytes: Buffer): string {
  const start = bytes.subarray(0, HEADER_BYTES);
  if (!isGzip(start)) return start.toString('utf8');
  // As much as the first bytes give: enough for the header of a compressed archive.
  return gunzipSync(start, { finishFlush: constants.Z_SYNC_FLUSH }).toString('utf8');
}

export function newestArchive(
  dir: string,
  backend?: Backend,
  lazy = false,
): StoredArchive | undefined {
  const entries = listArchives(dir).filter(
    (entry) => backend === undefined || entry.backend === backend,
  );
  const newest = entries.at(-1);
  return newest ? readArchive(dir, newest, lazy) : undefined;
}

/** `rules.v4.pending`, `rules.v6.pending`, `traceable-nat.nft.pending`: an apply under way. */
export function pendingName(kind: ArchiveKind): string {
  return archiveName(kind, 0).replace(/\.0$/, '.pending');
}

/** The process that was changing the kernel for a pending archive, beside it. */
function childFile(dir: string, kind: ArchiveKind): string {
  return join(dir, `.${pendingName(kind)}.child`);
}

export interface FoundPending<Kind extends ArchiveKind = Backend> {
  readonly backend: Kind;
  readonly path: string;
  readonly text: string;
  readonly sha256: string;
  readonly compressed: boolean;
  /** The iptables-restore or nft process it was waiting for, if it was recorded. */
  readonly childPid: number | undefined;
  /** Who that process was (see processIdentity), when it could be told: not a later one. */
  readonly childIdentity?: string | undefined;
}

/** The pending archives of the hash chain that an interrupted apply left in `dir` (normally none). */
export function findPendingArchives(dir: string): FoundPending[] {
  return (['iptables', 'nftables'] as const)
    .map((backend) => findPending(dir, backend))
    .filter((found) => found !== undefined);
}

/** The pending archive of one kind (`ip6tables`: the rules.v6 half of a pending rules.v4). */
export function findPending<Kind extends ArchiveKind>(
  dir: string,
  backend: Kind,
): FoundPending<Kind> | undefined {
  const path = join(dir, pendingName(backend));
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TnatError('E_ARCHIVE', `${path} cannot be read: check its permissions`, {
      cause: error,
    });
  }
  let childPid: number | undefined;
  let childIdentity: string | undefined;
  try {
    // `<pid> <identity>`, or a bare PID (written by a version before the identity).
    const [pidText, identity] = readFileSync(childFile(dir, backend), 'utf8').trim().split(' ');
    const pid = Number(pidText);
    childPid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
    childIdentity = identity;
  } catch {
    childPid = undefined;
  }
  return {
    backend,
    path,
    text: decodeArchive(bytes, path),
    sha256: sha256(bytes),
    compressed: isGzip(bytes),
    childPid,
    childIdentity,
  };
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Drops a pending archive whose ruleset never became active. */
export function discardPending(dir: string, backend: ArchiveKind): void {
  removeQuietly(join(dir, pendingName(backend)));
  removeQuietly(childFile(dir, backend));
  fsyncDirectory(dir);
}

/** Gives a pending archive its final name (link(2): never over an existing archive). */
export function commitPending(
  dir: string,
  backend: ArchiveKind,
  pending: { readonly sha256: string; readonly compressed: boolean },
  activatedAt: number,
): { path: string; sha256: string } {
  const path = join(dir, archiveName(backend, activatedAt, pending.compressed));
  try {
    linkSync(join(dir, pendingName(backend)), path);
  } catch (error) {
    // After the kernel took the ruleset: the caller says what that means (never "nothing was
    // applied").
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new TnatError(
      'E_WRITE',
      `${path} cannot be created from ${pendingName(backend)} (${code}): free space in ${dir}, or move away what holds that name`,
      { cause: error },
    );
  }
  chmodSync(path, 0o440);
  removeQuietly(join(dir, pendingName(backend)));
  removeQuietly(childFile(dir, backend));
  fsyncDirectory(dir);
  return { path, sha256: pending.sha256 };
}

export interface PendingArchive {
  readonly content: string;
  readonly sha256: string;
  /** Remembers which child process is changing the kernel (see FoundPending.childPid). */
  recordChild(pid: number): void;
  /**
   * Gives the archive its final name; returns its path and SHA-256. `bindings`: the body's
   * bindings, when the caller knows them without parsing it (for the binding index).
   */
  commit(activatedAt: number, bindings?: () => Bindings): { path: string; sha256: string };
  /** The kernel did not take it: nothing claims activation. */
  discard(): void;
}

/**
 * Writes the archive, complete and fsynced, as the directory's pending archive. `previous` is the
 * newest archive in the directory (of either backend): the hash chain links every file to the
 * one before it. `kind` is `ip6tables` for the rules.v6 half of an iptables activation.
 */
export function prepareArchive(
  dir: string,
  header: Omit<ArchiveHeader, 'previous'>,
  body: string | EncodedText,
  previous: { readonly name: string; readonly sha256: string } | undefined,
  compress = true,
  kind: ArchiveKind = header.backend,
): PendingArchive {
  const { head, text, content } = startArchive(dir, header, body, previous);
  const bytes = encodeArchive(storedForm(head, body, content), compress);
  return writePending(dir, kind, { head, text, content, bytes }, compress);
}

/**
 * prepareArchive with the gzip in libuv's thread pool: the caller's thread goes on (writing the
 * rules file, comparing bindings) while a /16 is compressed, and awaits the pending archive
 * before it changes the kernel. A caller that stops before awaiting must still await and
 * discard it, or a pending archive stays behind.
 */
export async function prepareArchiveAsync(
  ...[dir, header, body, previous, compress = true, kind = header.backend]: Parameters<
    typeof prepareArchive
  >
): Promise<PendingArchive> {
  const { head, text, content } = startArchive(dir, header, body, previous);
  const bytes = compress
    ? await gzipParts(
        typeof body === 'string'
          ? [Buffer.from(content, 'utf8')]
          : [Buffer.from(head, 'utf8'), body.bytes],
      )
    : encodeArchive(storedForm(head, body, content), false);
  return writePending(dir, kind, { head, text, content, bytes }, compress);
}

function startArchive(
  dir: string,
  header: Omit<ArchiveHeader, 'previous'>,
  body: string | EncodedText,
  previous: { readonly name: string; readonly sha256: string } | undefined,
): { head: string; text: string; content: string } {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o750 });
  } catch (error) {
    throw archiveError(dir, 'created', error);
  }
  const text = typeof body === 'string' ? body : body.text;
  const head = renderArchive({ ...header, previous }, '');
  return { head, text, content: head + text };
}

/** What is stored: the header and body as one text, or their bytes when the body's are known. */
function storedForm(
  head: string,
  body: string | EncodedText,
  content: string,
): string | Uint8Array {
  return typeof body === 'string'
    ? content
    : Buffer.concat([Buffer.from(head, 'utf8'), body.bytes]);
}

function writePending(
  dir: string,
  kind: ArchiveKind,
  archive: { head: string; text: string; content: string; bytes: Buffer },
  compress: boolean,
): PendingArchive {
  const { head, text, content, bytes } = archive;
  const backend = kind;
  try {
    const temporary = writeTemporaryBeside(join(dir, archiveName(backend, 0)), bytes, 0o440);
    renameSync(temporary, join(dir, pendingName(backend)));
    fsyncDirectory(dir);
  } catch (error) {
    throw archiveError(dir, 'written', error);
  }
  const digest = sha256(bytes);
  let settled = false;
  return {
    content,
    sha256: digest,
    recordChild(pid) {
      try {
        // Read now, while the child cannot have been reaped: its PID may be another process's
        // by the time anyone reads this (after a reboot, PIDs start again).
        const identity = processIdentity(pid);
        writeFileSync(childFile(dir, backend), `${pid}${identity ? ` ${identity}` : ''}\n`);
      } catch {
        // Only an aid for a later recovery (it waits for this child); the apply goes on.
      }
    },
    commit(activatedAt, bindings) {
      const committed = commitPending(
        dir,
        backend,
        { sha256: digest, compressed: compress },
        activatedAt,
      );
      settled = true;
      // The rules are active and archived by now; the index only speeds up later traces. The
      // IPv6 half is read only by IPv6 traces, from its own text.
      if (kind !== 'ip6tables') {
        writeBindingIndex(
          dir,
          basename(committed.path),
          digest,
          bindingsOfArchive(head, text, bindings),
        );
      }
      return committed;
    },
    discard() {
      if (settled) return;
      settled = true;
      discardPending(dir, backend);
    },
  };
}
