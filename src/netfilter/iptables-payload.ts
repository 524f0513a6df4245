/**
 * What to send to `iptables-restore --noflush` so the kernel holds exactly our desired chains:
 * only the chains whose rules differ are declared (with --noflush, declaring a chain flushes
 * it) and refilled; our chains that are no longer wanted are flushed and deleted; the jump from
 * POSTROUTING is put first in the same transaction, because inserting it in every payload would
 * duplicate it on every apply. Pure: kernel state in, payload text out.
 */
import { TnatError } from '../errors.js';
import {
  CANARY_CHAIN,
  CHAIN_PREFIX,
  ROOT_CHAIN,
  canaryOf,
  canaryRule,
  isGivenChainName,
  isOurChain,
  type IptablesNat,
} from '../render/iptables.js';
import { diffChains, type ChainDiff } from '../render/rules-file.js';

export interface KernelNat {
  /** Our chains as the kernel holds them (iptables-save form). */
  readonly chains: ReadonlyMap<string, readonly string[]>;
  /** Every POSTROUTING rule that jumps to our root chain, as `-A POSTROUTING ...` lines. */
  readonly jumps: readonly string[];
  /** Whether the first of those comes before every other SNAT/MASQUERADE rule of POSTROUTING. */
  readonly jumpFirst: boolean;
  /** The archive digest the canary chain names (render/iptables.ts), when it is there. */
  readonly canary?: string | undefined;
  /** Whether the canary chain exists (with any rules): a payload that sets it must not add it. */
  readonly canaryChain?: boolean | undefined;
}

/** POSTROUTING's jumps into our root chain, from its rules in iptables-save form, in order. */
export function readJumps(lines: Iterable<string>): Pick<KernelNat, 'jumps' | 'jumpFirst'> {
  const jumps: string[] = [];
  let natRuleSeen = false;
  let jumpFirst = false;
  for (const line of lines) {
    if (!line.startsWith('-A POSTROUTING ')) continue;
    const target = / -j (\S+)/.exec(line)?.[1];
    if (target === ROOT_CHAIN) {
      if (jumps.length === 0) jumpFirst = !natRuleSeen;
      jumps.push(line);
    } else if (target === 'SNAT' || target === 'MASQUERADE') {
      natRuleSeen = true;
    }
  }
  return { jumps, jumpFirst };
}

/**
 * Our part of `iptables-save -t nat` output. A /16 dumps some 150 000 lines, so this is one
 * scan over the `*nat` table that looks only at our chain declarations, our rules and
 * POSTROUTING, instead of a general parse.
 */
export function readKernelNat(saveText: string): KernelNat {
  const chains = new Map<string, string[]>();
  const natStart = saveText.indexOf('*nat\n');
  if (natStart < 0) return { chains, jumps: [], jumpFirst: false };
  const commit = saveText.indexOf('\nCOMMIT', natStart);
  const natText = saveText.slice(natStart, commit < 0 ? saveText.length : commit);
  const postrouting: string[] = [];
  let canary: string | undefined;
  let canaryChain = false;
  for (const line of natText.split('\n')) {
    if (line.startsWith(`:${ROOT_CHAIN}`)) {
      const name = line.slice(1, line.indexOf(' '));
      if (isOurChain(name)) chains.set(assertGivenName(name), []);
      else if (name === CANARY_CHAIN) canaryChain = true;
    } else if (line.startsWith(`-A ${ROOT_CHAIN}`)) {
      const name = line.slice(3, line.indexOf(' ', 3));
      if (isOurChain(name)) chains.get(name)?.push(line);
      else if (name === CANARY_CHAIN) canary ??= canaryOf(line);
    } else if (line.startsWith('-A POSTROUTING ')) {
      postrouting.push(line);
    }
  }
  return { chains, ...readJumps(postrouting), canary, canaryChain };
}

/**
 * A chain with our prefix that we never name so is the operator's: the payload would delete it
 * as one of ours that is no longer wanted (and fail, "Too many links", while a rule of theirs
 * jumps to it). Refused before anything is loaded.
 */
