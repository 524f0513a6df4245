/**
 * What an apply does, decided from what it found (pure): which of the archive, the kernel and
 * the rules files change, in which order, and what the apply then reports. apply.ts gathers
 * the facts (reading files, the archive and the kernel) and runs the steps; this file holds
 * the promises that order keeps, so a table of cases can check them without a kernel:
 * - only a real difference touches the kernel, and nothing at all changes when all is right;
 * - everything that can fail for lack of space (the archive, the temporary rules files) is
 *   written before the kernel changes; only renames, which cannot, come after it;
 * - a new archive is committed only once the kernel holds its ruleset;
 * - drift is repaired without a new archive when the newest one already holds the plan.
 */

/** What an apply found, each against the plan. */
export interface ApplyFacts {
  /** `apply --force`: everything is written again. */
  readonly force: boolean;
  /** The newest archive holds the planned ruleset (iptables with nat6: its IPv6 half too). */
  readonly archiveRight: boolean;
  /** The kernel holds the planned ruleset (both families). */
  readonly kernelRight: boolean;
  /**
   * The kernel's canary, when it was read (a trusted kernel is not): `newest` when it names
   * the newest archive, `other` when it names another or none (after a boot, an older version).
   */
  readonly canary: 'newest' | 'other' | undefined;
  /** There is a newest archive (of this backend). */
  readonly hasArchive: boolean;
  /** The rules file holds the planned text, and is no symlink. */
  readonly fileRight: boolean;
  /** iptables' rules.v6, when this apply manages it (nat6, or our part to take out): the same. */
  readonly file6Right: boolean | undefined;
  /**
   * The state file anchors no archive although there is one (an upgrade from a version
   * without the state file).
   */
  readonly unanchored: boolean;
  /** firewall.flushConntrack: connections of changed clients are forgotten. */
  readonly flushConntrack: boolean;
  /** firewall.afterWrite is set. */
  readonly afterWrite: boolean;
}

export type ApplyOutcome = 'applied' | 'repaired' | 'file-updated' | 'unchanged';

/** The steps, in the order an apply runs them; each present only when needed. */
export type ApplyStep =
  /** Compress and write the new archive under a temporary name, and its hash as pending. */
  | 'prepare-archive'
  /** Write the rules file (and rules.v6) under temporary names beside them. */
  | 'write-rules-temporary'
  | 'write-rules6-temporary'
  /** Wait for the new archive, and record its hash as pending in the state file. */
  | 'anchor-pending'
  /** Wait, if needed, for the second after the newest archive's (names never share one). */
  | 'wait-archive-second'
  /** One kernel transaction (per family) to the plan, its canary naming the archive. */
  | 'load-kernel'
  /** The kernel's rules are right: only its canary is set to the archive now active. */
  | 'set-canary'
  /** Rename the archive to its real name and anchor it as the head. */
  | 'commit-archive'
  /** No new archive, but none anchored yet: anchor the newest as the head. */
  | 'anchor-newest'
  | 'rename-rules'
  | 'rename-rules6'
  /** Delete the conntrack entries of the clients whose binding changed. */
  | 'forget-conntrack'
  /** Run firewall.afterWrite. */
  | 'after-write';

export interface ApplyDecision {
  readonly archive: boolean;
  readonly kernel: boolean;
  readonly file: boolean;
  readonly file6: boolean;
  readonly steps: readonly ApplyStep[];
  /** What the apply reports once the steps have run. */
  readonly outcome: ApplyOutcome;
}

export function decideApply(facts: ApplyFacts): ApplyDecision {
  const { force } = facts;
  const archive = force || !facts.archiveRight;
  const kernel = force || !facts.kernelRight;
  const file = force || !facts.fileRight;
  const file6 = facts.file6Right !== undefined && (force || !facts.file6Right);
  const steps: ApplyStep[] = [];
  const step = (when: boolean, name: ApplyStep) => {
    if (when) steps.push(name);
  };
  step(archive, 'prepare-archive');
  step(file, 'write-rules-temporary');
  step(file6, 'write-rules6-temporary');
  step(archive, 'anchor-pending');
  step(archive && kernel, 'wait-archive-second');
  step(kernel, 'load-kernel');
  // The canary names the archive active after this apply: a new one, or the newest.
  const canaryStale =
    facts.canary !== undefined && (archive || (facts.hasArchive && facts.canary === 'other'));
  step(!kernel && canaryStale, 'set-canary');
  step(archive, 'commit-archive');
  step(!archive && facts.unanchored, 'anchor-newest');
  step(file, 'rename-rules');
  step(file6, 'rename-rules6');
  step(kernel && facts.flushConntrack, 'forget-conntrack');
  step((file || file6) && facts.afterWrite, 'after-write');
  return {
    archive,
    kernel,
    file,
    file6,
    steps,
    outcome: archive
      ? 'applied'
      : kernel
        ? 'repaired'
        : file || file6
          ? 'file-updated'
          : 'unchanged',
  };
}
