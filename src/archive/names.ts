/**
 * Archive file names: `rules.v4.<unix seconds>` as the original vpn-generate-natfw wrote them
 * (the name the seed's manual tracing procedure looks for), and `traceable-nat.nft.<unix seconds>`
 * for the nftables backend; with `.gz` after them when the archive is gzip-compressed (the
 * default: a /16 ruleset is 14.5 MB of text and 1.2 MB compressed), so `zless` and `zcat` open
 * them as they are.
 */
import type { Backend } from './header.js';

/**
 * What one archive file holds: a backend's ruleset, or (`ip6tables`) the rules.v6 that the
 * iptables backend loads beside rules.v4 when nat6 is set. A `rules.v6.<s>` file is not a link
 * of the hash chain by itself: it is the IPv6 half of the activation `rules.v4.<s>` (same
 * seconds), whose header records its SHA-256 (`# ipv6: sha256:...`).
 */
export type ArchiveKind = Backend | 'ip6tables';

const STEMS: Readonly<Record<ArchiveKind, string>> = {
  iptables: 'rules.v4',
  nftables: 'traceable-nat.nft',
  ip6tables: 'rules.v6',
};

const PATTERN = /^(rules\.v4|traceable-nat\.nft)\.(\d{9,11})(\.gz)?$/;

export interface ArchiveName {
  readonly name: string;
  readonly backend: Backend;
  /** Unix seconds at which the ruleset became active. */
  readonly activatedAt: number;
  /** Stored gzip-compressed (`.gz`). */
  readonly compressed?: boolean | undefined;
}

export function parseArchiveName(name: string): ArchiveName | undefined {
  const match = PATTERN.exec(name);
  if (!match?.[1] || !match[2]) return undefined;
  return {
    name,
    backend: match[1] === 'rules.v4' ? 'iptables' : 'nftables',
    activatedAt: Number(match[2]),
    compressed: match[3] !== undefined,
  };
}

export function archiveName(kind: ArchiveKind, activatedAt: number, compressed = false): string {
  return `${STEMS[kind]}.${activatedAt}${compressed ? '.gz' : ''}`;
}

/** The IPv6 half of an iptables activation: `rules.v6.<the same seconds>`, plain or `.gz`. */
export function ipv6SiblingNames(activatedAt: number): readonly string[] {
  return [archiveName('ip6tables', activatedAt, true), archiveName('ip6tables', activatedAt)];
}

/** Archive names in activation order (oldest first); other files are ignored. */
export function sortArchiveNames(names: readonly string[]): ArchiveName[] {
  return names
    .map(parseArchiveName)
    .filter((parsed): parsed is ArchiveName => parsed !== undefined)
    .sort((a, b) => a.activatedAt - b.activatedAt || a.name.localeCompare(b.name));
}

/** The archive active at `unixSeconds`: the newest activated at or before it. */
export function findArchiveAt(
  sorted: readonly ArchiveName[],
  unixSeconds: number,
): ArchiveName | undefined {
  let low = 0;
  let high = sorted.length - 1;
  let found: ArchiveName | undefined;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const candidate = sorted[middle];
    if (candidate && candidate.activatedAt <= unixSeconds) {
      found = candidate;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return found;
}
