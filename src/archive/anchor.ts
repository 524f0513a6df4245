/**
 * The head of each archive chain, anchored outside its directory (`firewall.stateFile`). The hash
 * chain inside the directory proves that no archive before the newest was edited or removed,
 * but nothing in the directory vouches for the newest one: edited, deleted, renamed, replaced by
 * a forged file with the right `previous` line, or every archive deleted, the chain would still
 * look intact. The state file records the name and SHA-256 of the newest archive, and before the
 * kernel is changed, the SHA-256 of the archive about to become newest (`pending`); `check` and
 * every apply compare the directory against it.
 *
 * Two phases, so that no failure in between leaves a legitimate archive unanchored: `pending`
 * is written before the kernel is touched (a failure there changes nothing), `head` after the
 * archive got its name. An archive whose hash equals `pending` is the one we wrote.
 */
import { mkdirSync, readFileSync, renameSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import * as z from 'zod';
import { TnatError } from '../errors.js';
import { fsyncDirectory, writeTemporaryBeside } from '../system/atomic-write.js';

const headSchema = z.object({
  name: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  activatedAt: z.number(),
  clients: z.number(),
  /** Clients per VPN protocol, for the guard against a half-written eduVPN file. */
  clientsByProtocol: z.record(z.string(), z.number()).default({}),
  /**
   * SHA-256 of the archive's ruleset text (its body, UTF-8): the rules file an apply wrote
   * from it has these bytes, so a later apply knows the file is still that ruleset by hashing
   * the file, without decompressing the archive (a /16: 40 ms). Absent from older heads.
   */
  body: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});

const dirStateSchema = z.object({
  head: headSchema.optional(),
  pending: z.object({ sha256: z.string(), applyStarted: z.string() }).optional(),
  /**
   * The last moment (unix seconds) an apply knew the kernel held the head's ruleset: where a
   * drift found later may have begun (src/archive/drift.ts). Absent from older state files.
   */
  verifiedAt: z.number().optional(),
});

const stateSchema = z.object({
  version: z.literal(1),
  archiveDirs: z.record(z.string(), dirStateSchema),
});

export type ArchiveHead = z.output<typeof headSchema>;
export type DirState = z.output<typeof dirStateSchema>;
type State = z.output<typeof stateSchema>;

function readState(stateFile: string): State {
  let text: string;
  try {
    text = readFileSync(stateFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, archiveDirs: {} };
    throw new TnatError(
      'E_ARCHIVE',
      `the state file ${stateFile} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}): check its permissions (firewall.stateFile)`,
      { cause: error },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TnatError(
      'E_ARCHIVE',
      `the state file ${stateFile} is not valid JSON: restore it from a backup, or move it away and run traceable-nat apply --force to anchor the newest archive again`,
      { cause: error },
    );
  }
  const result = stateSchema.safeParse(parsed);
  if (!result.success) {
    throw new TnatError(
      'E_ARCHIVE',
      `the state file ${stateFile} does not have the expected form: restore it from a backup, or move it away and run traceable-nat apply --force`,
    );
  }
  return result.data;
}

/** What the state file says about one archive directory (nothing: never anchored). */
export function readDirState(stateFile: string, archiveDir: string): DirState {
  return readState(stateFile).archiveDirs[resolve(archiveDir)] ?? {};
}

function writeState(stateFile: string, state: State): void {
  try {
    mkdirSync(dirname(stateFile), { recursive: true, mode: 0o750 });
    const temporary = writeTemporaryBeside(stateFile, JSON.stringify(state, null, 2) + '\n', 0o640);
    renameSync(temporary, stateFile);
    fsyncDirectory(dirname(stateFile));
  } catch (error) {
    throw new TnatError(
      'E_WRITE',
      `the state file ${stateFile} cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'}): make its directory writable for root or change firewall.stateFile`,
      { cause: error },
    );
  }
}

/** Replaces what the state file says about one directory (read, change, write atomically). */
export function updateDirState(
  stateFile: string,
  archiveDir: string,
  change: (current: DirState) => DirState,
): void {
  const state = readState(stateFile);
  const key = resolve(archiveDir);
  state.archiveDirs[key] = change(state.archiveDirs[key] ?? {});
  writeState(stateFile, state);
}

export interface NewestFile {
  readonly name: string;
  readonly sha256: string;
}

/**
 * Why the directory's newest archive is not the anchored head, or undefined when it is (or the
 * directory was never anchored). An archive whose hash is the anchored `pending` one is ours:
 * its apply was interrupted before it could move the head.
 */
export function anchorProblem(state: DirState, newest: NewestFile | undefined): string | undefined {
  const { head, pending } = state;
  if (head === undefined) return undefined;
  if (newest === undefined) {
    return `the state file anchors ${head.name} (sha256 ${head.sha256}), but the archive directory holds no archive at all (deleted?)`;
  }
  if (newest.name === head.name && newest.sha256 === head.sha256) return undefined;
  if (newest.sha256 === pending?.sha256) return undefined;
  if (newest.name === head.name) {
    return `the newest archive ${head.name} was changed after it was written (sha256 ${newest.sha256}, anchored ${head.sha256})`;
  }
  return `the newest archive is ${newest.name} (sha256 ${newest.sha256}), but the state file anchors ${head.name} (sha256 ${head.sha256}): an archive was added, renamed, replaced or deleted by hand`;
}
