/**
 * One apply: read the eduVPN files, plan the ruleset, and change only what really differs.
 *
 * The order keeps the promise "on failure the previous rules stay active, the rules file is
 * unchanged and no archive claims activation": everything that can fail on disk is written
 * under temporary names first; then the kernel is changed in one transaction; only then do the
 * archive and the rules file get their real names (renames, which do not fail for lack of
 * space). The archive is named after the second the kernel finished loading, and never
 * shares a second with the archive before it. What the apply reads is in snapshot.ts, how it
 * runs the decided steps in execute.ts.
 */
import { join } from 'node:path';
import type { Config } from '../config.js';
import { archiveBody, parseArchiveHeader } from '../archive/header.js';
import { recordDrift } from '../archive/drift.js';
import { updateDirState } from '../archive/anchor.js';
import { removeStaleIndexTemporaries } from '../archive/index-file.js';
import { archiveName, type ArchiveName } from '../archive/names.js';
import { newestArchive, readIpv6Half, type StoredArchive } from '../archive/store.js';
import type { Discovery } from '../eduvpn/pool.js';
import { TnatError } from '../errors.js';
import { ROOT_CHAIN } from '../render/iptables.js';
import type { Ruleset6Plan } from '../render/ruleset6.js';
import { removeStaleTemporaries } from '../system/atomic-write.js';
import type { Clock } from '../system/clock.js';
import type { FileIdentity } from '../system/file-identity.js';
import { acquireLock } from '../system/lock.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { decideApply, type ApplyOutcome } from './decide.js';
import { driverFor, type KernelChange, type KernelView } from './drivers.js';
import { ApplyExecution } from './execute.js';
import { clientsByProtocol, removalProblem } from './guard.js';
import { ourPartOf, planRuleset, previousFromMap, type RulesetPlan } from './plan.js';
import { planCacheFile, writePlanCache, type PlanCacheKey } from './plan-cache.js';
import { isSymlink, readRulesFile, readRulesFile6, readSnapshot } from './snapshot.js';

export interface ApplyDeps {
  readonly runner: CommandRunner;
  readonly clock: Clock;
  /** Reads the eduVPN files (injected so a caller can reuse one discovery). */
  readonly discover: (config: Config) => Discovery;
}

/** What ApplyOptions.trusted says: the plan this process applied last, and its archive. */
export interface TrustedPlan {
  readonly plan: RulesetPlan;
  /** The archive active after it. */
  readonly archive: string | undefined;
  /** That archive's SHA-256 when its ruleset is the plan's text (see ApplyResult.planArchive). */
  readonly archiveSha256?: string | undefined;
  /** The configuration the plan was made with: the same object, unless reloaded since. */
  readonly config?: Config | undefined;
  /**
   * The rules file as that apply left it holding the plan's text (ApplyResult.rulesFile): while
   * it is still that file, unchanged, its 14.5 MB (a /16) are not read again.
   */
  readonly rulesFile?: FileIdentity | undefined;
}

export interface ApplyOptions {
  readonly force?: boolean;
  /**
   * The ruleset this process applied last and the archive it wrote. While the rules file and
   * the newest archive are still those, the kernel is taken to hold it, instead of being read
   * back (seconds for a /16). The daemon passes it on a change, and not on its periodic check,
   * which reads the kernel and repairs drift.
   */
  readonly trusted?: TrustedPlan | undefined;
  /** Who asked, for the lock file and the archive header: `cli`, `daemon`, ... */
  readonly requester?: string;
  /**
   * `full`: read the whole kernel back and repair any drift (the daemon's start, reload and
   * periodic check; `apply --verify`). Otherwise the kernel's canary is read first, and when
   * it names the newest archive, whose ruleset the rules file still holds, the kernel is taken
   * to hold that ruleset (a flushed table, or one loaded from the rules file at boot, has no
   * canary and is read whole).
   */
  readonly kernelCheck?: 'full' | undefined;
}

