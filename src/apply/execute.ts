/**
 * Runs the steps decideApply chose (src/apply/decide.ts), in its order, and holds what they
 * leave between them: the pending archive, the temporary rules files, what the kernel load
 * changed. Its `cleanUp` keeps the apply's promise on every exit: what a failure before the
 * kernel load leaves is removed; a pending archive whose ruleset the kernel took stays (the
 * next apply archives it, as after a kill), and a step that fails after the load says so
 * (E_UNFINISHED) instead of "nothing was applied".
 */
import { renameSync, unlinkSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { webcrypto } from 'node:crypto';
import type { Config } from '../config.js';
import { updateDirState } from '../archive/anchor.js';
import { FORCED_OVER_MISMATCH, parseArchiveHeader } from '../archive/header.js';
import { prepareArchive, prepareArchiveAsync, type PendingArchive } from '../archive/store.js';
import type { VpnProtocol } from '../eduvpn/pool.js';
import { isTnatError, PartialLoadError, TnatError } from '../errors.js';
import { walkBindings, type Bindings } from '../mapping/bindings.js';
import { assignmentColumns } from '../mapping/columns.js';
import { formatClientRange, type Map6 } from '../mapping/map6.js';
import { formatCidr6, formatIpv6 } from '../net/ipv6.js';
import { forgetClients } from '../netfilter/conntrack.js';
import { forgetSources6 } from '../netfilter/conntrack6.js';
import { translations6 as readTranslations6 } from '../render/fingerprint6.js';
import { renderFormat } from '../render/iptables.js';
import { fsyncDirectory, writeTemporaryBeside } from '../system/atomic-write.js';
import type { BootTime } from '../system/clock.js';
import { identityOf, sameIdentity, type FileIdentity } from '../system/file-identity.js';
import { TOOL_VERSION } from '../version.js';
import type { ApplyDeps } from './apply.js';
import type { ApplyStep } from './decide.js';
import type { BackendDriver, KernelChange, KernelView } from './drivers.js';
import { clientsByProtocolOf } from './pending.js';
import type { RulesetPlan } from './plan.js';
import type { ApplySnapshot } from './snapshot.js';

const RULES_FILE_MODE = 0o640;

/** What the steps work from: the apply's inputs and what it found and planned. */
export interface StepContext {
  readonly config: Config;
  readonly deps: ApplyDeps;
  readonly force: boolean;
  /** When the apply started (the clock's milliseconds), and the boot clock then. */
  readonly started: number;
  readonly bootAtStart: BootTime | undefined;
  readonly snapshot: ApplySnapshot;
  readonly plan: RulesetPlan;
  /** The kernel as read (or trusted) before the change. */
  readonly view: KernelView;
  readonly driver: BackendDriver;
  readonly protocols: Record<VpnProtocol, number>;
  /** iptables' rules.v6 when this apply manages it (nat6, or our part to take out). */
  readonly file6: { readonly file: string; readonly fileText: string } | undefined;
}

export class ApplyExecution {
  /** Set once the kernel took the new ruleset (see cleanUp and run). */
  kernelChanged = false;
  changes = { changed: [] as number[], kept: [] as number[] };
  changed6: string[] = [];
  kernel: KernelChange | undefined;
  archive: { path: string; sha256: string } | undefined;
  conntrackDeleted = 0;
  /** The rules file's identity right after this apply renamed it into place. */
  renamedIdentity: FileIdentity | undefined;
  /** The SHA-256 of the committed archive's ruleset text (the head's `body`). */
  committedBody: string | undefined;
  readonly warnings: string[];

  private pending: PendingArchive | undefined;
  private preparing: Promise<PendingArchive> | undefined;
  private pending6: PendingArchive | undefined;
  private rulesTemporary: string | undefined;
  private rulesTemporary6: string | undefined;
  private bodyDigest: Promise<ArrayBuffer> | undefined;
  private fileBytes: Uint8Array | undefined;
  /** Two activations never share an archive second (see assertNotInFuture). */
  private readonly earliest: number;

  constructor(private readonly context: StepContext) {
    const { latest } = context.snapshot;
    this.earliest = ((latest?.entry.activatedAt ?? 0) + 1) * 1000;
    this.warnings = context.snapshot.recovered
      .filter((resolution) => resolution.outcome === 'archived')
      .map(
        (resolution) =>
          `an interrupted apply (started ${resolution.applyStarted}) had loaded its ruleset; it is now archived as ${resolution.archive ?? '?'}, and trace treats the time between as uncertain`,
      );
  }

  /** Runs `steps` in order, calling `lap` after each. */
  async run(steps: readonly ApplyStep[], lap: (step: ApplyStep) => void): Promise<void> {
    for (const step of steps) {
      try {
        await this.step(step);
      } catch (error) {
        if (error instanceof PartialLoadError) this.kernelChanged = true;
        if (!this.kernelChanged) throw error;
        throw unfinished(error, step, {
          pending:
            this.pending === undefined && this.pending6 === undefined
              ? undefined
              : this.context.config.firewall.archiveDir,
          archive: this.archive,
          rulesFile:
            this.rulesTemporary === undefined ? undefined : this.context.config.firewall.rulesFile,
        });
      }
      lap(step);
    }
  }

  /** On every exit: removes what a failed or finished apply must not leave behind. */
  async cleanUp(): Promise<void> {
    if (this.preparing) (await this.preparing.catch(() => undefined))?.discard();
    // A pending archive whose ruleset the kernel holds stays: the next apply archives it, as
    // after a kill (resolvePendingArchives), and trace treats the time until then as uncertain.
    if (!this.kernelChanged) {
      this.pending?.discard();
      this.pending6?.discard();
    }
    if (this.rulesTemporary !== undefined) unlinkSync(this.rulesTemporary);
    if (this.rulesTemporary6 !== undefined) unlinkSync(this.rulesTemporary6);
  }

  warn(error: unknown, then: string): void {
    this.warnings.push(`${isTnatError(error) ? error.message : String(error)}${then}`);
  }

  private async step(step: ApplyStep): Promise<void> {
    switch (step) {
      case 'prepare-archive':
        this.prepareArchive();
        break;
      case 'write-rules-temporary':
        this.rulesTemporary = writeRulesTemporary(
          this.context.config.firewall.rulesFile,
          this.planBytes(),
        );
        break;
      case 'write-rules6-temporary': {
        const { file6 } = this.context;
        if (file6) this.rulesTemporary6 = writeRulesTemporary(file6.file, file6.fileText);
        break;
      }
      case 'anchor-pending':
        await this.anchorPending();
        break;
      case 'wait-archive-second':
        await this.waitArchiveSecond();
        break;
      case 'load-kernel':
        await this.loadKernel();
        break;
      case 'set-canary':
        await this.setCanary();
        break;
      case 'commit-archive':
        await this.commitArchive();
        break;
      case 'anchor-newest':
        this.anchorNewest();
        break;
      case 'rename-rules':
        this.renameRules();
        break;
      case 'rename-rules6':
        this.renameRules6();
        break;
      case 'forget-conntrack':
        await this.forgetConntrack();
        break;
      case 'after-write':
        await this.afterWrite();
        break;
    }
  }

  /** The rules file's bytes, encoded once for the file and for its archive (a /16: 13 MB). */
  private planBytes(): Uint8Array {
    return (this.fileBytes ??= Buffer.from(this.context.plan.fileText, 'utf8'));
  }

  /** The canary names the archive of what the kernel holds after this apply. */
  private canary(): string | undefined {
    return this.pending?.sha256 ?? this.context.snapshot.newest?.sha256;
  }

  private prepareArchive(): void {
    const { config, plan, snapshot, force, started } = this.context;
    const { firewall } = config;
    const { latest, latestSha, newest, anchorMismatch } = snapshot;
    const header = {
      tool: `traceable-nat ${TOOL_VERSION}`,
      backend: firewall.backend,
      applyStarted: new Date(started).toISOString(),
      reason: reasonFor(force, newest !== undefined, anchorMismatch),
      clients: plan.map.clientCount,
      settings: { ...settingsOf(config, plan), clientsByProtocol: this.context.protocols },
      clock: this.context.bootAtStart,
    };
    // The IPv6 half first: the rules.v4 header records its hash, so the chain vouches for it.
    if (plan.ipv6?.iptables)
      this.pending6 = prepareArchive(
        firewall.archiveDir,
        { ...header, clients: plan.ipv6.map.clientCount, family: 'ipv6' },
        plan.ipv6.fileText,
        undefined,
        firewall.compressArchives,
        'ip6tables',
      );
    // A /16's gzip runs in libuv's thread pool while this thread writes the rules file;
    // anchor-pending waits for it, before the kernel is touched.
    this.preparing = prepareArchiveAsync(
      firewall.archiveDir,
      { ...header, ipv6: this.pending6 && { sha256: this.pending6.sha256 } },
      { text: plan.fileText, bytes: this.planBytes() },
      latest && latestSha !== undefined
        ? { name: latest.entry.name, sha256: latestSha }
        : undefined,
      firewall.compressArchives,
    );
    // Awaited by anchor-pending, or discarded by cleanUp when this thread fails first.
    this.preparing.catch(() => undefined);
    // In the thread pool too: for the head, so a later apply can trust the rules file by it.
    this.bodyDigest = webcrypto.subtle.digest('SHA-256', this.planBytes());
    this.bodyDigest.catch(() => undefined);
  }

  private async anchorPending(): Promise<void> {
    if (!this.preparing) return;
    this.pending = await this.preparing;
    this.preparing = undefined;
    // Anchored before the kernel changes, so the archive is ours whatever happens next.
    const { sha256 } = this.pending;
    const { firewall } = this.context.config;
    const applyStarted = new Date(this.context.started).toISOString();
    updateDirState(firewall.stateFile, firewall.archiveDir, (state) => ({
      ...state,
      pending: { sha256, applyStarted },
    }));
  }

  private async waitArchiveSecond(): Promise<void> {
    const { clock } = this.context.deps;
    if (clock.now() < this.earliest) await clock.sleep(this.earliest - clock.now());
  }

  private async loadKernel(): Promise<void> {
    const { view, plan, driver, force } = this.context;
    // The kernel's bindings before the change: whose connections to forget.
    this.changes = bindingChanges(view.bindings(), plan);
    this.changed6 = view.right6 ? [] : translationChanges(view, plan);
    const current = this.pending;
    const recordChild =
      current &&
      ((pid: number) => {
        current.recordChild(pid);
      });
    this.kernel = await driver.apply(plan, force, recordChild, this.canary());
    this.kernelChanged = true;
  }

  private async setCanary(): Promise<void> {
    // Rules right but no canary, or another one (after a boot, or from an older version):
    // set it alone, so the next apply reads two small chains instead of the whole table.
    const canary = this.canary();
    if (canary !== undefined)
      await this.context.driver.apply(this.context.plan, false, undefined, canary);
  }

  private async commitArchive(): Promise<void> {
    const { plan, config, deps, protocols } = this.context;
    const { firewall } = config;
    const activatedAt = Math.max(Math.floor(deps.clock.now() / 1000), this.earliest / 1000);
    // The rules.v4 half first: its header vouches for the IPv6 half, so an IPv6 half left
    // pending by a failure between the two is named at its second by the next apply
    // (resolvePendingArchives); the other way round, an IPv6 half would be named at a second
    // whose rules.v4 comes later under another. With no client of ours, the body's bindings
    // may be the original script's rules, so they are read from the text.
    this.archive = this.pending?.commit(
      activatedAt,
      plan.map.clientCount > 0 ? () => assignmentColumns(plan.map) : undefined,
    );
    this.pending = undefined;
    this.pending6?.commit(activatedAt);
    this.pending6 = undefined;
    if (!this.archive) return;
    const committed = this.archive;
    const body = await this.bodyDigest?.then((digest) => Buffer.from(digest).toString('hex'));
    this.committedBody = body;
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
      this.warn(error, '; the archive stays anchored by its pending hash');
    }
  }

  private anchorNewest(): void {
    // Never anchored (an upgrade from a version without the state file): the active
    // ruleset is the newest archive, so anchor it now rather than at the next change.
    const { latest, latestSha } = this.context.snapshot;
    const { firewall } = this.context.config;
    if (latest === undefined || latestSha === undefined) return;
    try {
      const header = parseArchiveHeader(latest.text);
      updateDirState(firewall.stateFile, firewall.archiveDir, (state) => ({
        ...state,
        head: {
          name: latest.entry.name,
          sha256: latestSha,
          activatedAt: latest.entry.activatedAt,
          clients: header?.clients ?? this.context.plan.map.clientCount,
          clientsByProtocol: clientsByProtocolOf(header?.settings),
        },
      }));
    } catch (error) {
      this.warn(error, '');
    }
  }

  private renameRules(): void {
    const { rulesFile } = this.context.config.firewall;
    if (this.rulesTemporary === undefined) return;
    // Written while this apply ran (an operator's edit, netfilter-persistent save): the merge
    // was made from the file before it, so renaming over it would lose the edit.
    const read = this.context.snapshot.identity;
    const now = identityOf(rulesFile);
    if (read === undefined ? now !== undefined : !sameIdentity(read, now)) {
      throw new TnatError(
        'E_RULES_FILE',
        `${rulesFile} was changed while this apply ran (an edit, or netfilter-persistent save?), so it was not replaced`,
      );
    }
    renameSync(this.rulesTemporary, rulesFile);
    this.rulesTemporary = undefined;
    // Before anything else runs (firewall.afterWrite may write the file).
    this.renamedIdentity = identityOf(rulesFile);
    fsyncDirectory(dirname(rulesFile));
  }

  private renameRules6(): void {
    const { file6 } = this.context;
    if (this.rulesTemporary6 === undefined || !file6) return;
    renameSync(this.rulesTemporary6, file6.file);
    this.rulesTemporary6 = undefined;
    fsyncDirectory(dirname(file6.file));
  }

  private async forgetConntrack(): Promise<void> {
    const { runner } = this.context.deps;
    const { changed, kept } = this.changes;
    if (changed.length > 0) {
      try {
        this.conntrackDeleted = (await forgetClients(runner, changed, kept)).deleted;
      } catch (error) {
        this.warnings.push(
          `the conntrack entries of the changed clients could not be deleted (${messageOf(error)}); their open connections keep their old ports until they end`,
        );
      }
    }
    if (this.changed6.length > 0) {
      try {
        this.conntrackDeleted += (await forgetSources6(runner, this.changed6)).deleted;
      } catch (error) {
        this.warnings.push(
          `the conntrack entries of the changed IPv6 clients could not be deleted (${messageOf(error)}); their open connections keep their old translation until they end`,
        );
      }
    }
  }

  private async afterWrite(): Promise<void> {
    const { afterWrite } = this.context.config.firewall;
    if (afterWrite === null) return;
    try {
      await this.context.deps.runner.run('sh', ['-c', afterWrite]);
    } catch (error) {
      this.warnings.push(
        `firewall.afterWrite failed (${messageOf(error)}); the new ruleset is active and archived all the same`,
      );
    }
  }
}

