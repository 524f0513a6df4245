/**
 * Which archived rulesets may have been active at a moment. An archive's name is the second the
 * kernel finished loading it, and our header says when that apply began; the switch to it
 * happened somewhere in between. Around every switch, a window from the new apply's start to
 * the end of its activation second, widened by a margin on both sides for the reporter's clock
 * (and for the original script, whose firewall restart came after the file was written), holds
 * both rulesets as possible. Only the few archives around the moment are read.
 */
import {
  bindingsOfText,
  type ArchiveBindings,
  type ReadForTrace,
} from '../archive/binding-index.js';
import { FORCED_OVER_MISMATCH, parseArchiveHeader, type ArchiveHeader } from '../archive/header.js';
import { findArchiveAt, parseArchiveName, type ArchiveName } from '../archive/names.js';
import { isTnatError } from '../errors.js';
import { parseIpv4 } from '../net/ipv4.js';
import type { Address } from '../net/address.js';
import type { Netmap6, ReadAssignment } from '../render/read-rules.js';
import { ipv6HalfOf, unreadableHalf, type Ipv6Source } from './archive6.js';
import type { DriftWindow } from '../archive/drift.js';
import type { ClientRange6 } from '../mapping/map6.js';
import { buildPortIndex, type PortIndex } from './port-index.js';

/** Seconds of doubt on each side of a switch; see the module comment. */
export const SWITCH_MARGIN_SECONDS = 5;

/** One directory of archives (one eduVPN node); `read` returns an archive's text. */
export interface ArchiveDir {
  readonly dir: string;
  /** Oldest first, as sortArchiveNames gives them. */
  readonly entries: readonly ArchiveName[];
  readonly read: (entry: ArchiveName) => string;
  /**
   * SHA-256 of an archive's bytes as stored, once `read` gave its text: what the next archive's
   * `previous` line and the state file record (not the text's hash when it is compressed).
   */
  readonly digest: (entry: ArchiveName, text: string) => string;
  /** The start of an archive, enough for its header (the successor's `previous` line). */
  readonly readHeader?: ((entry: ArchiveName) => string) | undefined;
  /**
   * Reads an archive through its binding index when the index matches the archive's bytes
   * (src/archive/binding-index.ts), else its text; in place of `read` when given.
   */
  readonly readForTrace?: ((entry: ArchiveName) => ReadForTrace) | undefined;
  /** Keeps the bindings parsed from an archive's text as its index, where the disk allows. */
  readonly keepIndex?: ((entry: ArchiveName, bindings: ArchiveBindings) => void) | undefined;
  /** The anchored newest archive of this directory (firewall.stateFile), when known. */
  readonly anchor?:
    | {
        readonly name: string;
        readonly sha256: string;
        readonly pendingSha256?: string | undefined;
      }
    | undefined;
  /**
   * The archive of an apply that was interrupted (`<name>.pending`) and not yet resolved: its
   * ruleset may have become active at any moment since that apply began.
   */
  readonly pending?:
    | {
        readonly entry: ArchiveName;
        readonly text: string;
        /** Its IPv6 half (`rules.v6.pending`), when the interrupted apply wrote one. */
        readonly ipv6?: Ipv6Source | undefined;
      }
    | undefined;
  /**
   * Archives dated later than now by their names, left out of `entries`: the clock was ahead
   * when they were made (or they were copied in), so their names do not say when they became
   * active; each may have been active at any moment since the newest archive of `entries`.
   */
  readonly misdated?: readonly ArchiveName[] | undefined;
  /** When the kernel did not hold the archived ruleset (src/archive/drift.ts). */
  readonly drifts?: readonly DriftWindow[] | undefined;
  /** The IPv6 half `rules.v6.<s>[.gz]` of iptables archive `entry`; undefined when missing. */
  readonly readIpv6?: ((entry: ArchiveName) => Ipv6Source | undefined) | undefined;
  /**
   * Parses entry `index`, in place of `loadArchive`: a batch of traces passes one that keeps
   * the archives it parsed last (src/trace/batch-archives.ts), so none is parsed twice.
   */
  readonly load?: (index: number) => LoadedArchive | undefined;
}

