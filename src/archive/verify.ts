/**
 * Verifies the hash chain of one archive directory: each of our archives names the file before
 * it and that file's SHA-256, so a deleted archive shows as a gap and an edited one as a hash
 * mismatch. The original script's archives have no header: they are links of the chain (our
 * next archive vouches for them) but vouch for nothing themselves. The newest archive is
 * vouched for by nobody until the next apply.
 */
import { parseArchiveHeader, sha256 } from './header.js';
import { sortArchiveNames } from './names.js';

export interface ArchiveFile {
  readonly name: string;
  readonly text: string;
  /** SHA-256 of the file's bytes (differs from the text's for a compressed archive). */
  readonly sha256?: string | undefined;
  /** SHA-256 of its IPv6 half `rules.v6.<s>` as stored; undefined when there is none. */
  readonly ipv6Sha256?: string | undefined;
}

export type ChainProblemKind = 'gap' | 'tampered' | 'unchained';

export interface ChainProblem {
  readonly kind: ChainProblemKind;
  /** The archive whose `previous` line found the problem. */
  readonly file: string;
  readonly message: string;
}

export interface ChainReport {
  /** Archive files in the directory (other files are ignored). */
  readonly archives: number;
  /** Of those, the ones with our header. */
  readonly ours: number;
  readonly problems: readonly ChainProblem[];
}

/** The IPv6 half an iptables activation's header vouches for: missing or changed since. */
function halfProblem(
  name: string,
  recorded: string | undefined,
  actual: string | undefined,
): ChainProblem | undefined {
  if (recorded === undefined || recorded === actual) return undefined;
  const half = name.replace(/^rules\.v4\./, 'rules.v6.').replace(/\.gz$/, '');
  return actual === undefined
    ? { kind: 'gap', file: name, message: `${half} (the IPv6 half of ${name}) is missing` }
    : {
        kind: 'tampered',
        file: name,
        message: `${half} (the IPv6 half of ${name}) was changed after it was written (sha256 ${actual}, recorded ${recorded})`,
      };
}

export function verifyArchiveChain(files: readonly ArchiveFile[]): ChainReport {
  const textOf = new Map(files.map((file) => [file.name, file.text]));
  const halfOf = new Map(files.map((file) => [file.name, file.ipv6Sha256]));
  const digestOf = new Map(files.map((file) => [file.name, file.sha256 ?? sha256(file.text)]));
  const sorted = sortArchiveNames(files.map((file) => file.name));
  const problems: ChainProblem[] = [];
  let ours = 0;
  sorted.forEach(({ name }, index) => {
    const header = parseArchiveHeader(textOf.get(name) ?? '');
    if (!header) return;
    ours++;
    const half = halfProblem(name, header.ipv6?.sha256, halfOf.get(name));
    if (half) problems.push(half);
    const before = sorted[index - 1]?.name;
    const named = header.previous;
    if (!named) {
      if (before !== undefined) {
        problems.push({
          kind: 'unchained',
          file: name,
          message: `${name} says it is the first archive, but ${before} comes before it (added or renamed later?)`,
        });
      }
      return;
    }
    const namedText = textOf.get(named.name);
    if (namedText === undefined) {
      problems.push({
        kind: 'gap',
        file: name,
        message: `${name} follows ${named.name}, which is missing (deleted or moved)`,
      });
      return;
    }
    if (named.name !== before) {
      problems.push({
        kind: 'unchained',
        file: name,
        message: `${name} follows ${named.name}, but ${before ?? 'nothing'} comes right before it (added or renamed later?)`,
      });
    }
    const actual = digestOf.get(named.name) ?? sha256(namedText);
    if (actual !== named.sha256) {
      problems.push({
        kind: 'tampered',
        file: name,
        message: `${named.name} was changed after ${name} was written (sha256 ${actual}, recorded ${named.sha256})`,
      });
    }
  });
  return { archives: sorted.length, ours, problems };
}
