/** What `trace` and `lookup --at` read from disk: archive directories, time zone, profiles. */
import { basename, resolve } from 'node:path';
import { readDirState, type DirState } from '../archive/anchor.js';
import { sha256 } from '../archive/header.js';
import {
  findPendingArchives,
  listArchives,
  readArchive,
  readArchiveHeader,
} from '../archive/store.js';
import type { Config } from '../config.js';
import { isTnatError, TnatError } from '../errors.js';
import type { ClientPool } from '../eduvpn/pool.js';
import { localZone } from '../system/local-zone.js';
import { parseIncidentTime, type IncidentTime, type LocalZone } from '../trace/time.js';
import type { ArchiveDir } from '../trace/timeline.js';
import type { OptionValues } from './command.js';
import { discover } from './discovery.js';
import { parseAddress } from './trace-query.js';
import type { CliIo } from './io.js';

/** `--archive-dir` (repeatable) replaces the configured directories. */
export const ARCHIVE_DIR_OPTION = { type: 'string', multiple: true } as const;

/**
 * An archive dated more than this after now is not evidence of anything that happened yet (a
 * clock that was stepped back, a copied file): trace leaves it out, and `check` reports it.
 */
const FUTURE_TOLERANCE_SECONDS = 60;

/** What one archive directory holds, with what vouches for it (see ArchiveDir). */
export function archiveDirOf(dir: string, config: Config, nowMs = Date.now()): ArchiveDir {
  const latest = Math.floor(nowMs / 1000) + FUTURE_TOLERANCE_SECONDS;
  const entries = listArchives(dir).filter((entry) => entry.activatedAt <= latest);
  // The state file anchors firewall.archiveDir only; collected directories have their own.
  const state =
    resolve(dir) === resolve(config.firewall.archiveDir)
      ? readDirStateQuietly(config.firewall.stateFile, dir)
      : {};
  const [pending] = findPendingArchives(dir);
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
    anchor: state.head && { ...state.head, pendingSha256: state.pending?.sha256 },
    pending: pending && {
      entry: { name: basename(pending.path), backend: pending.backend, activatedAt: Infinity },
      text: pending.text,
    },
  };
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

/** A dotted quad from an option, or a usage error naming the option. */
export function addressOption(options: OptionValues, name: string): number | undefined {
  const value = options[name];
  return typeof value === 'string' ? parseAddress(value, `--${name}`) : undefined;
}

/**
 * The profile whose range holds a client in today's eduVPN configuration: a hint only (the
 * archives do not record profiles), and none when the eduVPN files cannot be read here. The
 * files are read on the first call, once.
 */
export function profileFinder(config: Config): (client: number) => string | undefined {
  let pools: readonly ClientPool[] | undefined;
  return (client) => {
    if (pools === undefined) {
      try {
        pools = discover(config).pools;
      } catch (error) {
        if (!isTnatError(error)) throw error;
        pools = [];
      }
    }
    return pools.find((pool) => client >= pool.first && client <= pool.last)?.profileId;
  };
}