export interface ApplyResult {
  /** applied: a new ruleset became active; repaired: the kernel had drifted from the active one. */
  readonly outcome: 'applied' | 'repaired' | 'file-updated' | 'unchanged';
  readonly plan: RulesetPlan;
  readonly archive: { readonly path: string; readonly sha256: string } | undefined;
  /** The archive of the ruleset active after this apply (new or not). */
  readonly activeArchive: string | undefined;
  /**
   * The SHA-256 of that archive when its ruleset is exactly plan.fileText (always for a new
   * one): a later apply trusting this plan then knows the archive's text without reading it.
   */
  readonly planArchive: string | undefined;
  readonly rulesFileWritten: boolean;
  /** The rules file, when it holds plan.fileText after this apply (see TrustedPlan.rulesFile). */
  readonly rulesFile: FileIdentity | undefined;
  /**
   * The rules file's text as one flat string, when it holds plan.fileText after this apply:
   * the plan's own text when written (encoding flattened it), else the file's as read, where
   * the plan's may still be pieces of the render. The daemon keeps the plan without it, while
   * the file holds it (see keepTrust).
   */
  readonly rulesText: string | undefined;
  /** iptables with nat6: rules.v6 was written. */
  readonly rulesFile6Written: boolean;
  readonly kernel: KernelChange | undefined;
  /** How the kernel's state was known (see ApplyOptions.kernelCheck). */
  readonly kernelRead: KernelView['how'];
  /** Clients whose (address, block) changed or who disappeared. */
  readonly changedClients: number;
  /** IPv6 sources (clients, or client ranges in prefix mode) whose translation changed or went. */
  readonly changedClients6: number;
  readonly conntrackDeleted: number;
  /**
   * What went wrong after the new ruleset was active and archived (the afterWrite command,
   * conntrack, the state file), or what an earlier interrupted apply left: the apply stands.
   */
  readonly warnings: readonly string[];
  readonly durationMs: number;
  /**
   * Where the time went, in milliseconds, in the order it was spent: reading the files and
   * archives (`read`), `plan`, reading the kernel (`read-kernel`), then each step decideApply
   * chose, by its name. For the log and the benchmark; nothing decides on it.
   */
  readonly timings: Readonly<Record<string, number>>;
  /**
   * The plan cache (src/apply/plan-cache.ts): whether the rules file's template and our chains
   * came from it instead of a parse of the file, and whether this apply wrote it.
   */
  readonly planCache: { readonly read: boolean; readonly written: boolean };
}

/** The plan for the current files, without touching anything (what `--dry-run` prints). */
export function planFromDisk(config: Config, discovery: Discovery): RulesetPlan {
  const newest = newestArchive(config.firewall.archiveDir, config.firewall.backend);
  return planRuleset(config, discovery, {
    rulesText: readRulesFile(config.firewall.rulesFile),
    archiveBody: newest ? archiveBody(newest.text) : undefined,
    rulesText6: readRulesFile6(config),
  });
}

/**
 * Whether the newest iptables archive's IPv6 half holds the planned IPv6 ruleset: both absent
 * (no nat6 then and now), or the half that the header vouches for with the same part of ours.
 */
function ipv6HalfRight(
  dir: string,
  newest: StoredArchive | undefined,
  plan6: Ruleset6Plan | undefined,
): boolean {
  const vouched = newest && parseArchiveHeader(newest.header ?? newest.text)?.ipv6;
  if (newest === undefined || plan6 === undefined || vouched === undefined)
    return plan6 === undefined && vouched === undefined;
  const half = readIpv6Half(dir, newest.entry);
  return (
    half?.sha256 === vouched.sha256 &&
    ourPartOf(archiveBody(half.text), 'iptables', half.path) === plan6.ourPart
  );
}

