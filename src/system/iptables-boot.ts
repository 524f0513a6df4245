/**
 * What netfilter-persistent's boot load of rules.v4 / rules.v6 would refuse that
 * `iptables-restore --test` passes: a jump to a chain the file does not declare
 * (src/render/jump-targets.ts). The whole file is refused then, and the machine boots without
 * any firewall. `check` and the daemon's start say it in the same sentence.
 */
import { readRulesFile } from '../apply/snapshot.js';
import { CHAIN_PREFIX } from '../render/iptables.js';
import { danglingJumps } from '../render/jump-targets.js';
import type { BootProblem } from './nft-boot.js';
import { targetKnownIn, xtablesDirs } from './xtables.js';

/**
 * The sentence for the jumps of `text` that a boot's load refuses; undefined when there is
 * none, or when this machine has no iptables extension directory to tell targets from chains.
 */
export function danglingJumpSentence(text: string, file: string, family: 4 | 6) {
  const known = targetKnownIn(xtablesDirs(), family);
  if (known === undefined) return undefined;
  const [first, ...more] = danglingJumps(text, file, known);
  if (first === undefined) return undefined;
  const others =
    more.length === 0 ? '' : ` (and ${more.length} more rule${more.length === 1 ? '' : 's'})`;
  return `${file} would not load at boot: line ${first.line} jumps to ${first.target}, which is neither a chain of its *${first.table} table nor a target iptables knows${others}; the test passes it, the load refuses the whole file (Chain '${first.target}' does not exist) and the machine would boot without a firewall: declare the chain (:${first.target} - [0:0]) or correct the rule, then run traceable-nat apply`;
}

/**
 * The same for the daemon's start, over the rules files as they are on disk: our own lines
 * (every chain of ours is named TNAT...) are blanked first, so that a /16's 130 000 rules are
 * not parsed for the operator's few; the line numbers stay. Missing files are no problem here;
 * a FIFO or an unreadable file is refused as the apply refuses it (readRulesFile).
 */
export function iptablesBootProblem(
  files: readonly { readonly file: string; readonly family: 4 | 6 }[],
): BootProblem | undefined {
  for (const { file, family } of files) {
    const text = readRulesFile(file);
    if (text === undefined) continue;
    const theirs = text
      .split('\n')
      .map((line) => (line.includes(CHAIN_PREFIX) ? '' : line))
      .join('\n');
    const sentence = danglingJumpSentence(theirs, file, family);
    if (sentence !== undefined) return { fails: true, text: sentence };
  }
  return undefined;
}
