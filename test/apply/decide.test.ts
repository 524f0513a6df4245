/**
 * The apply's decision over every combination of what it can find (2 304 cases): the promises
 * of the apply's order, checked without a kernel. The executor's side (that apply.ts runs
 * these steps, and a failure at each leaves everything as it was) is in the driver and fault
 * tests.
 */
import { describe, expect, it } from '@jest/globals';
import { decideApply, type ApplyFacts, type ApplyStep } from '../../src/apply/decide.js';

const BOOLEANS = [false, true] as const;

function allFacts(): ApplyFacts[] {
  const facts: ApplyFacts[] = [];
  for (const force of BOOLEANS)
    for (const archiveRight of BOOLEANS)
      for (const kernelRight of BOOLEANS)
        for (const canary of ['newest', 'other', undefined] as const)
          for (const hasArchive of BOOLEANS)
            for (const fileRight of BOOLEANS)
              for (const file6Right of [false, true, undefined] as const)
                for (const flushConntrack of BOOLEANS)
                  for (const afterWrite of BOOLEANS)
                    for (const unanchored of BOOLEANS)
                      facts.push({
                        force,
                        // An archive that is right exists.
                        archiveRight: archiveRight && hasArchive,
                        kernelRight,
                        canary,
                        hasArchive,
                        fileRight,
                        file6Right,
                        unanchored: unanchored && hasArchive,
                        flushConntrack,
                        afterWrite,
                      });
  return facts;
}

const CASES = allFacts();

/** Where a step comes in the steps, or -1. */
const at = (steps: readonly ApplyStep[], step: ApplyStep) => steps.indexOf(step);

