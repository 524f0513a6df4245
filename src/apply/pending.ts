/**
 * Resolving an apply that was interrupted (kill -9, power loss) after its archive was made
 * durable as `<name>.pending` and before it got its final name. The kernel decides: when it
 * holds the pending ruleset, that ruleset did become active at some moment after the apply
 * started, so it is archived now, named after this second; its header keeps when that apply
 * began, and `trace` treats everything between the two as uncertain (both rulesets). When the
 * kernel does not hold it, it never became active and is dropped. A kernel command that the
 * killed applier started may still be running: we wait for it first.
 */
import { basename } from 'node:path';
import { parseArchiveHeader, archiveBody } from '../archive/header.js';
import { updateDirState } from '../archive/anchor.js';
import { bindingsOfText } from '../archive/binding-index.js';
import { writeBindingIndex } from '../archive/index-file.js';
import {
  commitPending,
  discardPending,
  findPending,
  findPendingArchives,
  newestArchive,
  readIpv6Half,
  type FoundPending,
  type StoredArchive,
} from '../archive/store.js';
import { translationsKey } from '../render/fingerprint6.js';
import type { Config } from '../config.js';
import type { CommandRunner } from '../netfilter/runner.js';
import type { Clock } from '../system/clock.js';
import { TnatError } from '../errors.js';
import { isProcessAlive } from '../system/process-alive.js';
import { ourPartOf } from './plan.js';
import { holdsRuleset, kernelCanary, kernelRules6, readKernel, type KernelRead } from './status.js';

export interface PendingResolution {
  readonly pending: string;
  /** archived: the kernel held it; dropped: it never became active. */
  readonly outcome: 'archived' | 'dropped';
  readonly archive: string | undefined;
  readonly applyStarted: string;
}

/**
 * A kernel load runs for a second or two even for a /16, but a loaded machine can stretch
 * that: wait at least this long, whatever the lock timeout is.
 */
const CHILD_WAIT_MIN_MS = 15_000;

/**
 * Waits for the killed applier's kernel command. Deciding while it still runs would read a
 * kernel that may take the pending ruleset a moment later, unarchived: refuse instead.
 */
async function waitForChild(
  pid: number | undefined,
  identity: string | undefined,
  clock: Clock,
  timeoutMs: number,
) {
  if (pid === undefined) return;
  const waitMs = Math.max(timeoutMs, CHILD_WAIT_MIN_MS);
  const until = clock.now() + waitMs;
  while (isProcessAlive(pid, identity) && clock.now() < until) await clock.sleep(50);
  if (isProcessAlive(pid, identity)) {
    throw new TnatError(
      'E_LOCK',
      `the kernel command of an interrupted apply (pid ${pid}) is still running after ${waitMs / 1000} s; nothing was applied: try again once it has ended (ps ${pid})`,
    );
  }
}

export async function resolvePendingArchives(
  config: Config,
  runner: CommandRunner,
  clock: Clock,
): Promise<PendingResolution[]> {
  const { archiveDir, stateFile } = config.firewall;
  const resolutions: PendingResolution[] = [];
  for (const found of findPendingArchives(archiveDir)) {
    await waitForChild(found.childPid, found.childIdentity, clock, config.firewall.lockTimeoutMs);
    const header = parseArchiveHeader(found.text);
    const applyStarted = header?.applyStarted ?? '';
    // Only the backend in use can be asked; a pending archive of the other one is stale.
    const kernel =
      found.backend === config.firewall.backend ? await readKernel(config, runner) : undefined;
    const newest = newestArchive(archiveDir);
    const active =
      (kernel !== undefined && heldAndNew(kernel, found, newest)) ||
      (found.backend === config.firewall.backend &&
        (await ipv6Active(config, runner, found, newest)));
    if (!active) {
      discardPending(archiveDir, 'ip6tables');
      discardPending(archiveDir, found.backend);
      resolutions.push({
        pending: found.path,
        outcome: 'dropped',
        archive: undefined,
        applyStarted,
      });
      continue;
    }
    const activatedAt = Math.max(
      Math.floor(clock.now() / 1000),
      (newest?.entry.activatedAt ?? 0) + 1,
    );
    const half = findPending(archiveDir, 'ip6tables');
    if (half) commitPending(archiveDir, 'ip6tables', half, activatedAt);
    const archive = commitPending(archiveDir, found.backend, found, activatedAt);
    const bindings = bindingsOfText(found.text);
    // As every archive has (best effort: it only speeds up later traces).
    writeBindingIndex(archiveDir, basename(archive.path), archive.sha256, bindings);
    updateDirState(stateFile, archiveDir, () => ({
      head: {
        name: basename(archive.path),
        sha256: archive.sha256,
        activatedAt,
        clients: header?.clients ?? new Set(bindings.assignments().map((a) => a.client)).size,
        clientsByProtocol: clientsByProtocolOf(header?.settings),
      },
    }));
    resolutions.push({
      pending: found.path,
      outcome: 'archived',
      archive: archive.path,
      applyStarted,
    });
  }
  finishIpv6Half(archiveDir);
  return resolutions;
}

