/**
 * Which archived rulesets may have been active at a moment. An archive's name is the second the
 * kernel finished loading it, and our header says when that apply began; the switch to it
 * happened somewhere in between. Around every switch, a window from the new apply's start to
 * the end of its activation second, widened by a margin on both sides for the reporter's clock
 * (and for the original script, whose firewall restart came after the file was written), holds
 * both rulesets as possible. Only the few archives around the moment are read.
 */
import { parseArchiveHeader, archiveBody } from '../archive/header.js';
import { findArchiveAt, type ArchiveName } from '../archive/names.js';
import { parseIpv4 } from '../net/ipv4.js';
import { readAssignments, type ReadAssignment } from '../render/read-rules.js';

/** Seconds of doubt on each side of a switch; see the module comment. */
export const SWITCH_MARGIN_SECONDS = 5;

/** One directory of archives (one eduVPN node); `read` returns an archive's text. */
export interface ArchiveDir {
  readonly dir: string;
  /** Oldest first, as sortArchiveNames gives them. */
  readonly entries: readonly ArchiveName[];
  readonly read: (entry: ArchiveName) => string;
  /**
   * Parses entry `index`, in place of `loadArchive`: a batch of traces passes one that keeps
   * the archives it parsed last (src/trace/batch-archives.ts), so none is parsed twice.
   */
  readonly load?: (index: number) => LoadedArchive | undefined;
}

export interface LoadedArchive {
  readonly dir: string;
  readonly entry: ArchiveName;
  /** Written by traceable-nat (with a header); false for the original script's archives. */
  readonly ours: boolean;
  /** Unix seconds the apply began (our header), else the activation second. */
  readonly applyStartedAt: number;
  /** When the next archive of the directory became active; undefined for the newest. */
  readonly nextActivatedAt: number | undefined;
  /** The public addresses it uses or was configured with, ascending. */
  readonly publicAddresses: readonly number[];
  readonly assignments: readonly ReadAssignment[];
}

export interface ActiveAround {
  readonly dir: string;
  /** Oldest first; more than one within a switch window. */
  readonly archives: readonly LoadedArchive[];
  /** The moment may lie before the directory's first archive became active. */
  readonly mayPredateFirst: boolean;
  /** Activation of the directory's first archive; undefined when it has none. */
  readonly firstActivatedAt: number | undefined;
}

function startOf(applyStarted: string | undefined, activatedAt: number): number {
  const started = Math.floor(Date.parse(applyStarted ?? '') / 1000);
  return Number.isNaN(started) ? activatedAt : Math.min(started, activatedAt);
}

function configuredAddresses(settings: Readonly<Record<string, unknown>>): number[] {
  const list = settings.publicAddresses;
  if (!Array.isArray(list)) return [];
  return list
    .map((text) => (typeof text === 'string' ? parseIpv4(text) : undefined))
    .filter((address): address is number => address !== undefined);
}

export function loadArchive(dir: ArchiveDir, index: number): LoadedArchive | undefined {
  const entry = dir.entries[index];
  if (!entry) return undefined;
  const text = dir.read(entry);
  const header = parseArchiveHeader(text);
  const assignments = readAssignments(archiveBody(text)).assignments;
  const addresses = new Set(assignments.map((assignment) => assignment.publicAddress));
  for (const address of configuredAddresses(header?.settings ?? {})) addresses.add(address);
  return {
    dir: dir.dir,
    entry,
    ours: header !== undefined,
    applyStartedAt: startOf(header?.applyStarted, entry.activatedAt),
    nextActivatedAt: dir.entries[index + 1]?.activatedAt,
    publicAddresses: [...addresses].sort((a, b) => a - b),
    assignments,
  };
}

/**
 * The archives of one directory that may have been active at `at`: archive j may have been
 * when its apply may have begun by then (start - margin <= at) and the next one may not yet
 * have finished loading (at < next activation + 1 + margin).
 */
export function activeAround(
  dir: ArchiveDir,
  at: number,
  margin = SWITCH_MARGIN_SECONDS,
): ActiveAround {
  const { entries } = dir;
  const first = entries[0];
  // The newest archive surely loaded before `at` replaced every older one for good.
  const surelyLoaded = findArchiveAt(entries, at - 1 - margin);
  const from = surelyLoaded ? entries.indexOf(surelyLoaded) : 0;
  const archives: LoadedArchive[] = [];
  for (let index = from; index < entries.length; index++) {
    const archive = dir.load ? dir.load(index) : loadArchive(dir, index);
    if (!archive || archive.applyStartedAt - margin > at) break;
    archives.push(archive);
  }
  return {
    dir: dir.dir,
    archives,
    mayPredateFirst: first === undefined || at < first.activatedAt + 1 + margin,
    firstActivatedAt: first?.activatedAt,
  };
}