describe('decideApply', () => {
  it('covers every combination of the facts', () => {
    expect(CASES).toHaveLength(2 ** 8 * 3 * 3);
  });

  it('changes nothing when the archive, the kernel and both files hold the plan', () => {
    for (const facts of CASES) {
      if (
        facts.force ||
        !facts.archiveRight ||
        !facts.kernelRight ||
        !facts.fileRight ||
        facts.file6Right === false
      )
        continue;
      const decision = decideApply(facts);
      // The canary alone may be set (it is not the ruleset), and an unanchored newest archive
      // anchored; nothing else runs.
      expect(
        decision.steps.filter((step) => step !== 'set-canary' && step !== 'anchor-newest'),
      ).toEqual([]);
      expect(decision.steps.includes('anchor-newest')).toBe(facts.unanchored);
      expect(decision.outcome).toBe('unchanged');
    }
  });

  it('touches the kernel only when it differs from the plan, or on --force', () => {
    for (const facts of CASES) {
      const { steps, kernel } = decideApply(facts);
      expect(kernel).toBe(facts.force || !facts.kernelRight);
      expect(steps.includes('load-kernel')).toBe(kernel);
      // The canary is a write too: only where it was read and names another archive.
      if (steps.includes('set-canary')) {
        expect(kernel).toBe(false);
        expect(facts.canary).toBeDefined();
      }
    }
  });

  it('sets the canary when the kernel is right but names another archive than the active one', () => {
    for (const facts of CASES) {
      const decision = decideApply(facts);
      const activeIsNew = decision.archive;
      const stale =
        facts.canary !== undefined &&
        (activeIsNew || (facts.hasArchive && facts.canary === 'other'));
      expect(decision.steps.includes('set-canary')).toBe(!decision.kernel && stale);
    }
  });

  it('writes everything again on --force', () => {
    for (const facts of CASES.filter((each) => each.force)) {
      const decision = decideApply(facts);
      expect(decision).toMatchObject({ archive: true, kernel: true, file: true });
      expect(decision.file6).toBe(facts.file6Right !== undefined);
      expect(decision.outcome).toBe('applied');
    }
  });

  it('writes what can fail for lack of space before the kernel changes, and renames after it', () => {
    const beforeKernel: ApplyStep[] = [
      'prepare-archive',
      'write-rules-temporary',
      'write-rules6-temporary',
      'anchor-pending',
      'wait-archive-second',
    ];
    const afterKernel: ApplyStep[] = [
      'commit-archive',
      'anchor-newest',
      'rename-rules',
      'rename-rules6',
      'forget-conntrack',
      'after-write',
    ];
    for (const facts of CASES) {
      const { steps } = decideApply(facts);
      const kernel = Math.max(at(steps, 'load-kernel'), at(steps, 'set-canary'));
      if (kernel < 0) continue;
      for (const step of beforeKernel)
        if (steps.includes(step)) expect(at(steps, step)).toBeLessThan(kernel);
      for (const step of afterKernel)
        if (steps.includes(step)) expect(at(steps, step)).toBeGreaterThan(kernel);
    }
  });

  it('commits an archive only after preparing it, and before the rules files take their names', () => {
    for (const facts of CASES) {
      const { steps, archive } = decideApply(facts);
      expect(steps.includes('prepare-archive')).toBe(archive);
      expect(steps.includes('anchor-pending')).toBe(archive);
      expect(steps.includes('commit-archive')).toBe(archive);
      // A new archive is the head: the newest one is anchored only when none is made.
      expect(steps.includes('anchor-newest')).toBe(!archive && facts.unanchored);
      if (!archive) continue;
      // Its hash is pending in the state file before it is committed: a crash between the
      // two leaves an archive the next apply can tell from a forged one.
      expect(at(steps, 'prepare-archive')).toBeLessThan(at(steps, 'anchor-pending'));
      expect(at(steps, 'anchor-pending')).toBeLessThan(at(steps, 'commit-archive'));
      // A crash between the two leaves an archive that the rules file does not hold yet: the
      // next apply rewrites the file. The other way round, a file no archive vouches for.
      for (const rename of ['rename-rules', 'rename-rules6'] as const)
        if (steps.includes(rename))
          expect(at(steps, rename)).toBeGreaterThan(at(steps, 'commit-archive'));
      // Two activations never share a second: the wait comes only with a kernel change.
      expect(steps.includes('wait-archive-second')).toBe(steps.includes('load-kernel'));
    }
  });

  it('writes each rules file under a temporary name first, and renames it only then', () => {
    for (const facts of CASES) {
      const { steps, file, file6 } = decideApply(facts);
      expect(steps.includes('write-rules-temporary')).toBe(file);
      expect(steps.includes('rename-rules')).toBe(file);
      expect(steps.includes('write-rules6-temporary')).toBe(file6);
      expect(steps.includes('rename-rules6')).toBe(file6);
      expect(file).toBe(facts.force || !facts.fileRight);
      // rules.v6 only when this apply manages it.
      if (facts.file6Right === undefined) expect(file6).toBe(false);
      if (file) expect(at(steps, 'write-rules-temporary')).toBeLessThan(at(steps, 'rename-rules'));
      if (file6)
        expect(at(steps, 'write-rules6-temporary')).toBeLessThan(at(steps, 'rename-rules6'));
    }
  });

  it('forgets connections only after a kernel change, and runs afterWrite only after a file was written', () => {
    for (const facts of CASES) {
      const { steps, kernel, file, file6 } = decideApply(facts);
      expect(steps.includes('forget-conntrack')).toBe(kernel && facts.flushConntrack);
      expect(steps.includes('after-write')).toBe((file || file6) && facts.afterWrite);
      if (steps.includes('after-write')) expect(steps.at(-1)).toBe('after-write');
    }
  });

  it('reports a new archive as applied, a kernel repaired from the newest one, and a file rewritten', () => {
    for (const facts of CASES) {
      const { outcome, archive, kernel, file, file6 } = decideApply(facts);
      const expected = archive
        ? 'applied'
        : kernel
          ? 'repaired'
          : file || file6
            ? 'file-updated'
            : 'unchanged';
      expect(outcome).toBe(expected);
      // Drift is repaired without a new archive while the newest one holds the plan.
      if (facts.archiveRight && !facts.kernelRight && !facts.force) {
        expect(archive).toBe(false);
        expect(outcome).toBe('repaired');
      }
    }
  });

  it('counts rules.v6 rewritten alone as a file update, not as unchanged', () => {
    const decision = decideApply({
      force: false,
      archiveRight: true,
      kernelRight: true,
      canary: undefined,
      hasArchive: true,
      fileRight: true,
      file6Right: false,
      unanchored: false,
      flushConntrack: true,
      afterWrite: false,
    });
    expect(decision.steps).toEqual(['write-rules6-temporary', 'rename-rules6']);
    expect(decision.outcome).toBe('file-updated');
  });
});
