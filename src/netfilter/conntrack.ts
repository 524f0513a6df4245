/**
 * Deleting the conntrack entries of clients whose NAT binding changed (`conntrack -D`). Two
 * fences keep other hosts' connections alive: the prefixes lie inside the changed clients'
 * subnets (conntrack-ranges.ts), and `--src-nat` (conntrack(8): "Filter source NAT
 * connections") limits the deletion to entries that were source-translated, the only ones a
 * changed binding makes wrong; a client's traffic to the server itself is never touched.
 */
import { formatIpv4 } from '../net/ipv4.js';
import { CommandError } from '../errors.js';
import { conntrackPrefixes, maskOf } from './conntrack-ranges.js';
import type { CommandRunner } from './runner.js';

export interface ConntrackResult {
  readonly prefixes: number;
  readonly deleted: number;
}

export async function forgetClients(
  runner: CommandRunner,
  changed: Iterable<number>,
  kept: Iterable<number>,
): Promise<ConntrackResult> {
  const prefixes = conntrackPrefixes(changed, kept);
  const filters = prefixes.map((prefix) => [
    '-f',
    'ipv4',
    '-s',
    formatIpv4(prefix.network),
    '--mask-src',
    maskOf(prefix),
  ]);
  return { prefixes: prefixes.length, deleted: await deleteEach(runner, filters) };
}

/** One `conntrack -D` per filter, one after the other: how many entries they deleted. */
export async function deleteEach(
  runner: CommandRunner,
  filters: readonly (readonly string[])[],
): Promise<number> {
  let deleted = 0;
  for (const filter of filters) deleted += await deleteEntries(runner, filter);
  return deleted;
}

/** `conntrack -D <filter> --src-nat`: how many entries it deleted. */
export async function deleteEntries(
  runner: CommandRunner,
  filter: readonly string[],
): Promise<number> {
  const args = ['-D', ...filter, '--src-nat'];
  const result = await runner.run('conntrack', args, { allowFailure: true });
  // conntrack says how many it deleted on stderr, and exits 1 when that is none.
  const count = /(\d+) flow entries have been deleted/.exec(result.stderr);
  if (result.exitCode !== 0 && !count) {
    throw new CommandError(`conntrack -D failed: ${result.stderr.trim()}`, {
      command: ['conntrack', ...args],
      exitCode: result.exitCode,
      stderr: result.stderr,
    });
  }
  return Number(count?.[1] ?? 0);
}