export interface LoadedArchive<A extends Address = number> {
  readonly dir: string;
  readonly entry: ArchiveName;
  /** Written by traceable-nat (with a header); false for the original script's archives. */
  readonly ours: boolean;
  /** Unix seconds the apply began (our header), else the activation second. */
  readonly applyStartedAt: number;
  /** When the next archive of the directory became active; undefined for the newest. */
  readonly nextActivatedAt: number | undefined;
  /** The public addresses it uses or was configured with, ascending. */
  readonly publicAddresses: readonly A[];
  /** Every binding (made on first call when the archive was read from its index). */
  readonly assignments: () => readonly ReadAssignment<A>[];
  /** IPv6 prefix mode: client ranges mapped into public prefixes (no per-client rules). */
  readonly netmaps?: readonly Netmap6[] | undefined;
  /** Which addresses of those ranges were clients', when the header says (see netmapClient). */
  readonly clientRanges?: readonly ClientRange6[] | undefined;
  /**
   * Seconds the wall clock was stepped between the previous archive's apply and this one's, by
   * the boot clock both recorded (see clockStepBetween); undefined when none was seen. The
   * switch to this archive may lie that much before or after its name says.
   */
  readonly clockStep?: number | undefined;
  /** Why this archive cannot be trusted as it is (edited or cut after it was written). */
  readonly damaged: string | undefined;
  /**
   * Why a ruleset that followed this one may be missing from the directory (see missingAfter):
   * after this one's activation, rulesets that are not known may have been active.
   */
  readonly missingAfter?: string | undefined;
  /** An interrupted apply's ruleset, which may or may not have become active. */
  readonly pending: boolean;
  /** Dated later than now (see ArchiveDir.misdated): active, if at all, since `applyStartedAt`. */
  readonly misdated?: boolean | undefined;
  /**
   * The IPv6 side of an activation (src/trace/archive6.ts): `not-ours` when eduVPN's own
   * masquerade translated IPv6 then, `unreadable` when its rules are missing.
   */
  readonly ipv6State?: 'ours' | 'not-ours' | 'unreadable' | undefined;
  /** The bindings whose block holds a port, by binary search (built on first use). */
  holding?(port: number, address: A | undefined): ReadAssignment<A>[];
  /** The IPv6 half of the same activation, read on first use. */
  ipv6?(): LoadedArchive<bigint>;
}