export async function applyRuleset(
  config: Config,
  deps: ApplyDeps,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const started = deps.clock.now();
  // Read with `started`, for the archive header (a later trace tells a clock step by it).
  const bootAtStart = deps.clock.boot?.();
  const timings: Record<string, number> = {};
  let lapStart = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = Math.round((now - lapStart) * 10) / 10;
    lapStart = now;
  };
  const { firewall } = config;
  const force = options.force === true;
  const release = await acquireLock(
    firewall.lockFile,
    firewall.lockTimeoutMs,
    options.requester ?? 'apply',
  );
  let execution: ApplyExecution | undefined;
  try {
    removeLeftovers(firewall);
    const claim = options.trusted;
    const snapshot = await readSnapshot(config, deps, claim, force);
    const { discovery, anchor, newest, trusted, active } = snapshot;
    const { currentText, currentText6, archived } = snapshot;
    lap('read');
    const plan =
      trusted && samePlanInputs(claim, config, discovery, currentText6)
        ? trusted
        : planRuleset(config, discovery, {
            rulesText: currentText,
            archiveBody: archived,
            previous: trusted ? previousFromMap(trusted.map) : active?.previous,
            previousRender: claim?.plan.iptables ?? active?.render,
            previousNft: claim?.plan.nftLayout && {
              text: claim.plan.fileText,
              layout: claim.plan.nftLayout,
            },
            mergeTemplate: trusted?.mergeTemplate ?? active?.template,
            rulesText6: currentText6,
          });
    lap('plan');
    const driver = driverFor(config, deps.runner);
    const kernelClaim = options.kernelCheck === 'full' ? undefined : active?.claim;
    const view = await driver.read(
      plan,
      trusted && { plan: trusted, canary: newest?.sha256 },
      kernelClaim,
    );
    lap('read-kernel');
    if (firewall.removalGuard && !force) {
      const problem = removalProblem(
        { held: view.bindings(), anchored: anchor.head },
        plan.map,
        discovery,
      );
      if (problem !== undefined) {
        throw new TnatError(
          'E_SOURCE',
          `${problem}, which looks like a half-written or emptied eduVPN file (${discovery.files.join(', ') || 'no file'}); nothing was changed: if the removal is meant, run traceable-nat apply --force once (or set firewall.removalGuard: false)`,
        );
      }
    }
    // When the rules file is still the one we archived, the (idempotent) merge gives the same
    // text exactly when our part is unchanged; only an edited file needs our part compared.
    const archiveRight =
      archived !== undefined &&
      (archived === currentText
        ? plan.fileText === currentText
        : ourPartOf(archived, firewall.backend, newest?.path) === plan.ourPart) &&
      (firewall.backend === 'nftables' || ipv6HalfRight(firewall.archiveDir, newest, plan.ipv6));
    const fileRight = currentText === plan.fileText && !isSymlink(firewall.rulesFile);
    // iptables with nat6: rules.v6 beside rules.v4 (nftables: one file holds both).
    const file6 = plan.ipv6?.iptables ? plan.ipv6 : plan.ipv6Removal;
    const file6Right = file6 && currentText6 === file6.fileText && !isSymlink(file6.file);
    const decision = decideApply({
      force,
      archiveRight,
      kernelRight: view.right && view.right6,
      canary:
        view.canary &&
        (view.canary.sha256 !== undefined && view.canary.sha256 === newest?.sha256
          ? 'newest'
          : 'other'),
      hasArchive: newest !== undefined,
      fileRight,
      file6Right,
      unanchored:
        anchor.head === undefined &&
        snapshot.latest !== undefined &&
        snapshot.latestSha !== undefined,
      flushConntrack: firewall.flushConntrack,
      afterWrite: firewall.afterWrite !== null,
    });
    const run = new ApplyExecution({
      config,
      deps,
      force,
      started,
      bootAtStart,
      snapshot,
      plan,
      view,
      driver,
      protocols: clientsByProtocol(discovery),
      file6,
    });
    execution = run;
    await run.run(decision.steps, lap);
    const { archive } = run;
    recordKernelKnown({
      firewall,
      outcome: decision.outcome,
      how: view.how,
      newest: archive ? undefined : newest?.entry,
      verifiedAt: anchor.verifiedAt,
      now: Math.floor(deps.clock.now() / 1000),
      warn: (error, then) => {
        run.warn(error, then);
      },
    });
    // The plan cache for the rules file as this apply leaves it, unless it was just read.
    const leftKey: PlanCacheKey | undefined =
      archive && run.committedBody !== undefined && decision.file
        ? { rulesFile: firewall.rulesFile, body: run.committedBody, archive: archive.sha256 }
        : !decision.file && fileRight && !active?.cached
          ? snapshot.cacheKey
          : undefined;
    let cacheWritten = false;
    if (leftKey !== undefined) {
      try {
        cacheWritten = writePlanCache(planCacheFile(firewall.stateFile), leftKey, plan);
        if (cacheWritten) lap('plan-cache');
      } catch {
        // Only a cache: the next apply parses the rules file instead.
      }
    }

    return {
      outcome: decision.outcome,
      plan,
      archive,
      activeArchive: archive?.path ?? newest?.path,
      planArchive: archive
        ? archive.sha256
        : archived === plan.fileText
          ? newest?.sha256
          : undefined,
      rulesFileWritten: decision.file,
      rulesFile: decision.file ? run.renamedIdentity : fileRight ? snapshot.identity : undefined,
      rulesText: decision.file ? plan.fileText : fileRight ? currentText : undefined,
      rulesFile6Written: decision.file6,
      kernel: run.kernel,
      kernelRead: view.how,
      changedClients: run.changes.changed.length,
      changedClients6: run.changed6.length,
      conntrackDeleted: run.conntrackDeleted,
      warnings: run.warnings,
      durationMs: deps.clock.now() - started,
      timings,
      planCache: { read: active?.cached === true, written: cacheWritten },
    };
  } finally {
    await execution?.cleanUp();
    release();
  }
}