function messageOf(error: unknown): string {
  return isTnatError(error) ? error.message : String(error);
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
    `the new ruleset is active in the kernel, but the apply did not finish (${step}: ${messageOf(error)}); ${recorded}${file}: fix the cause and run traceable-nat apply again`,
    { cause: error },
  );
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
    ...(plan.ipv6 && { nat6: settings6Of(plan.ipv6.map) }),
    // How the rules were written, for a later apply to reuse this text (see renderFormat).
    ...(plan.backend === 'iptables' && { render: renderFormat() }),
  };
}

/** What an archive header records of the IPv6 mapping (trace reads clientRanges back). */
export function settings6Of(map: Map6): Record<string, unknown> {
  return map.mode === 'prefix'
    ? {
        mode: 'prefix',
        publicPrefix: formatCidr6(map.publicPrefix),
        clients: map.clientCount,
        // Which addresses of each NETMAP range are clients, for trace (src/trace/netmap6.ts);
        // left out where so many ranges would not fit in the header trace reads.
        ...(map.clientRanges.length <= MAX_HEADER_RANGES && {
          clientRanges: map.clientRanges.map(formatClientRange),
        }),
      }
    : {
        mode: 'ports',
        publicAddresses: map.publicAddresses.map(formatIpv6),
        blockSize: map.blockSize,
        clients: map.clientCount,
      };
}

/** At most this many client ranges in an archive header (some 40 bytes each). */
const MAX_HEADER_RANGES = 64;

function reasonFor(force: boolean, hasPrevious: boolean, anchorMismatch: string | undefined) {
  if (anchorMismatch !== undefined) return `${FORCED_OVER_MISMATCH}${anchorMismatch}`;
  if (force) return 'forced';
  return hasPrevious ? 'changed' : 'first';
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
