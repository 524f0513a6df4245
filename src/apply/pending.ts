/**
 * Resolving an apply that was interrupted (kill -9, power loss) after its archive was made
 * durable as `<name>.pending` and before it got its final name. The kernel decides: when it
 * holds the pending ruleset, that ruleset did become active at some moment after the apply
 * started, so it is archived now, named after this second; its header keeps when that apply
 * began, and `trace` treats everything between the two as uncertain (both rulesets). When the
 * kernel does not hold it, it never became active and is dropped. A kernel command that the
 * killed applier started may still be running: we wait for it first.
 */
import { parseArchiveHeader, archiveBody } from '../archive/header.js';
import { updateDirState } from '../archive/anchor.js';
import {
  commitPending,
  discardPending,
  findPendingArchives,
  newestArchive,
} from '../archive/store.js';
import type { Config } from '../config.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { readAssignments } from '../render/read-rules.js';
import type { Clock } from '../system/clock.js';
import { isProcessAlive } from '../system/process-alive.js';
import { kernelRules, summarize } from './status.js';

export interface PendingResolution {
  readonly pending: string;
  /** archived: the kernel held it; dropped: it never became active. */
  readonly outcome: 'archived' | 'dropped';
  readonly archive: string | undefined;
  readonly applyStarted: string;
}

async function waitForChild(pid: number | undefined, clock: Clock, timeoutMs: number) {
  if (pid === undefined) return;
  const until = clock.now() + timeoutMs;
  while (isProcessAlive(pid) && clock.now() < until) await clock.sleep(50);
}

export async function resolvePendingArchives(
  config: Config,
  runner: CommandRunner,
  clock: Clock,
): Promise<PendingResolution[]> {
  const { archiveDir, stateFile } = config.firewall;
  const resolutions: PendingResolution[] = [];
  for (const found of findPendingArchives(archiveDir)) {
    await waitForChild(found.childPid, clock, config.firewall.lockTimeoutMs);
    const header = parseArchiveHeader(found.text);
    const applyStarted = header?.applyStarted ?? '';
    const planned = summarize(found.path, readAssignments(archiveBody(found.text)));
    // Only the backend in use can be asked; a pending archive of the other one is stale.
    const kernel =
      found.backend === config.firewall.backend
        ? summarize('kernel', await kernelRules(config, runner))
        : undefined;
    const newest = newestArchive(archiveDir);
    const newestBindings = newest
      ? summarize(newest.path, readAssignments(archiveBody(newest.text))).bindings
      : undefined;
    const active = kernel?.bindings === planned.bindings && planned.bindings !== newestBindings;
    if (!active) {
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
    const archive = commitPending(archiveDir, found.backend, found, activatedAt);
    updateDirState(stateFile, archiveDir, () => ({
      head: {
        name: archive.path.slice(archive.path.lastIndexOf('/') + 1),
        sha256: archive.sha256,
        activatedAt,
        clients: header?.clients ?? planned.clients,
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
  return resolutions;
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