/**
 * Whether the kernel holds the pending IPv4 ruleset, and it is not the newest archive's (a
 * forced apply of the active ruleset, say, which needs no second archive). The canary decides
 * when it names either: it is loaded in the same transaction as the rules. Without it (flushed,
 * or set by a version before it) the kernel's rules are compared whole with the pending ones:
 * bindings alone would take a change that kept every binding (another outgoing interface) for
 * no change, and drop a ruleset that was active.
 */
function heldAndNew(
  kernel: KernelRead,
  found: FoundPending,
  newest: StoredArchive | undefined,
): boolean {
  const { backend, text } = found;
  const changed =
    newest?.entry.backend !== backend ||
    ourPartOf(archiveBody(text), backend) !== ourPartOf(archiveBody(newest.text), backend);
  if (!changed) return false;
  const canary = kernelCanary(kernel);
  if (canary !== undefined && canary === found.sha256) return true;
  if (canary !== undefined && canary === newest?.sha256) return false;
  return holdsRuleset(kernel, text);
}

/**
 * An IPv6 half left pending without its rules.v4.pending: the apply committed the rules.v4 half,
 * whose header vouches for this one by its hash, and failed before naming it; it is named at
 * that archive's second. Any other belongs to no activation.
 */
function finishIpv6Half(archiveDir: string): void {
  const half = findPending(archiveDir, 'ip6tables');
  if (!half) return;
  const newest = newestArchive(archiveDir, 'iptables', true);
  const vouched = newest && parseArchiveHeader(newest.header ?? newest.text)?.ipv6?.sha256;
  const named = newest && readIpv6Half(archiveDir, newest.entry);
  if (newest && vouched === half.sha256 && named === undefined) {
    commitPending(archiveDir, 'ip6tables', half, newest.entry.activatedAt);
  } else {
    discardPending(archiveDir, 'ip6tables');
  }
}

/**
 * Whether the kernel holds the pending IPv6 ruleset (and it is not simply the newest one's):
 * the interrupted apply changed IPv6, and that change reached the kernel.
 */
async function ipv6Active(
  config: Config,
  runner: CommandRunner,
  found: FoundPending,
  newest: StoredArchive | undefined,
): Promise<boolean> {
  const { archiveDir, backend } = config.firewall;
  const pendingText =
    backend === 'nftables' ? found.text : findPending(archiveDir, 'ip6tables')?.text;
  if (pendingText === undefined) return false;
  const newestText =
    newest && (backend === 'nftables' ? newest.text : readIpv6Half(archiveDir, newest.entry)?.text);
  const planned = translationsKey(archiveBody(pendingText));
  const kernel = translationsKey((await kernelRules6(config, runner)) ?? '');
  return kernel === planned && planned !== translationsKey(newestText ?? '');
}

/** The per-protocol client counts an archive header's settings carry (empty for old ones). */
export function clientsByProtocolOf(
  settings: Readonly<Record<string, unknown>> | undefined,
): Record<string, number> {
  const value = settings?.clientsByProtocol;
  if (typeof value !== 'object' || value === null) return {};
  return Object.fromEntries(
    Object.entries(value).filter(
      (entry): entry is [string, number] => typeof entry[1] === 'number',
    ),
  );
}