/** Under the lock, every temporary file is a killed applier's leftover. */
function removeLeftovers(firewall: Config['firewall']): void {
  removeStaleTemporaries(firewall.rulesFile);
  removeStaleTemporaries(firewall.stateFile);
  removeStaleTemporaries(planCacheFile(firewall.stateFile));
  removeStaleTemporaries(join(firewall.archiveDir, archiveName(firewall.backend, 0)));
  removeStaleIndexTemporaries(firewall.archiveDir);
  if (firewall.backend === 'iptables') {
    removeStaleTemporaries(firewall.rulesFile6);
    removeStaleTemporaries(join(firewall.archiveDir, archiveName('ip6tables', 0)));
  }
}

/**
 * What this apply learnt of the kernel and the newest archive, when it wrote no new one: that
 * the kernel holds its ruleset now (read whole or through its canary, or loaded again: not
 * merely trusted), and, when the kernel had drifted from it, since when it may not have (the
 * last moment known before, see src/archive/drift.ts). Failures only warn: the apply stands.
 */
function recordKernelKnown(known: {
  readonly firewall: Config['firewall'];
  readonly outcome: ApplyOutcome;
  readonly how: KernelView['how'];
  readonly newest: ArchiveName | undefined;
  readonly verifiedAt: number | undefined;
  readonly now: number;
  readonly warn: (error: unknown, then: string) => void;
}): void {
  const { firewall, newest, now, warn } = known;
  if (newest === undefined) return;
  if (known.outcome === 'repaired') {
    try {
      // A moment later than now was recorded by a clock that ran ahead: not known then.
      const { verifiedAt } = known;
      const verified = verifiedAt !== undefined && verifiedAt <= now ? verifiedAt : 0;
      const from = Math.max(verified, newest.activatedAt);
      recordDrift(firewall.archiveDir, { from, to: now, archive: newest.name });
    } catch (error) {
      warn(error, '; trace cannot say when the kernel did not hold the archived ruleset');
    }
  }
  if (known.how === 'trusted' && known.outcome !== 'repaired') return;
  try {
    updateDirState(firewall.stateFile, firewall.archiveDir, (state) => ({
      ...state,
      verifiedAt: now,
    }));
  } catch (error) {
    warn(error, '; a drift found later is taken to go back to the last moment recorded');
  }
}

/**
 * Whether planning again would give the trusted plan back: the same configuration object,
 * the same pools read the same way, and the rules files it was made from (rules.v4, or the
 * nftables file, is the plan's own text: the trust checked it). Planning is stable over its own
 * output, so the daemon's write that changes nothing skips the render of a /16. iptables
 * without nat6: only while rules.v6 holds nothing of ours (else the plan takes it out).
 */
function samePlanInputs(
  claim: TrustedPlan | undefined,
  config: Config,
  discovery: Discovery,
  currentText6: string | undefined,
): boolean {
  if (claim?.config !== config) return false;
  const { plan } = claim;
  const ours6 =
    config.firewall.backend === 'iptables' &&
    plan.ipv6 === undefined &&
    (currentText6?.includes(ROOT_CHAIN) ?? false);
  return (
    plan.ipv6Removal === undefined &&
    !ours6 &&
    plan.discovery.source === discovery.source &&
    JSON.stringify(plan.discovery.files) === JSON.stringify(discovery.files) &&
    JSON.stringify(plan.discovery.pools) === JSON.stringify(discovery.pools)
  );
}
