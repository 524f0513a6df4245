/**
 * One apply: read the eduVPN files, plan the ruleset, and change only what really differs.
 *
 * The order keeps the promise "on failure the previous rules stay active, the rules file is
 * unchanged and no archive claims activation": everything that can fail on disk is written
 * under temporary names first; then the kernel is changed in one transaction; only then do the
 * archive and the rules file get their real names (renames, which do not fail for lack of
 * space). The archive is named after the second the kernel finished loading, and never
 * shares a second with the archive before it.
 */
import { lstatSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { webcrypto } from 'node:crypto';
import type { Config } from '../config.js';
import {
  anchorProblem,
  readDirState,
  updateDirState,
  type ArchiveHead,
} from '../archive/anchor.js';
import { archiveBody, parseArchiveHeader, sha256 } from '../archive/header.js';
import { identityOf, sameIdentity, type FileIdentity } from '../system/file-identity.js';
import { recordDrift } from '../archive/drift.js';
import { removeStaleIndexTemporaries } from '../archive/index-file.js';
import { archiveName, type ArchiveName } from '../archive/names.js';
import {
  indexedBindings,
  listArchives,
  newestArchive,
  prepareArchive,
  prepareArchiveAsync,
  readIpv6Half,
  type PendingArchive,
  type StoredArchive,
} from '../archive/store.js';
import type { Discovery } from '../eduvpn/pool.js';
import {
  layoutOfRulesFile,
  renderFormat,
  ROOT_CHAIN,
  type IptablesNat,
} from '../render/iptables.js';
import { clientBindings, type BindingRows } from '../archive/binding-columns.js';
import {
  bindingsOf,
  mostCommonBlockSize,
  walkBindings,
  type Bindings,
} from '../mapping/bindings.js';
import { assignmentColumns } from '../mapping/columns.js';
import type { PreviousAssignments } from '../mapping/types.js';
import { isTnatError, PartialLoadError, TnatError } from '../errors.js';
import { forgetClients } from '../netfilter/conntrack.js';
import type { CommandRunner } from '../netfilter/runner.js';
import { readAssignments } from '../render/read-rules.js';
import {
  prepareMergeAndExtract,
  type ExtractedNat,
  type MergeTemplate,
} from '../render/rules-file.js';
import {
  fsyncDirectory,
  removeStaleTemporaries,
  writeTemporaryBeside,
} from '../system/atomic-write.js';
import type { Clock } from '../system/clock.js';
import { acquireLock } from '../system/lock.js';
import { decideApply, type ApplyOutcome, type ApplyStep } from './decide.js';
import { driverFor, type KernelChange, type KernelClaim, type KernelView } from './drivers.js';
import { forgetSources6 } from '../netfilter/conntrack6.js';
import { translations6 as readTranslations6 } from '../render/fingerprint6.js';
import type { Ruleset6Plan } from '../render/ruleset6.js';
import { formatCidr6, formatIpv6 } from '../net/ipv6.js';
import { clientsByProtocol, removalProblem } from './guard.js';
import { clientsByProtocolOf, resolvePendingArchives } from './pending.js';
import { ourPartOf, planRuleset, previousFromMap, type RulesetPlan } from './plan.js';
import { planCacheFile, readPlanCache, writePlanCache, type PlanCacheKey } from './plan-cache.js';
import { TOOL_VERSION } from '../version.js';

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

const RULES_FILE_MODE = 0o640;

export function readRulesFile(path: string): string | undefined {
  return readRulesBytes(path)?.toString('utf8');
}

function readRulesBytes(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TnatError(
      'E_RULES_FILE',
      `${path} cannot be read: check its permissions (firewall.rulesFile)`,
      {
        cause: error,
      },
    );
  }
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
 * iptables: rules.v6 as it is now, for nat6's stability or, without nat6, to take out what an
 * earlier nat6 left in it (nftables keeps both families in one file).
 */
function readRulesFile6(config: Config): string | undefined {
  const { firewall } = config;
  return firewall.backend === 'iptables' ? readRulesFile(firewall.rulesFile6) : undefined;
}

/** Clients bound differently in the kernel than planned (changed or gone), and those kept. */
function bindingChanges(held: Bindings, plan: RulesetPlan): { changed: number[]; kept: number[] } {
  const changed: number[] = [];
  const kept: number[] = [];
  walkBindings(held, assignmentColumns(plan.map), {
    gone: (row) => changed.push(held.client[row] ?? 0),
    both: (row, _planned, same) => (same ? kept : changed).push(held.client[row] ?? 0),
  });
  return { changed, kept };
}

/** IPv6 sources the kernel translates otherwise than planned (or not at all any more). */
function translationChanges(view: KernelView, plan: RulesetPlan): string[] {
  const planned = readTranslations6(plan.ipv6?.fileText ?? '');
  return [...view.translations6()]
    .filter(([source, to]) => planned.get(source) !== to)
    .map(([source]) => source);
}

function settingsOf(config: Config, plan: RulesetPlan): Record<string, unknown> {
  return {
    source: plan.discovery.source,
    publicAddresses: config.nat.publicAddresses,
    outInterface: config.nat.outInterface,
    portRange: `${config.nat.portRange.first}-${config.nat.portRange.last}`,
    excludePorts: config.nat.excludePorts.map((range) => `${range.first}-${range.last}`),
    portsPerClient: config.nat.portsPerClient,
    blockSize: plan.map.blockSize,
    ...(plan.ipv6 && { nat6: settings6Of(plan.ipv6) }),
    // How the rules were written, for a later apply to reuse this text (see renderFormat).
    ...(plan.backend === 'iptables' && { render: renderFormat() }),
  };
}

function settings6Of(plan6: Ruleset6Plan): Record<string, unknown> {
  const { map } = plan6;
  return map.mode === 'prefix'
    ? { mode: 'prefix', publicPrefix: formatCidr6(map.publicPrefix), clients: map.clientCount }
    : {
        mode: 'ports',
        publicAddresses: map.publicAddresses.map(formatIpv6),
        blockSize: map.blockSize,
        clients: map.clientCount,
      };
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
  let pending: PendingArchive | undefined;
  let preparing: Promise<PendingArchive> | undefined;
  let pending6: PendingArchive | undefined;
  let rulesTemporary: string | undefined;
  let rulesTemporary6: string | undefined;
  let bodyDigest: Promise<ArrayBuffer> | undefined;
  // Set once the kernel took the new ruleset: from then on a failure must not undo what
  // records it (the pending archive), and must not say that nothing was applied.
  let kernelChanged = false as boolean; // set in a step: not narrowed to false here
  try {
    // Under the lock, every temporary file is a killed applier's leftover.
    removeStaleTemporaries(firewall.rulesFile);
    removeStaleTemporaries(firewall.stateFile);
    removeStaleTemporaries(planCacheFile(firewall.stateFile));
    removeStaleTemporaries(join(firewall.archiveDir, archiveName(firewall.backend, 0)));
    removeStaleIndexTemporaries(firewall.archiveDir);
    if (firewall.backend === 'iptables') {
      removeStaleTemporaries(firewall.rulesFile6);
      removeStaleTemporaries(join(firewall.archiveDir, archiveName('ip6tables', 0)));
    }
    const discovery = deps.discover(config);
    // By name only: reading (and decompressing) it waits until the pending one is resolved.
    assertNotInFuture(
      firewall.archiveDir,
      listArchives(firewall.archiveDir).at(-1),
      deps.clock.now(),
    );
    const recovered = await resolvePendingArchives(config, deps.runner, deps.clock);
    // Decompressed only when asked: the daemon's next apply knows the text from its plan.
    const latest = newestArchive(firewall.archiveDir, undefined, true);
    const latestSha = latest?.sha256;
    const anchor = readDirState(firewall.stateFile, firewall.archiveDir);
    const anchorMismatch = anchorProblem(
      anchor,
      latest && latestSha !== undefined
        ? { name: latest.entry.name, sha256: latestSha }
        : undefined,
    );
    if (anchorMismatch !== undefined && !force) {
      throw new TnatError(
        'E_ARCHIVE',
        `${anchorMismatch}; nothing was applied: find out what happened to ${firewall.archiveDir} (traceable-nat check), then run traceable-nat apply --force to go on from the archives as they are (the new archive records the mismatch)`,
      );
    }
    const newest =
      latest === undefined || latest.entry.backend === firewall.backend
        ? latest
        : newestArchive(firewall.archiveDir, firewall.backend, true);
    const claim = options.trusted;
    // Taken before the read: a write after it changes the identity, so it is never trusted.
    const identity = identityOf(firewall.rulesFile);
    const unchangedFile =
      claim?.plan.backend === firewall.backend && sameIdentity(claim.rulesFile, identity);
    const currentBytes = unchangedFile ? undefined : readRulesBytes(firewall.rulesFile);
    const currentText = unchangedFile ? claim.plan.fileText : currentBytes?.toString('utf8');
    const currentText6 = readRulesFile6(config);
    // The bytes this process archived from the trusted plan hold its text: equal digests.
    const claimArchived =
      claim?.archiveSha256 !== undefined && claim.archiveSha256 === newest?.sha256;
    // The rules file's bytes are the newest archive's (their digest anchored as its body).
    const fileIsBody =
      newest !== undefined && !claimArchived && rulesFileIsBody(anchor.head, newest, currentBytes);
    const archived =
      newest === undefined
        ? undefined
        : claimArchived
          ? claim.plan.fileText
          : fileIsBody
            ? currentText
            : archiveBody(newest.text);
    // What the plan cache is keyed by, while the rules file is the anchored newest archive's.
    const cacheKey: PlanCacheKey | undefined =
      fileIsBody && anchor.head?.body !== undefined
        ? { rulesFile: firewall.rulesFile, body: anchor.head.body, archive: newest.sha256 }
        : undefined;
    const trusted =
      claim?.plan.backend === firewall.backend &&
      claim.plan.fileText === currentText &&
      // iptables: rules.v6 too (nftables: fileText holds both families).
      (claim.plan.ipv6?.iptables === undefined || claim.plan.ipv6.fileText === currentText6) &&
      claim.archive === newest?.path
        ? claim.plan
        : undefined;
    // The rules file is the newest archive's ruleset (the usual case): it is read once, for
    // the clients' stability, the merge template and the claim on the kernel.
    const active =
      trusted === undefined && newest && archived !== undefined && archived === currentText
        ? readActive(newest, archived, firewall, cacheKey)
        : undefined;
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
      unanchored: anchor.head === undefined && latest !== undefined && latestSha !== undefined,
      flushConntrack: firewall.flushConntrack,
      afterWrite: firewall.afterWrite !== null,
    });
    const protocols = clientsByProtocol(discovery);
    // The rules file's bytes, encoded once for the file and for its archive (a /16: 13 MB).
    let fileBytes: Uint8Array | undefined;
    const planBytes = () => (fileBytes ??= Buffer.from(plan.fileText, 'utf8'));
    // Two activations never share an archive second (assertNotInFuture refused a newest
    // archive from a later one, so the wait is under a second).
    const earliest = ((latest?.entry.activatedAt ?? 0) + 1) * 1000;
    // The canary names the archive of what the kernel holds after this apply.
    const canaryOf = () => pending?.sha256 ?? newest?.sha256;
    const warnings: string[] = recovered
      .filter((resolution) => resolution.outcome === 'archived')
      .map(
        (resolution) =>
          `an interrupted apply (started ${resolution.applyStarted}) had loaded its ruleset; it is now archived as ${resolution.archive ?? '?'}, and trace treats the time between as uncertain`,
      );
    const warn = (error: unknown, then: string) =>
      warnings.push(`${isTnatError(error) ? error.message : String(error)}${then}`);
    let changes = { changed: [] as number[], kept: [] as number[] };
    let changed6: string[] = [];
    let kernel: KernelChange | undefined;
    let archive: { path: string; sha256: string } | undefined;
    let conntrackDeleted = 0;
    let renamedIdentity: FileIdentity | undefined;
    let committedBody: string | undefined;

    // The steps in decideApply's order; each runs only when decided.
    const steps: Record<ApplyStep, () => void | Promise<void>> = {
      'prepare-archive': () => {
        const header = {
          tool: `traceable-nat ${TOOL_VERSION}`,
          backend: firewall.backend,
          applyStarted: new Date(started).toISOString(),
          reason: reasonFor(force, newest !== undefined, anchorMismatch),
          clients: plan.map.clientCount,
          settings: { ...settingsOf(config, plan), clientsByProtocol: protocols },
        };
        // The IPv6 half first: the rules.v4 header records its hash, so the chain vouches for it.
        if (plan.ipv6?.iptables)
          pending6 = prepareArchive(
            firewall.archiveDir,
            { ...header, clients: plan.ipv6.map.clientCount, family: 'ipv6' },
            plan.ipv6.fileText,
            undefined,
            firewall.compressArchives,
            'ip6tables',
          );
        // A /16's gzip runs in libuv's thread pool while this thread writes the rules file;
        // anchor-pending waits for it, before the kernel is touched.
        preparing = prepareArchiveAsync(
          firewall.archiveDir,
          { ...header, ipv6: pending6 && { sha256: pending6.sha256 } },
          { text: plan.fileText, bytes: planBytes() },
          latest && latestSha !== undefined
            ? { name: latest.entry.name, sha256: latestSha }
            : undefined,
          firewall.compressArchives,
        );
        // Awaited by anchor-pending, or discarded by `finally` when this thread fails first.
        preparing.catch(() => undefined);
        // In the thread pool too: for the head, so a later apply can trust the rules file by it.
        bodyDigest = webcrypto.subtle.digest('SHA-256', planBytes());
        bodyDigest.catch(() => undefined);
      },
      'write-rules-temporary': () => {
        rulesTemporary = writeRulesTemporary(firewall.rulesFile, planBytes());
      },
      'write-rules6-temporary': () => {
        if (file6) rulesTemporary6 = writeRulesTemporary(file6.file, file6.fileText);
      },
      'anchor-pending': async () => {
        if (!preparing) return;
        pending = await preparing;
        preparing = undefined;
        // Anchored before the kernel changes, so the archive is ours whatever happens next.
        const { sha256: pendingSha } = pending;
        updateDirState(firewall.stateFile, firewall.archiveDir, (state) => ({
          ...state,
          pending: { sha256: pendingSha, applyStarted: new Date(started).toISOString() },
        }));
      },
      'wait-archive-second': async () => {
        if (deps.clock.now() < earliest) await deps.clock.sleep(earliest - deps.clock.now());
      },
      'load-kernel': async () => {
        // The kernel's bindings before the change: whose connections to forget.
        changes = bindingChanges(view.bindings(), plan);
        changed6 = view.right6 ? [] : translationChanges(view, plan);
        const current = pending;
        const recordChild =
          current &&
          ((pid: number) => {
            current.recordChild(pid);
          });
        kernel = await driver.apply(plan, force, recordChild, canaryOf());
        kernelChanged = true;
      },
      'set-canary': async () => {
        // Rules right but no canary, or another one (after a boot, or from an older version):
        // set it alone, so the next apply reads two small chains instead of the whole table.
        const canary = canaryOf();
        if (canary !== undefined) await driver.apply(plan, false, undefined, canary);
      },
      'commit-archive': async () => {
        const activatedAt = Math.max(Math.floor(deps.clock.now() / 1000), earliest / 1000);
        pending6?.commit(activatedAt);
        pending6 = undefined;
        // With no client of ours, the body's bindings may be the original script's rules, so
        // they are read from the text.
        archive = pending?.commit(
          activatedAt,
          plan.map.clientCount > 0 ? () => assignmentColumns(plan.map) : undefined,
        );
        pending = undefined;
        if (!archive) return;
        const committed = archive;
        const body = await bodyDigest?.then((digest) => Buffer.from(digest).toString('hex'));
        committedBody = body;
        try {
          updateDirState(firewall.stateFile, firewall.archiveDir, () => ({
            head: {
              name: basename(committed.path),
              sha256: committed.sha256,
              activatedAt,
              clients: plan.map.clientCount,
              clientsByProtocol: protocols,
              body,
            },
            verifiedAt: activatedAt,
          }));
        } catch (error) {
          // The pending hash in the state file still vouches for this archive.
          warn(error, '; the archive stays anchored by its pending hash');
        }
      },
      'anchor-newest': () => {
        // Never anchored (an upgrade from a version without the state file): the active
        // ruleset is the newest archive, so anchor it now rather than at the next change.
        if (latest === undefined || latestSha === undefined) return;
        try {
          const header = parseArchiveHeader(latest.text);
          updateDirState(firewall.stateFile, firewall.archiveDir, (state) => ({
            ...state,
            head: {
              name: latest.entry.name,
              sha256: latestSha,
              activatedAt: latest.entry.activatedAt,
              clients: header?.clients ?? plan.map.clientCount,
              clientsByProtocol: clientsByProtocolOf(header?.settings),
            },
          }));
        } catch (error) {
          warn(error, '');
        }
      },
      'rename-rules': () => {
        if (rulesTemporary === undefined) return;
        renameSync(rulesTemporary, firewall.rulesFile);
        rulesTemporary = undefined;
        // Before anything else runs (firewall.afterWrite may write the file).
        renamedIdentity = identityOf(firewall.rulesFile);
        fsyncDirectory(dirname(firewall.rulesFile));
      },
      'rename-rules6': () => {
        if (rulesTemporary6 === undefined || !file6) return;
        renameSync(rulesTemporary6, file6.file);
        rulesTemporary6 = undefined;
        fsyncDirectory(dirname(file6.file));
      },
      'forget-conntrack': async () => {
        if (changes.changed.length > 0) {
          try {
            conntrackDeleted = (await forgetClients(deps.runner, changes.changed, changes.kept))
              .deleted;
          } catch (error) {
            warnings.push(
              `the conntrack entries of the changed clients could not be deleted (${isTnatError(error) ? error.message : String(error)}); their open connections keep their old ports until they end`,
            );
          }
        }
        if (changed6.length > 0) {
          try {
            conntrackDeleted += (await forgetSources6(deps.runner, changed6)).deleted;
          } catch (error) {
            warnings.push(
              `the conntrack entries of the changed IPv6 clients could not be deleted (${isTnatError(error) ? error.message : String(error)}); their open connections keep their old translation until they end`,
            );
          }
        }
      },
      'after-write': async () => {
        if (firewall.afterWrite === null) return;
        try {
          await deps.runner.run('sh', ['-c', firewall.afterWrite]);
        } catch (error) {
          warnings.push(
            `firewall.afterWrite failed (${isTnatError(error) ? error.message : String(error)}); the new ruleset is active and archived all the same`,
          );
        }
      },
    };
    for (const step of decision.steps) {
      try {
        await steps[step]();
      } catch (error) {
        if (error instanceof PartialLoadError) kernelChanged = true;
        if (!kernelChanged) throw error;
        throw unfinished(error, step, {
          pending:
            pending === undefined && pending6 === undefined ? undefined : firewall.archiveDir,
          archive,
          rulesFile: rulesTemporary === undefined ? undefined : firewall.rulesFile,
        });
      }
      lap(step);
    }
    recordKernelKnown({
      firewall,
      outcome: decision.outcome,
      how: view.how,
      newest: archive ? undefined : newest?.entry,
      verifiedAt: anchor.verifiedAt,
      now: Math.floor(deps.clock.now() / 1000),
      warn,
    });
    // The plan cache for the rules file as this apply leaves it, unless it was just read.
    const leftKey: PlanCacheKey | undefined =
      archive && committedBody !== undefined && decision.file
        ? { rulesFile: firewall.rulesFile, body: committedBody, archive: archive.sha256 }
        : !decision.file && fileRight && !active?.cached
          ? cacheKey
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
      rulesFile: decision.file ? renamedIdentity : fileRight ? identity : undefined,
      rulesText: decision.file ? plan.fileText : fileRight ? currentText : undefined,
      rulesFile6Written: decision.file6,
      kernel,
      kernelRead: view.how,
      changedClients: changes.changed.length,
      changedClients6: changed6.length,
      conntrackDeleted,
      warnings,
      durationMs: deps.clock.now() - started,
      timings,
      planCache: { read: active?.cached === true, written: cacheWritten },
    };
  } finally {
    if (preparing) (await preparing.catch(() => undefined))?.discard();
    // A pending archive whose ruleset the kernel holds stays: the next apply archives it, as
    // after a kill (resolvePendingArchives), and trace treats the time until then as uncertain.
    if (!kernelChanged) {
      pending?.discard();
      pending6?.discard();
    }
    if (rulesTemporary !== undefined) unlinkSync(rulesTemporary);
    if (rulesTemporary6 !== undefined) unlinkSync(rulesTemporary6);
    release();
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
      const from = Math.max(known.verifiedAt ?? newest.activatedAt, newest.activatedAt);
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
 * The error of a step that failed after the kernel took the new ruleset: the ruleset is active,
 * so the message says so, and what was not done that the next apply does.
 */
function unfinished(
  error: unknown,
  step: ApplyStep,
  left: {
    /** The archive directory, while its pending archive was not given its name. */
    readonly pending: string | undefined;
    readonly archive: { readonly path: string } | undefined;
    /** The rules file, while it was not replaced. */
    readonly rulesFile: string | undefined;
  },
): TnatError {
  const cause = isTnatError(error) ? error.message : String(error);
  const recorded =
    left.pending !== undefined
      ? `its archive stays pending in ${left.pending} (trace gives both the old and the new answer from this apply's start on) until the next apply archives it`
      : left.archive !== undefined
        ? `it is archived as ${left.archive.path}`
        : 'it is archived';
  const file =
    left.rulesFile !== undefined
      ? `; ${left.rulesFile} still holds the previous rules (a boot would load those) until the next apply writes it`
      : '';
  return new TnatError(
    'E_UNFINISHED',
    `the new ruleset is active in the kernel, but the apply did not finish (${step}: ${cause}); ${recorded}${file}: fix the cause and run traceable-nat apply again`,
    { cause: error },
  );
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

/**
 * What the newest archive's ruleset, which the rules file still is, says: its bindings, its
 * merge template (iptables), and the claim that the kernel holds it (see
 * ApplyOptions.kernelCheck). The bindings come from the archive's binding index when it names
 * these archive bytes (a /16: some 20 ms, where parsing the text takes 150 ms), else from
 * the text; the template and our part from one parse of the text.
 */
function readActive(
  newest: StoredArchive,
  text: string,
  firewall: Config['firewall'],
  cacheKey: PlanCacheKey | undefined,
): {
  previous: PreviousAssignments | undefined;
  template: MergeTemplate | undefined;
  claim: KernelClaim;
  render: IptablesNat | undefined;
  /** The template and chains came from the plan cache. */
  cached: boolean;
} {
  const { sha256 } = newest;
  const { bindings, blockSize } = activeBindings(
    indexedBindings(firewall.archiveDir, newest.entry, sha256)?.rows?.(),
    text,
  );
  // The mapping's stability input is the same columns (it reads only the first ports).
  const previous: PreviousAssignments | undefined =
    bindings.count > 0 ? { blockSize, bindings } : undefined;
  if (firewall.backend !== 'iptables') {
    const claim = { sha256, text, nat: undefined, bindings };
    return { previous, template: undefined, claim, render: undefined, cached: false };
  }
  // iptables: the plan cache, or one parse, gives the merge template and our part as the
  // file holds it.
  const cached =
    cacheKey && readPlanCache(planCacheFile(firewall.stateFile), cacheKey, text, bindings);
  const { template, ours } = cached ?? prepareMergeAndExtract(text, firewall.rulesFile);
  const header = newest.header ?? text;
  return {
    previous,
    template,
    claim: { sha256, text, nat: ours, bindings },
    render: cached
      ? rendersLikeThis(header)
        ? cached.render
        : undefined
      : renderToReuse(header, ours, bindings),
    cached: cached !== undefined,
  };
}

/** Whether the archive's header (`headerText`) says this renderer wrote its rules. */
function rendersLikeThis(headerText: string): boolean {
  return parseArchiveHeader(headerText)?.settings.render === renderFormat();
}

/**
 * Our chains as a rules file holds them, as a render to take what did not change from: only
 * when the archive's header (`headerText`, the archive's start) says this renderer wrote them
 * (see renderFormat), and they are one tree in our order (see layoutOfRulesFile), rendered
 * from `bindings`.
 */
export function renderToReuse(
  headerText: string,
  ours: ExtractedNat,
  bindings: Bindings,
): IptablesNat | undefined {
  if (!rendersLikeThis(headerText)) return undefined;
  const layout = layoutOfRulesFile(ours, bindings);
  return layout && { chains: ours.chains, jump: ours.jump ?? '', layout };
}

/**
 * An archive's bindings, one per client, and the block size most of its bindings have: from
 * its binding index's rows when there are any, else from its text.
 */
function activeBindings(
  indexed: BindingRows | undefined,
  text: string,
): { bindings: Bindings; blockSize: number } {
  if (indexed === undefined) {
    const read = readAssignments(text);
    return { bindings: bindingsOf(read.assignments), blockSize: read.blockSize };
  }
  return {
    bindings: clientBindings(indexed),
    // Over every binding, as readAssignments counts them.
    blockSize: mostCommonBlockSize(indexed.firstPort, indexed.lastPort, indexed.client.length),
  };
}

function reasonFor(force: boolean, hasPrevious: boolean, anchorMismatch: string | undefined) {
  if (anchorMismatch !== undefined) return `forced over an anchor mismatch: ${anchorMismatch}`;
  if (force) return 'forced';
  return hasPrevious ? 'changed' : 'first';
}

/**
 * A newest archive from a later second than now (the clock was stepped back, or a file was
 * copied in) would have the next archive named after it, and make trace place every switch
 * from now on at that future moment. Refuse until the clock or the directory is put right.
 */
function assertNotInFuture(dir: string, newest: ArchiveName | undefined, nowMs: number): void {
  if (newest === undefined) return;
  const now = Math.floor(nowMs / 1000);
  if (newest.activatedAt <= now) return;
  throw new TnatError(
    'E_ARCHIVE',
    `${join(dir, newest.name)} is dated ${new Date(newest.activatedAt * 1000).toISOString()} by its name, later than this machine's clock (${new Date(nowMs).toISOString()}): the clock was stepped back or the file was copied in; nothing was applied: check the clock (timedatectl), and if it is right, move that file out of the archive directory and run traceable-nat check`,
  );
}

/**
 * Whether the rules file's bytes are the newest archive's ruleset, known from the anchored
 * head's digest of it (see ArchiveHead.body) without decompressing the archive.
 */
export function rulesFileIsBody(
  head: ArchiveHead | undefined,
  newest: StoredArchive,
  bytes: Buffer | undefined,
): boolean {
  if (bytes === undefined || head?.body === undefined) return false;
  if (head.name !== newest.entry.name || head.sha256 !== newest.sha256) return false;
  return sha256(bytes) === head.body;
}

/** The original script left rules.v4 a symlink into its archive; we always replace it by a file. */
function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function writeRulesTemporary(path: string, text: string | Uint8Array): string {
  try {
    return writeTemporaryBeside(path, text, RULES_FILE_MODE);
  } catch (error) {
    throw new TnatError(
      'E_WRITE',
      `${path} cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'}): make its directory writable for root or change firewall.rulesFile; nothing was applied`,
      { cause: error },
    );
  }
}
