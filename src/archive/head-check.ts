/**
 * The checks of an archive directory that its hash chain cannot make (see anchor.ts): the newest
 * archive against the state file, archives dated in the future, and an interrupted apply whose
 * pending archive was not resolved yet.
 */
import { anchorProblem, readDirState } from './anchor.js';
import { archiveDigest, findPendingArchives, listArchives } from './store.js';

export function archiveHeadProblems(dir: string, stateFile: string, nowMs: number): string[] {
  const problems = futureDatedProblems(dir, nowMs);
  const newest = listArchives(dir).at(-1);
  const state = readDirState(stateFile, dir);
  const problem = anchorProblem(
    state,
    newest && { name: newest.name, sha256: archiveDigest(dir, newest) },
  );
  if (problem !== undefined) problems.push(problem);
  // Nothing to check the newest archive against (found by an audit: check said it was anchored).
  if (newest !== undefined && state.head === undefined) {
    problems.push(
      `${stateFile} anchors no archive of this directory (lost, or never written by a version before the state file), so an edited or replaced newest archive ${newest.name} cannot be told: if you know the archives are right, traceable-nat apply anchors the newest`,
    );
  }
  for (const pending of findPendingArchives(dir)) {
    problems.push(
      `${pending.path} is the archive of an apply that was interrupted: the next apply reads the kernel and archives or drops it`,
    );
  }
  return problems;
}

/** Archives of `dir` dated later than now by their names (trace gives their answers as doubts). */
export function futureDatedProblems(dir: string, nowMs: number): string[] {
  const now = Math.floor(nowMs / 1000);
  return listArchives(dir)
    .filter((entry) => entry.activatedAt > now)
    .map(
      (entry) =>
        `${entry.name} is dated ${new Date(entry.activatedAt * 1000).toISOString()} by its name, later than this machine's clock: the clock was stepped back or the file was copied in (applies are refused until it is put right)`,
    );
}
