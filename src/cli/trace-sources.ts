/** What `trace` and `lookup --at` read from disk: archive directories, time zone, profiles. */
import { readDrifts } from '../archive/drift.js';
import { basename, resolve } from 'node:path';
import { readDirState, type DirState } from '../archive/anchor.js';
import { sha256 } from '../archive/header.js';
import { ipv6SiblingNames } from '../archive/names.js';
import {
  findPending,
  findPendingArchives,
  listArchives,
  readArchive,
  readArchiveForTrace,
  readArchiveHeader,
} from '../archive/store.js';
import { writeBindingIndex } from '../archive/index-file.js';
import type { Config } from '../config.js';
import { isTnatError, TnatError } from '../errors.js';
import type { ClientPool } from '../eduvpn/pool.js';
import { localZone } from '../system/local-zone.js';
import { parseIncidentTime, type IncidentTime, type LocalZone } from '../trace/time.js';
import type { Ipv6Source } from '../trace/archive6.js';
import type { ArchiveDir } from '../trace/timeline.js';
import { TwinIndex } from '../mapping/twin6.js';
import type { Address } from '../net/address.js';
import type { OptionValues } from './command.js';
import { discover } from './discovery.js';
import { parseAddress } from './trace-query.js';
import type { CliIo } from './io.js';

/** `--archive-dir` (repeatable) replaces the configured directories. */
export const ARCHIVE_DIR_OPTION = { type: 'string', multiple: true } as const;

/**
 * An archive dated more than this after now was not made at the time its name says (the clock
 * was ahead then, or the file was copied in): trace takes it as a ruleset that may have become
 * active at any moment since the newest archive dated before now (ArchiveDir.misdated), and
 * `check` reports it.
 */
const FUTURE_TOLERANCE_SECONDS = 60;

/** What one archive directory holds, with what vouches for it (see ArchiveDir). */
export function archiveDirOf(dir: string, config: Config, nowMs = Date.now()): ArchiveDir {
  const latest = Math.floor(nowMs / 1000) + FUTURE_TOLERANCE_SECONDS;
  const listed = listArchives(dir);
  const entries = listed.filter((entry) => entry.activatedAt <= latest);
  const misdated = listed.filter((entry) => entry.activatedAt > latest);
  // The state file anchors firewall.archiveDir only; collected directories have their own.
  const state =
    resolve(dir) === resolve(config.firewall.archiveDir)
      ? readDirStateQuietly(config.firewall.stateFile, dir)
      : {};
  const [pending] = findPendingArchives(dir);
  const pending6 = pending?.backend === 'iptables' ? findPending(dir, 'ip6tables') : undefined;
  const digests = new Map<string, string>();
  return {
    dir,
    entries,
    read: (entry) => {
      const archive = readArchive(dir, entry);
      digests.set(entry.name, archive.sha256);
      return archive.text;
    },
    digest: (entry, text) => digests.get(entry.name) ?? sha256(text),
    readHeader: (entry) => readArchiveHeader(dir, entry),
    readForTrace: (entry) => {
      const found = readArchiveForTrace(dir, entry);
      digests.set(entry.name, found.sha256);
      return found;
    },
    // An archive without a matching index (older than indexes, or its index lost) gets one
    // when the directory is writable, so the next trace of that time is quick.
    keepIndex: (entry, bindings) => {
      const digest = digests.get(entry.name);
      if (digest !== undefined) writeBindingIndex(dir, entry.name, digest, bindings);
    },
    anchor: state.head && { ...state.head, pendingSha256: state.pending?.sha256 },
    pending: pending && {
      entry: { name: basename(pending.path), backend: pending.backend, activatedAt: Infinity },
      text: pending.text,
      ipv6: pending6 && { name: basename(pending6.path), ...pending6 },
    },
    readIpv6: (entry) => readIpv6Half(dir, entry.activatedAt),
    misdated,
    drifts: readDrifts(dir),
  };
}

/** `rules.v6.<seconds>.gz` or `rules.v6.<seconds>`, the IPv6 half of an iptables activation. */
function readIpv6Half(dir: string, activatedAt: number): Ipv6Source | undefined {
  for (const name of ipv6SiblingNames(activatedAt)) {
    let archive;
    try {
      archive = readArchive(dir, { name, backend: 'iptables', activatedAt });
    } catch (error) {
      // Missing is an answer (trace says archive-damaged); unreadable stays an error.
      if ((error as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT') continue;
      throw error;
    }
    return { name, text: archive.text, sha256: archive.sha256 };
  }
  return undefined;
}

/** A state file that cannot be read anchors nothing for trace (check reports it). */
function readDirStateQuietly(stateFile: string, dir: string): DirState {
  try {
    return readDirState(stateFile, dir);
  } catch (error) {
    if (isTnatError(error)) return {};
    throw error;
  }
}

/** `--archive-dir DIR...` if given, else firewall.archiveDir and trace.archiveDirs. */
export function archiveDirsFor(config: Config, options: OptionValues): ArchiveDir[] {
  const given = options['archive-dir'];
  const dirs = Array.isArray(given)
    ? given.map(String)
    : [config.firewall.archiveDir, ...config.trace.archiveDirs];
  return [...new Set(dirs)].map((dir) => archiveDirOf(dir, config));
}

export function zoneFor(io: CliIo): LocalZone {
  return localZone(io.env.TZ);
}

export function incidentTimeOf(options: OptionValues, io: CliIo): IncidentTime {
  const at = options.at;
  if (typeof at !== 'string')
    throw new TnatError('E_USAGE', 'give the incident time with --at TIME');
  return parseIncidentTime(at, zoneFor(io));
}

/** An IPv4 or IPv6 address from an option, or a usage error naming the option. */
export function addressOption(options: OptionValues, name: string): Address | undefined {
  const value = options[name];
  return typeof value === 'string' ? parseAddress(value, `--${name}`) : undefined;
}

/** What today's eduVPN configuration says of a client address: a hint only. */
export interface ClientFacts {
  /** The profile whose range holds it today. */
  readonly profile: string | undefined;
  /** An IPv6 client's IPv4 twin (README "IPv6 twins"), from today's pools. */
  readonly twin: number | undefined;
}

/**
 * The profile whose range holds a client in today's eduVPN configuration, and an IPv6 client's
 * IPv4 twin: hints only (the archives record neither), and none when the eduVPN files cannot be
 * read here. The files are read on the first call, once.
 */
export function clientFactsFinder(config: Config): (client: Address) => ClientFacts {
  let pools: readonly ClientPool[] | undefined;
  let twins: TwinIndex | undefined;
  return (client) => {
    if (pools === undefined) {
      try {
        pools = discover(config).pools;
        twins = new TwinIndex(pools);
      } catch (error) {
        if (!isTnatError(error)) throw error;
        pools ??= [];
      }
    }
    if (typeof client === 'bigint') {
      const found = twins?.clientOf(client);
      return { profile: found?.span.pool.profileId, twin: found?.client4 };
    }
    const profile = pools.find((pool) => client >= pool.first && client <= pool.last)?.profileId;
    return { profile, twin: undefined };
  };
}