function assertGivenName(name: string): string {
  if (isGivenChainName(name)) return name;
  throw new TnatError(
    'E_RULES_FILE',
    `the kernel's nat table holds a chain ${name}, which has traceable-nat's name prefix ${CHAIN_PREFIX}- but is not one of its chains, and an apply would delete it: rename it (iptables -t nat -E ${name} NEWNAME, and in your rules file) to a name that does not start with ${CHAIN_PREFIX}; nothing was changed`,
  );
}

/**
 * The canary as `iptables -S <canary chain>` lists it: undefined when the chain is missing or
 * names no digest (`-N`, then `-A` lines).
 */
export function readCanary(listing: string): string | undefined {
  for (const line of listing.split('\n')) {
    const canary = canaryOf(line);
    if (canary !== undefined) return canary;
  }
  return undefined;
}

/** The payload lines that make the canary name `sha256` (declaring the chain flushes it). */
function canaryLines(sha256: string): string[] {
  return [`:${CANARY_CHAIN} - [0:0]`, canaryRule(sha256)];
}

export interface IptablesPayload {
  /** The restore input; undefined when the kernel already holds exactly what is desired. */
  readonly payload: string | undefined;
  readonly rewritten: readonly string[];
  readonly removed: readonly string[];
  readonly jumpRepaired: boolean;
}

function specOf(jumpLine: string): string {
  return jumpLine.replace(/^-A POSTROUTING /, '');
}

/**
 * The payload that brings `kernel` to `desired`; with `canary`, the canary names that digest
 * afterwards (set in the same transaction, or alone when nothing else differs).
 */
export function buildIptablesPayload(
  kernel: KernelNat,
  desired: IptablesNat,
  canary?: string,
  // A /16's chains compare in some 15 ms: a caller that compared these two already passes it.
  diff: ChainDiff = diffChains(kernel.chains, desired.chains),
): IptablesPayload {
  const rewritten = [...diff.added, ...diff.changed];
  const jumpRight =
    kernel.jumps.length === 1 && kernel.jumps[0] === desired.jump && kernel.jumpFirst;
  const canaryRight = canary === undefined || kernel.canary === canary;
  if (rewritten.length === 0 && diff.removed.length === 0 && jumpRight) {
    return {
      payload: canaryRight ? undefined : ['*nat', ...canaryLines(canary), 'COMMIT', ''].join('\n'),
      rewritten,
      removed: diff.removed,
      jumpRepaired: false,
    };
  }
  const lines = ['*nat'];
  if (!canaryRight) lines.push(...canaryLines(canary));
  // Declarations first: a chain must exist before a rule jumps to it.
  for (const name of [...rewritten, ...diff.removed]) lines.push(`:${name} - [0:0]`);
  if (!jumpRight) {
    for (const jump of kernel.jumps) lines.push(`-D POSTROUTING ${specOf(jump)}`);
    lines.push(`-I POSTROUTING 1 ${specOf(desired.jump)}`);
  }
  for (const name of rewritten) lines.push(...(desired.chains.get(name) ?? []));
  for (const name of diff.removed) lines.push(`-X ${name}`);
  lines.push('COMMIT', '');
  return { payload: lines.join('\n'), rewritten, removed: diff.removed, jumpRepaired: !jumpRight };
}

/**
 * Takes all of ours out of the kernel: the jumps from POSTROUTING, then our chains, flushed
 * (declared) and deleted. Undefined when the kernel holds nothing of ours.
 */
export function buildRemovalPayload(kernel: KernelNat): string | undefined {
  if (kernel.chains.size === 0 && kernel.jumps.length === 0 && kernel.canaryChain !== true)
    return undefined;
  const names = [...kernel.chains.keys(), ...(kernel.canaryChain === true ? [CANARY_CHAIN] : [])];
  return [
    '*nat',
    ...names.map((name) => `:${name} - [0:0]`),
    ...kernel.jumps.map((jump) => `-D POSTROUTING ${specOf(jump)}`),
    ...names.map((name) => `-X ${name}`),
    'COMMIT',
    '',
  ].join('\n');
}
