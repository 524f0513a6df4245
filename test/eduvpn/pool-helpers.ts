/** Shared by the eduVPN source tests: fixture access, a one-line view of a pool, error capture. */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, type Config } from '../../src/config.js';
import type { SourceReader } from '../../src/eduvpn/discover.js';
import type { ClientPool } from '../../src/eduvpn/pool.js';
import { TnatError } from '../../src/errors.js';
import { formatCidr4, formatIpv4 } from '../../src/net/ipv4.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/eduvpn/', import.meta.url));
export const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));

/** Matches every spelling of the marker planted in the fixtures' keys and certificates. */
export const SECRET_MARKER = /FAKE-?SECRET-?DO-?NOT-?LOG/i;

export function fixture(path: string): string {
  return readFileSync(posix.join(FIXTURES, path), 'utf8');
}

/**
 * `profile protocol[/process] file:line subnet first-last subnet6`, with `file` relative to
 * `base`: one string per pool keeps the expected tables exact and readable.
 */
export function poolRow(pool: ClientPool, base = FIXTURES): string {
  const process = pool.origin.process === undefined ? '' : `/${pool.origin.process}`;
  const file = posix.relative(base, pool.origin.file);
  return (
    `${pool.profileId} ${pool.protocol}${process} ${file}:${pool.origin.line ?? '-'} ` +
    `${formatCidr4(pool.subnet4)} ${formatIpv4(pool.first)}-${formatIpv4(pool.last)} ${pool.subnet6 ?? '-'}`
  );
}

/** The 1-based line of the `occurrence`-th line holding `needle`. */
export function lineOf(text: string, needle: string, occurrence = 1): number {
  const lines = text
    .split('\n')
    .flatMap((line, index) => (line.includes(needle) ? [index + 1] : []));
  const line = lines[occurrence - 1];
  if (line === undefined)
    throw new Error(`test setup: '${needle}' is not in the text ${occurrence} times`);
  return line;
}

/** The TnatError `run` throws; fails the test when it throws nothing or something else. */
export function sourceErrorOf(run: () => unknown): TnatError {
  try {
    run();
  } catch (error) {
    if (error instanceof TnatError) {
      expect(error.code).toBe('E_SOURCE');
      return error;
    }
    throw error;
  }
  throw new Error('expected a TnatError, but nothing was thrown');
}

/**
 * An in-memory file tree: `files` maps absolute paths to their text; a key ending in `/` only
 * makes an (empty) directory exist.
 */
export function memoryReader(files: Readonly<Record<string, string>>): SourceReader & {
  readonly reads: string[];
} {
  const reads: string[] = [];
  return {
    reads,
    readText(path) {
      const text = files[path];
      if (text !== undefined) reads.push(path);
      return text;
    },
    listDir(path) {
      const prefix = path.endsWith('/') ? path : `${path}/`;
      const keys = Object.keys(files).filter((key) => key.startsWith(prefix));
      if (keys.length === 0) return undefined;
      const names = keys.map((key) => key.slice(prefix.length).split('/')[0] ?? '');
      // Unsorted on purpose, like readdir: the code under test must sort.
      return [...new Set(names.filter((name) => name !== ''))].reverse();
    },
  };
}

/** Every file under `dir`, keyed by `mountAt` + its relative path (for memoryReader). */
export function loadTree(dir: string, mountAt: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    const path = posix.join(dir, name);
    if (statSync(path).isDirectory())
      Object.assign(files, loadTree(path, posix.join(mountAt, name)));
    else files[posix.join(mountAt, name)] = readFileSync(path, 'utf8');
  }
  return files;
}

/** The eduvpn settings with their defaults (the /etc paths of a real server). */
export function eduvpnSettings(overrides: Partial<Config['eduvpn']> = {}): Config['eduvpn'] {
  const nat = { publicAddresses: ['192.0.2.1'], outInterface: 'eth0' };
  return configSchema.parse({ eduvpn: overrides, nat }).eduvpn;
}
