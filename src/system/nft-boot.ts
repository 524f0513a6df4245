/**
 * Whether nftables.service loads our rules file: it runs `nft -f` of the distribution's
 * nftables.conf at boot and at every `systemctl restart nftables` (eduVPN's way of applying its
 * firewall), and that file starts with `flush ruleset`. Unless it includes our file after the
 * flush, a boot leaves the clients behind eduVPN's masquerade, and a restart removes our table,
 * until the daemon loads it again: ports that trace cannot name.
 *
 * The include statement as nft(8) reads it: `include "file"`, an absolute path, `./` relative
 * to the working directory (nftables.service's is /), anything else under the include path
 * (/etc, `nft -h`); shell wildcards `*`, `?` and `[...]` match, and matching nothing is no
 * error then. Included files are followed, as nft does.
 */
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

/** nftables.service's file: Debian's, then Fedora's and EL's. */
export const NFT_BOOT_FILES = ['/etc/nftables.conf', '/etc/sysconfig/nftables.conf'] as const;

const INCLUDE_PATH = '/etc';
/** nft itself refuses deeper nesting (its include depth is 16). */
const MAX_DEPTH = 16;

export type BootLoad =
  /** No nftables.conf: nftables.service has nothing to load. */
  | { readonly kind: 'no-boot-file' }
  | {
      readonly kind: 'included';
      readonly bootFile: string;
      readonly by: string;
      /**
       * Named by a wildcard, which may match nothing: a plain include of a file that does not
       * exist stops nft, and the boot loads no firewall at all.
       */
      readonly wildcard: boolean;
    }
  /** Included, but a `flush ruleset` in the boot file comes after it. */
  | { readonly kind: 'flushed-after'; readonly bootFile: string; readonly by: string }
  | { readonly kind: 'not-included'; readonly bootFile: string };

/** Where `rulesFile` stands in the first of `bootFiles` that exists. */
export function nftBootLoad(
  rulesFile: string,
  bootFiles: readonly string[] = NFT_BOOT_FILES,
): BootLoad {
  const bootFile = bootFiles.find((file) => readText(file) !== undefined);
  if (bootFile === undefined) return { kind: 'no-boot-file' };
  const target = realOrResolved(rulesFile);
  // Each statement of the boot file, with the files its includes pull in, in load order.
  let found: { by: string; flushedAfter: boolean; wildcard: boolean } | undefined;
  const walk = (file: string, depth: number): void => {
    const text = readText(file);
    if (text === undefined || depth > MAX_DEPTH) return;
    for (const statement of statements(text)) {
      if (statement.kind === 'flush') {
        // In the boot file or one it includes: the flush empties whatever was loaded before.
        if (found) found.flushedAfter = true;
        continue;
      }
      const wildcard = /[*?[]/.test(statement.path);
      for (const path of expand(statement.path)) {
        // Loaded again after a flush, it stays: the last include is the one that counts.
        if (realOrResolved(path) === target) found = { by: file, flushedAfter: false, wildcard };
        else walk(path, depth + 1);
      }
    }
  };
  walk(bootFile, 0);
  if (found === undefined) return { kind: 'not-included', bootFile };
  return found.flushedAfter
    ? { kind: 'flushed-after', bootFile, by: found.by }
    : { kind: 'included', bootFile, by: found.by, wildcard: found.wildcard };
}

type Statement = { kind: 'include'; path: string } | { kind: 'flush' };

/** The include and `flush ruleset` statements of an nft file, in order; comments skipped. */
function statements(text: string): Statement[] {
  const found: Statement[] = [];
  const pattern = /"(?:[^"\\]|\\.)*"|#[^\n]*|\binclude\s+"([^"]*)"|\bflush\s+ruleset\b/g;
  for (const match of text.matchAll(pattern)) {
    const [whole, path] = match;
    if (path !== undefined) found.push({ kind: 'include', path });
    else if (whole.startsWith('flush')) found.push({ kind: 'flush' });
  }
  return found;
}

/**
 * The files an include names, wildcards expanded component by component. A plain path is
 * named whether it exists or not (nft then stops at it).
 */
function expand(spelt: string): string[] {
  const path = isAbsolute(spelt)
    ? spelt
    : spelt.startsWith('./')
      ? resolve('/', spelt)
      : join(INCLUDE_PATH, spelt);
  let matches = ['/'];
  for (const part of path.split('/').filter((part) => part !== '')) {
    if (!/[*?[]/.test(part)) {
      matches = matches.map((dir) => join(dir, part));
      continue;
    }
    const pattern = globRegExp(part);
    matches = matches.flatMap((dir) => {
      try {
        return readdirSync(dir)
          .filter((name) => pattern.test(name) && !name.startsWith('.'))
          .sort()
          .map((name) => join(dir, name));
      } catch {
        return [];
      }
    });
  }
  return matches;
}

function globRegExp(part: string): RegExp {
  let source = '';
  for (let i = 0; i < part.length; i++) {
    const char = part.charAt(i);
    if (char === '*') source += '[^/]*';
    else if (char === '?') source += '[^/]';
    else if (char === '[') {
      const end = part.indexOf(']', i + 2);
      if (end === -1) source += '\\[';
      else {
        const body = part
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\');
        source += `[${body}]`;
        i = end;
      }
    } else source += char.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function realOrResolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * An include that names `rulesFile` alone and is still a wildcard (its last character in
 * brackets), so that nft takes a missing file as no match instead of stopping the boot's load.
 */
export function includeLineFor(rulesFile: string): string {
  const last = rulesFile.slice(-1);
  return `include "${rulesFile.slice(0, -1)}[${last}]"`;
}

/** One sentence for `check` and the daemon's log. */
export interface BootProblem {
  /** A boot would load no firewall at all (else: our table only comes with the daemon). */
  readonly fails: boolean;
  readonly text: string;
}

/** What nftables.service makes of our rules file at boot and at a restart, when it is not well. */
export function nftBootProblem(
  rulesFile: string,
  bootFiles: readonly string[] = NFT_BOOT_FILES,
): BootProblem | undefined {
  const load = nftBootLoad(rulesFile, bootFiles);
  const untraceable = `the clients leave through eduVPN's masquerade, untraceably, until the daemon loads the table again (at its start, and up to daemon.verifyIntervalMs after)`;
  const include = `${includeLineFor(rulesFile)} (a wildcard: a missing file is then no error)`;
  const warn = (text: string): BootProblem => ({ fails: false, text });
  switch (load.kind) {
    case 'included':
      if (load.wildcard || existsSync(rulesFile)) return undefined;
      return {
        fails: true,
        text: `${load.by} includes ${rulesFile}, which does not exist: nft stops at that include, and a boot or systemctl restart nftables loads no firewall at all: run traceable-nat apply, and include it as ${include}`,
      };
    case 'no-boot-file':
      return warn(
        `there is no ${bootFiles.join(' nor ')}, so nothing loads ${rulesFile} at boot: ${untraceable}; include it from the file nftables.service loads`,
      );
    case 'not-included':
      return warn(
        `${load.bootFile} does not include ${rulesFile}: at boot, and at every systemctl restart nftables (its flush ruleset removes our table), ${untraceable}; add ${include} after its flush ruleset`,
      );
    case 'flushed-after':
      return warn(
        `${load.by} includes ${rulesFile} before a flush ruleset, which removes the table again at boot and at every systemctl restart nftables: move the include after the flush`,
      );
  }
}
