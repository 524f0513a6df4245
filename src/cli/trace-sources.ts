/** What `trace` and `lookup --at` read from disk: archive directories, time zone, profiles. */
import { listArchives, readArchive } from '../archive/store.js';
import type { Config } from '../config.js';
import { isTnatError, TnatError } from '../errors.js';
import { parseIpv4 } from '../net/ipv4.js';
import { localZone } from '../system/local-zone.js';
import { parseIncidentTime, type IncidentTime, type LocalZone } from '../trace/time.js';
import type { ArchiveDir } from '../trace/timeline.js';
import type { OptionValues } from './command.js';
import { discover } from './discovery.js';
import type { CliIo } from './io.js';

/** `--archive-dir` (repeatable) replaces the configured directories. */
export const ARCHIVE_DIR_OPTION = { type: 'string', multiple: true } as const;

/** `--archive-dir DIR...` if given, else firewall.archiveDir and trace.archiveDirs. */
export function archiveDirsFor(config: Config, options: OptionValues): ArchiveDir[] {
  const given = options['archive-dir'];
  const dirs = Array.isArray(given)
    ? given.map(String)
    : [config.firewall.archiveDir, ...config.trace.archiveDirs];
  return [...new Set(dirs)].map((dir) => ({
    dir,
    entries: listArchives(dir),
    read: (entry) => readArchive(dir, entry).text,
  }));
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
  if (typeof value !== 'string') return undefined;
  const address = parseIpv4(value);
  if (address === undefined)
    throw new TnatError('E_USAGE', `--${name} "${value}" is not an IPv4 address`);
  return address;
}

/**
 * The profile whose range holds each client in today's eduVPN configuration: a hint only (the
 * archives do not record profiles), and nothing when the eduVPN files cannot be read here.
 */
export function profilesToday(config: Config, clients: readonly number[]): Map<number, string> {
  const found = new Map<number, string>();
  if (clients.length === 0) return found;
  let pools;
  try {
    pools = discover(config).pools;
  } catch (error) {
    if (isTnatError(error)) return found;
    throw error;
  }
  for (const client of clients) {
    const pool = pools.find((candidate) => client >= candidate.first && client <= candidate.last);
    if (pool) found.set(client, pool.profileId);
  }
  return found;
}
