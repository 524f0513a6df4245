/**
 * What to send to `iptables-restore --noflush` so the kernel holds exactly our desired chains:
 * only the chains whose rules differ are declared (with --noflush, declaring a chain flushes
 * it) and refilled; our chains that are no longer wanted are flushed and deleted; the jump from
 * POSTROUTING is put first in the same transaction, because inserting it in every payload would
 * duplicate it on every apply. Pure: kernel state in, payload text out.
 */
import { ROOT_CHAIN, isOurChain, type IptablesNat } from '../render/iptables.js';
import { diffChains } from '../render/rules-file.js';

export interface KernelNat {
  /** Our chains as the kernel holds them (iptables-save form). */
  readonly chains: ReadonlyMap<string, readonly string[]>;
  /** Every POSTROUTING rule that jumps to our root chain, as `-A POSTROUTING ...` lines. */
  readonly jumps: readonly string[];
  /** Whether the first of those comes before every other SNAT/MASQUERADE rule of POSTROUTING. */
  readonly jumpFirst: boolean;
}

/**
 * Our part of `iptables-save -t nat` output. A /16 dumps some 150 000 lines, so this is one
 * scan over the `*nat` table that looks only at our chain declarations, our rules and
 * POSTROUTING, instead of a general parse.
 */
export function readKernelNat(saveText: string): KernelNat {
  const chains = new Map<string, string[]>();
  const jumps: string[] = [];
  let natRuleSeen = false;
  let jumpFirst = false;
  const natStart = saveText.indexOf('*nat\n');
  if (natStart < 0) return { chains, jumps, jumpFirst };
  const commit = saveText.indexOf('\nCOMMIT', natStart);
  const natText = saveText.slice(natStart, commit < 0 ? saveText.length : commit);
  for (const line of natText.split('\n')) {
    if (line.startsWith(`:${ROOT_CHAIN}`)) {
      const name = line.slice(1, line.indexOf(' '));
      if (isOurChain(name)) chains.set(name, []);
    } else if (line.startsWith(`-A ${ROOT_CHAIN}`)) {
      const name = line.slice(3, line.indexOf(' ', 3));
      if (isOurChain(name)) chains.get(name)?.push(line);
    } else if (line.startsWith('-A POSTROUTING ')) {
      const target = / -j (\S+)/.exec(line)?.[1];
      if (target === ROOT_CHAIN) {
        if (jumps.length === 0) jumpFirst = !natRuleSeen;
        jumps.push(line);
      } else if (target === 'SNAT' || target === 'MASQUERADE') {
        natRuleSeen = true;
      }
    }
  }
  return { chains, jumps, jumpFirst };
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

export function buildIptablesPayload(kernel: KernelNat, desired: IptablesNat): IptablesPayload {
  const diff = diffChains(kernel.chains, desired.chains);
  const rewritten = [...diff.added, ...diff.changed];
  const jumpRight =
    kernel.jumps.length === 1 && kernel.jumps[0] === desired.jump && kernel.jumpFirst;
  if (rewritten.length === 0 && diff.removed.length === 0 && jumpRight) {
    return { payload: undefined, rewritten, removed: diff.removed, jumpRepaired: false };
  }
  const lines = ['*nat'];
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
  if (kernel.chains.size === 0 && kernel.jumps.length === 0) return undefined;
  const names = [...kernel.chains.keys()];
  return [
    '*nat',
    ...names.map((name) => `:${name} - [0:0]`),
    ...kernel.jumps.map((jump) => `-D POSTROUTING ${specOf(jump)}`),
    ...names.map((name) => `-X ${name}`),
    'COMMIT',
    '',
  ].join('\n');
}
