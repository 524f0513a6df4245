/**
 * What an apply finds before it decides (the read half of src/apply/apply.ts): the eduVPN
 * pools, the archives and their anchor, the rules files, and what is known of the ruleset the
 * kernel should hold, read once, under the lock. Nothing here writes, except that a pending
 * archive an interrupted apply left is resolved first (archived or discarded), so that
 * "the newest archive" means the same thing to everything after.
 */
import { lstatSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import {
  anchorProblem,
  readDirState,
  updateDirState,
  type ArchiveHead,
  type DirState,
} from '../archive/anchor.js';
import { archiveBody, parseArchiveHeader, sha256 } from '../archive/header.js';
import { clientBindings, type BindingRows } from '../archive/binding-columns.js';
import type { ArchiveName } from '../archive/names.js';
import {
  indexedBindings,
  listArchives,
  newestArchive,
  type StoredArchive,
} from '../archive/store.js';
import type { Discovery } from '../eduvpn/pool.js';
import { isTnatError, TnatError } from '../errors.js';
import { bindingsOf, mostCommonBlockSize, type Bindings } from '../mapping/bindings.js';
import type { PreviousAssignments } from '../mapping/types.js';
import { layoutOfRulesFile, renderFormat, type IptablesNat } from '../render/iptables.js';
import { readAssignments } from '../render/read-rules.js';
import {
  prepareMergeAndExtract,
  type ExtractedNat,
  type MergeTemplate,
} from '../render/rules-file.js';
import { identityOf, sameIdentity, type FileIdentity } from '../system/file-identity.js';
import type { KernelClaim } from './drivers.js';
import type { ApplyDeps, TrustedPlan } from './apply.js';
import { clientsByProtocolOf, resolvePendingArchives, type PendingResolution } from './pending.js';
import type { RulesetPlan } from './plan.js';
import { planCacheFile, readPlanCache, type PlanCacheKey } from './plan-cache.js';

/** What the newest archive's ruleset says, while the rules file is still that ruleset. */
export interface ActiveRuleset {
  readonly previous: PreviousAssignments | undefined;
  readonly template: MergeTemplate | undefined;
  /** That the kernel holds it (see ApplyOptions.kernelCheck). */
  readonly claim: KernelClaim;
  readonly render: IptablesNat | undefined;
  /** The template and chains came from the plan cache. */
  readonly cached: boolean;
}

export interface ApplySnapshot {
  readonly discovery: Discovery;
  /** Pending archives an interrupted apply left, now resolved. */
  readonly recovered: readonly PendingResolution[];
  /** The newest archive of any backend, and its SHA-256 (the hash chain's last link). */
  readonly latest: StoredArchive | undefined;
  readonly latestSha: string | undefined;
  readonly anchor: DirState;
  /** Why the anchored head does not name the newest archive, if it does not. */
  readonly anchorMismatch: string | undefined;
  /** The newest archive of this backend: the ruleset taken to be active. */
  readonly newest: StoredArchive | undefined;
  /** The rules file's identity, taken before its read (a write after it changes it). */
  readonly identity: FileIdentity | undefined;
  readonly currentText: string | undefined;
  /** iptables: rules.v6 (nftables keeps both families in one file). */
  readonly currentText6: string | undefined;
  /** The newest archive's ruleset text, when known. */
  readonly archived: string | undefined;
  /** What the plan cache is keyed by, while the rules file is the anchored newest archive's. */
  readonly cacheKey: PlanCacheKey | undefined;
  /** ApplyOptions.trusted's plan, when the rules files and the newest archive are still its. */
  readonly trusted: RulesetPlan | undefined;
  /** The newest archive's ruleset, when the rules file is it and no plan is trusted. */
  readonly active: ActiveRuleset | undefined;
}

/**
 * Reads what the apply decides on. `claim` is ApplyOptions.trusted; without `force`, an anchor
 * that does not name the newest archive stops the apply here (E_ARCHIVE).
 */
export async function readSnapshot(
  config: Config,
  deps: ApplyDeps,
  claim: TrustedPlan | undefined,
  force: boolean,
): Promise<ApplySnapshot> {
  const { firewall } = config;
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
  const anchor = headOnPending(
    firewall,
    readDirState(firewall.stateFile, firewall.archiveDir),
    latest,
    latestSha,
  );
  const anchorMismatch = anchorProblem(
    anchor,
    latest && latestSha !== undefined ? { name: latest.entry.name, sha256: latestSha } : undefined,
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
  return {
    discovery,
    recovered,
    latest,
    latestSha,
    anchor,
    anchorMismatch,
    newest,
    identity,
    currentText,
    currentText6,
    archived,
    cacheKey,
    trusted,
    active,
  };
}

/**
 * The state with the newest archive as its head, when only the pending hash vouched for it: an
 * apply committed it but could not write the head (a full disk; a kill in between). Written
 * now, before this apply writes a pending hash of its own over the one that vouches for it, and
 * the next failed apply leaves every later one refusing the directory (E_ARCHIVE).
 */
function headOnPending(
  firewall: Config['firewall'],
  anchor: DirState,
  latest: StoredArchive | undefined,
  latestSha: string | undefined,
): DirState {
  const { head, pending } = anchor;
  if (latest === undefined || latestSha === undefined || pending?.sha256 !== latestSha) {
    return anchor;
  }
  if (head?.name === latest.entry.name && head.sha256 === latestSha) return anchor;
  const header = parseArchiveHeader(latest.header ?? latest.text);
  const promoted: DirState = {
    ...anchor,
    head: {
      name: latest.entry.name,
      sha256: latestSha,
      activatedAt: latest.entry.activatedAt,
      clients: header?.clients ?? 0,
      clientsByProtocol: clientsByProtocolOf(header?.settings),
    },
    pending: undefined,
  };
  try {
    updateDirState(firewall.stateFile, firewall.archiveDir, () => promoted);
  } catch (error) {
    throw new TnatError(
      'E_WRITE',
      `${firewall.stateFile} cannot be written (${isTnatError(error) ? error.message : String(error)}), and the newest archive ${latest.entry.name} is anchored only by its pending hash there, which this apply would replace: free the space (or fix the file) and run it again; nothing was applied`,
      { cause: error },
    );
  }
  return promoted;
}

export function readRulesFile(path: string): string | undefined {
  return readRulesBytes(path)?.toString('utf8');
}

function readRulesBytes(path: string): Buffer | undefined {
  try {
    // A FIFO would block the read, and the apply with it, under the lock.
    const stat = statSync(path);
    if (!stat.isFile() && !stat.isDirectory()) {
      throw new TnatError(
        'E_RULES_FILE',
        `${path} is no regular file (a FIFO, socket or device): replace it by the rules file (or remove it)`,
      );
    }
    return readFileSync(path);
  } catch (error) {
    if (isTnatError(error)) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    const why =
      code === 'EISDIR'
        ? 'is a directory: firewall.rulesFile must name a file (or none yet)'
        : code === 'ELOOP'
          ? 'is a loop of symbolic links: replace it by the file (or remove it)'
          : code === 'EACCES' || code === 'EPERM'
            ? 'cannot be read: check its permissions (firewall.rulesFile)'
            : `cannot be read (${code ?? String(error)}): check the file (firewall.rulesFile)`;
    throw new TnatError('E_RULES_FILE', `${path} ${why}`, { cause: error });
  }
}

/**
 * iptables: rules.v6 as it is now, for nat6's stability or, without nat6, to take out what an
 * earlier nat6 left in it (nftables keeps both families in one file).
 */
export function readRulesFile6(config: Config): string | undefined {
  const { firewall } = config;
  return firewall.backend === 'iptables' ? readRulesFile(firewall.rulesFile6) : undefined;
}

/** The original script left rules.v4 a symlink into its archive; we always replace it by a file. */
export function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * What the newest archive's ruleset, which the rules file still is, says: its bindings, its
 * merge template (iptables), and the claim that the kernel holds it (see
 * ApplyOptions.kernelCheck). The bindings come from the archive's binding index when it names
 * these archive bytes (a /16: some 20 ms, where parsing the text takes 150 ms), else from
 * the text; the template and our part from the plan cache or one parse of the text.
 */
function readActive(
  newest: StoredArchive,
  text: string,
  firewall: Config['firewall'],
  cacheKey: PlanCacheKey | undefined,
): ActiveRuleset {
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
