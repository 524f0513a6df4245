/**
 * Jumps that a boot's load refuses and `iptables-restore --test` passes: a `-j`/`-g` to a name
 * that is neither a chain of the table nor a target extension. iptables-nft 1.8.9 takes such a
 * name for a chain, and only the commit learns that the chain does not exist ("Chain 'X' does
 * not exist"): the whole file is refused, and the machine boots with no firewall at all.
 * Pure: which names are targets comes in as `known` (src/system/xtables.ts).
 */
import { parseRulesFile } from './rules-file-parse.js';

/** Chains every table has (iptables(8), TABLES), which a rules file need not declare. */
const BUILT_IN_CHAINS: Readonly<Record<string, readonly string[]>> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
  security: ['INPUT', 'FORWARD', 'OUTPUT'],
};

/** `-N name` or `--new-chain name`, a chain a rule line creates. */
const NEW_CHAIN = /^(?:-N|--new-chain)[ \t]+(\S+)/;

/** The verdicts iptables knows without an extension (iptables(8), TARGETS). */
const VERDICTS = new Set(['ACCEPT', 'DROP', 'RETURN', 'QUEUE']);

export interface DanglingJump {
  /** 1-based line of the rule. */
  readonly line: number;
  readonly table: string;
  readonly target: string;
}

/** Whether a target extension of this name exists for the family (a libxt_/libipt_/libip6t_ module). */
export type TargetKnown = (target: string) => boolean;

/** The rules of `text` (a rules.v4 or rules.v6 that parses) whose jump a real load refuses. */
export function danglingJumps(text: string, file: string, known: TargetKnown): DanglingJump[] {
  const parsed = parseRulesFile(text, file);
  const dangling: DanglingJump[] = [];
  for (const table of parsed.tables.values()) {
    const chains = new Set([...table.chains.keys(), ...(BUILT_IN_CHAINS[table.name] ?? [])]);
    // A restore file may also create chains with -N (iptables-restore(8) takes any command).
    for (const rule of table.rules) {
      const created = NEW_CHAIN.exec(rule.text)?.[1];
      if (created !== undefined) chains.add(created);
    }
    for (const { target, line } of table.rules) {
      if (target === undefined || chains.has(target) || VERDICTS.has(target)) continue;
      if (!known(target)) dangling.push({ line, table: table.name, target });
    }
  }
  return dangling;
}