export interface ActiveAround<A extends Address = number> {
  readonly dir: string;
  /** Oldest first; more than one within a switch window. */
  readonly archives: readonly LoadedArchive<A>[];
  /** The moment may lie before the directory's first archive became active. */
  readonly mayPredateFirst: boolean;
  /** Activation of the directory's first archive; undefined when it has none. */
  readonly firstActivatedAt: number | undefined;
  /**
   * The archive the directory's first one names as its predecessor (its `previous` line), or
   * the one the state file anchors when the directory holds none: rulesets were archived before
   * (or instead of) those present, and their files are gone. Read only when the moment may
   * predate the first archive.
   */
  readonly missingBefore?:
    { readonly missing: string; readonly first: string | undefined } | undefined;
  /** When the directory's kernel did not hold its archived ruleset (ArchiveDir.drifts). */
  readonly drifts?: readonly DriftWindow[] | undefined;
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

/**
 * Why an archive's text is not what was archived: the next archive recorded its SHA-256, the
 * state file anchors the newest, and a ruleset that stops before its end was cut.
 */
function damageOf(
  dir: ArchiveDir,
  index: number,
  bindings: ArchiveBindings,
  digestOf: () => string,
  nextHeader: ArchiveHeader | undefined,
): string | undefined {
  const entry = dir.entries[index];
  if (!entry) return undefined;
  const next = dir.entries[index + 1];
  const digest = digestOf();
  if (next !== undefined) {
    const recorded = nextHeader?.previous;
    if (recorded?.name === entry.name && recorded.sha256 !== digest) {
      return `${entry.name} is not what was archived: ${next.name} recorded its SHA-256 as ${recorded.sha256}, the file now has ${digest} (edited or cut since)`;
    }
  } else if (
    dir.anchor?.name === entry.name &&
    dir.anchor.sha256 !== digest &&
    dir.anchor.pendingSha256 !== digest
  ) {
    return `${entry.name} is not what was archived: the state file anchors it with SHA-256 ${dir.anchor.sha256}, the file now has ${digest} (edited or cut since)`;
  }
  if (bindings.header !== '' && !bindings.complete) {
    return `${entry.name} stops before the end of its ruleset (cut by a full disk or a copy?)`;
  }
  return undefined;
}

/**
 * NTP slews the wall clock and the boot clock alike, so between two applies of one boot they
 * advance alike, but for steps; a difference above this is one.
 */
const CLOCK_STEP_TOLERANCE = 2;

/**
 * How far the wall clock was stepped between the applies of `before` and `after` (seconds, its
 * size), from the boot clock each header recorded with its start; undefined when not seen (no
 * record, another boot, or within the tolerance).
 */
function clockStepBetween(before: ArchiveHeader, after: ArchiveHeader): number | undefined {
  const a = before.clock;
  const b = after.clock;
  if (a === undefined || b?.boot !== a.boot) return undefined;
  const wall = (Date.parse(after.applyStarted) - Date.parse(before.applyStarted)) / 1000;
  const step = Math.abs(wall - (b.seconds - a.seconds));
  return Number.isFinite(step) && step > CLOCK_STEP_TOLERANCE ? Math.ceil(step) : undefined;
}

/** The clock step before entry `index` (see LoadedArchive.clockStep); `header` is its own. */
function clockStepOf(dir: ArchiveDir, index: number, header: string): number | undefined {
  const previous = dir.entries[index - 1];
  if (previous === undefined) return undefined;
  const before = headerOf(dir, previous);
  const after = parseArchiveHeader(header);
  return before && after && clockStepBetween(before, after);
}

/** An archive's header; undefined when it has none (the original script's) or cannot be read. */
function headerOf(dir: ArchiveDir, entry: ArchiveName): ArchiveHeader | undefined {
  try {
    return parseArchiveHeader((dir.readHeader ?? dir.read)(entry));
  } catch {
    // Unreadable: that archive is reported damaged when it is loaded itself.
    return undefined;
  }
}

/**
 * Why a ruleset that followed entry `index` may be missing from the directory (`header`: the
 * next archive's): the next archive names another predecessor, or was applied with --force over an anchor that named
 * another newest archive (a deleted one, say), or (for the newest) the state file anchors an
 * archive not there and not older. Archives of another backend share the directory and chain.
 */
function missingAfter(
  dir: ArchiveDir,
  index: number,
  header: ArchiveHeader | undefined,
): string | undefined {
  const entry = dir.entries[index];
  if (!entry) return undefined;
  const next = dir.entries[index + 1];
  const named = next === undefined ? dir.anchor?.name : header?.previous?.name;
  const missing = named === undefined ? undefined : parseArchiveName(named);
  const gone =
    named !== undefined &&
    named !== entry.name &&
    missing !== undefined &&
    missing.activatedAt >= entry.activatedAt &&
    !(next === undefined && isPresent(dir, named));
  if (gone) return `${named}, a ruleset archived after ${entry.name}, is missing from ${dir.dir}`;
  if (next && header?.reason.startsWith(FORCED_OVER_MISMATCH)) {
    const mismatch = header.reason.slice(FORCED_OVER_MISMATCH.length);
    return `${next.name} was applied with --force over an anchor mismatch (${mismatch}), so rulesets archived after ${entry.name} may be missing from ${dir.dir}`;
  }
  return undefined;
}

/** Whether the directory holds archive `name`, dated or not (see ArchiveDir.misdated). */
function isPresent(dir: ArchiveDir, name: string): boolean {
  const named = (entry: ArchiveName) => entry.name === name;
  return dir.entries.some(named) || (dir.misdated ?? []).some(named);
}

function summarizeArchive(
  dir: ArchiveDir,
  entry: ArchiveName,
  bindings: ArchiveBindings,
  nextActivatedAt: number | undefined,
  clockStep?: number,
): Omit<LoadedArchive, 'damaged' | 'pending' | 'ipv6'> {
  const header = parseArchiveHeader(bindings.header);
  let index: PortIndex | undefined;
  const addresses = new Set(bindings.addresses);
  for (const address of configuredAddresses(header?.settings ?? {})) addresses.add(address);
  return {
    dir: dir.dir,
    entry,
    ours: header !== undefined,
    // A stepped clock may have named it up to the step late: it may have begun that early.
    applyStartedAt: startOf(header?.applyStarted, entry.activatedAt) - (clockStep ?? 0),
    clockStep,
    nextActivatedAt,
    publicAddresses: [...addresses].sort((a, b) => a - b),
    assignments: bindings.assignments,
    holding:
      bindings.holding ??
      ((port, address) =>
        (index ??= buildPortIndex(bindings.assignments())).holding(port, address)),
  };
}

/** The archive with its IPv6 half, read and checked on first use (one trace in many needs it). */
function withIpv6(
  archive: Omit<LoadedArchive, 'ipv6'>,
  header: string,
  text: () => string,
  source: () => Ipv6Source | undefined,
): LoadedArchive {
  let half: LoadedArchive<bigint> | undefined;
  return { ...archive, ipv6: () => (half ??= ipv6HalfOf(archive, header, text, source)) };
}

/** An archive's bindings, from its index when one matches, and its text, read when needed. */
function readBindings(
  dir: ArchiveDir,
  entry: ArchiveName,
): { bindings: ArchiveBindings; text: () => string; digest: () => string } {
  const found = dir.readForTrace?.(entry);
  if (found?.bindings) {
    let text: string | undefined;
    return {
      bindings: found.bindings,
      text: () => (text ??= dir.read(entry)),
      digest: () => found.sha256,
    };
  }
  const text = found?.text ?? dir.read(entry);
  const bindings = bindingsOfText(text);
  dir.keepIndex?.(entry, bindings);
  return {
    bindings,
    text: () => text,
    digest: () => found?.sha256 ?? dir.digest(entry, text),
  };
}

export function loadArchive(dir: ArchiveDir, index: number): LoadedArchive | undefined {
  const entry = dir.entries[index];
  if (!entry) return undefined;
  const next = dir.entries[index + 1];
  // Read once: it vouches for this archive's hash and names what came after it.
  const nextHeader = next && headerOf(dir, next);
  const read = readOrDamage(dir, entry);
  // An archive that cannot be read has unknown bindings: a candidate of no client, whose doubt
  // makes every answer around it ambiguous (its header, when its start can be read, still
  // gives its addresses and when its apply began).
  const bindings = read.damaged === undefined ? read.bindings : bindingsOfText(read.header);
  const archive = {
    ...summarizeArchive(
      dir,
      entry,
      bindings,
      next?.activatedAt,
      clockStepOf(dir, index, bindings.header),
    ),
    damaged: read.damaged ?? damageOf(dir, index, bindings, read.digest, nextHeader),
    missingAfter: missingAfter(dir, index, nextHeader),
    pending: false,
  };
  if (read.damaged !== undefined) return { ...archive, ipv6: () => unreadableHalf(archive) };
  return withIpv6(archive, bindings.header, read.text, () => dir.readIpv6?.(entry));
}

/**
 * readBindings, or why the archive cannot be read (a compressed file cut short, say) and as
 * much of its header as its first bytes give.
 */
function readOrDamage(
  dir: ArchiveDir,
  entry: ArchiveName,
):
  | (ReturnType<typeof readBindings> & { readonly damaged?: undefined })
  | { readonly damaged: string; readonly header: string } {
  try {
    return readBindings(dir, entry);
  } catch (error) {
    if (!isTnatError(error)) throw error;
    let header = '';
    try {
      header = dir.readHeader?.(entry) ?? '';
    } catch {
      // Not even its start: no header either.
    }
    return { damaged: error.message, header };
  }
}

/** The pending archive as a candidate from its apply's start on (see ArchiveDir.pending). */
function loadPending(dir: ArchiveDir): LoadedArchive | undefined {
  if (dir.pending === undefined) return undefined;
  const { entry, text, ipv6 } = dir.pending;
  const bindings = bindingsOfText(text);
  const summary = summarizeArchive(dir, entry, bindings, undefined);
  const archive = {
    ...summary,
    entry: { ...entry, activatedAt: summary.applyStartedAt },
    damaged: undefined,
    pending: true,
  };
  return withIpv6(
    archive,
    bindings.header,
    () => text,
    () => ipv6,
  );
}

/**
 * An archive dated in the future (see ArchiveDir.misdated) as a candidate from `since`, the
 * newest dated archive's activation, on. Its chain is not checked here: `check` reports it.
 */
function loadMisdated(dir: ArchiveDir, entry: ArchiveName, since: number): LoadedArchive {
  const { bindings, text } = readBindings(dir, entry);
  const archive = {
    ...summarizeArchive(dir, entry, bindings, undefined),
    applyStartedAt: since,
    damaged: undefined,
    pending: false,
    misdated: true,
  };
  return withIpv6(archive, bindings.header, text, () => dir.readIpv6?.(entry));
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
  const loaded = new Map<number, LoadedArchive | undefined>();
  const load = (index: number) => {
    if (!loaded.has(index)) loaded.set(index, dir.load ? dir.load(index) : loadArchive(dir, index));
    return loaded.get(index);
  };
  // The newest archive surely loaded before `at` replaced every older one for good, unless the
  // clock was stepped before its apply: then the one before may have lasted the step longer.
  const surelyLoaded = findArchiveAt(entries, at - 1 - margin);
  let from = surelyLoaded ? entries.indexOf(surelyLoaded) : 0;
  for (let step = load(from)?.clockStep; from > 0 && step !== undefined;) {
    const name = entries[from]?.activatedAt ?? 0;
    if (at >= name + 1 + margin + step) break;
    from--;
    step = load(from)?.clockStep;
  }
  const archives: LoadedArchive[] = [];
  for (let index = from; index < entries.length; index++) {
    const archive = load(index);
    if (!archive || archive.applyStartedAt - margin > at) break;
    archives.push(archive);
  }
  const pending = loadPending(dir);
  if (pending && pending.applyStartedAt - margin <= at) archives.push(pending);
  // With no dated archive at all, since the beginning (0: the epoch, a finite moment).
  const since = entries.at(-1)?.activatedAt ?? 0;
  if (since - margin <= at) {
    for (const entry of dir.misdated ?? []) archives.push(loadMisdated(dir, entry, since));
  }
  const mayPredateFirst = first === undefined || at < first.activatedAt + 1 + margin;
  const missing = !mayPredateFirst
    ? undefined
    : first === undefined
      ? dir.anchor && !isPresent(dir, dir.anchor.name)
        ? dir.anchor.name
        : undefined
      : headerOf(dir, first)?.previous?.name;
  return {
    dir: dir.dir,
    archives,
    mayPredateFirst,
    firstActivatedAt: first?.activatedAt,
    missingBefore: missing === undefined ? undefined : { missing, first: first?.name },
    drifts: dir.drifts,
  };
}
