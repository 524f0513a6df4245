/**
 * Our chains inside someone else's rules.v4: everything that is not ours stays byte for byte
 * (other tables, chains, rules, counters, comments, line endings); our chains, rules and the
 * POSTROUTING jump are removed and written again, so merging twice gives the same file.
 */
import { parseRulesFile } from './rules-file-parse.js';
import type { ParsedTable, RulesFile, RulesLine } from './rules-file-parse.js';
import { TnatError } from '../errors.js';
import {
  CANARY_CHAIN,
  chainsOfText,
  CHAIN_PREFIX,
  isGivenChainName,
  isOurChain,
  ROOT_CHAIN,
} from './iptables.js';
import type { IptablesNat } from './iptables.js';

export { parseRulesFile, splitRuleWords } from './rules-file-parse.js';
export type {
  LineKind,
  ParsedChain,
  ParsedRule,
  ParsedTable,
  RulesFile,
  RulesLine,
} from './rules-file-parse.js';

/** Targets that take the NAT decision in POSTROUTING; our jump must come before them. */
const NAT_TARGETS = new Set(['MASQUERADE', 'SNAT', 'NETMAP']);
const BUILTIN_NAT_CHAINS = ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'];

function isOurJump(line: RulesLine): boolean {
  return line.kind === 'rule' && line.chain === 'POSTROUTING' && line.target === ROOT_CHAIN;
}

function isOurLine(line: RulesLine): boolean {
  if (line.table !== 'nat') return false;
  if (line.kind === 'chain' || line.kind === 'rule') {
    // A kernel saved into the file (netfilter-persistent save) brings the canary along: it
    // belongs to the kernel only, so a merge drops it.
    const chain = line.chain ?? '';
    return isOurChain(chain) || chain === CANARY_CHAIN || isOurJump(line);
  }
  return false;
}

/**
 * The first line where the operator's rules use our names (undefined when none does): a nat
 * chain with our prefix that we never name so, or a rule of theirs that jumps into one of our
 * chains (our POSTROUTING jump aside). A merge takes every chain with our prefix for ours and
 * writes ours again, so it would drop the operator's chain and its rules, or leave their jump
 * pointing at a chain that is gone, and iptables-restore would refuse the whole file at the
 * next boot.
 */
function misuseOfOurNames(
  lines: readonly RulesLine[],
): { line: number; sentence: string } | undefined {
  for (const [index, line] of lines.entries()) {
    if (line.table !== 'nat') continue;
    const chain = line.chain ?? '';
    if (line.kind === 'chain' && isOurChain(chain) && !isGivenChainName(chain)) {
      return {
        line: index + 1,
        sentence: `chain ${chain} has traceable-nat's name prefix ${CHAIN_PREFIX}- but is not one of its chains, and every apply would drop it: rename it (and every -j ${chain}) to a name that does not start with ${CHAIN_PREFIX}`,
      };
    }
    const target = line.target ?? '';
    const intoOurs = isOurChain(target) || target === CANARY_CHAIN;
    if (line.kind === 'rule' && intoOurs && !isOurLine(line)) {
      return {
        line: index + 1,
        sentence: `this rule of chain ${chain} jumps to ${target}, a chain traceable-nat rewrites on every apply (its only jump is -A POSTROUTING ... -j ${ROOT_CHAIN}): remove the rule or point it at a chain of your own`,
      };
    }
  }
  return undefined;
}

function assertOursAlone(parsed: RulesFile, file: string): RulesFile {
  const misuse = misuseOfOurNames(parsed.lines);
  if (misuse !== undefined) {
    throw new TnatError('E_RULES_FILE', misuse.sentence, { where: { file, line: misuse.line } });
  }
  return parsed;
}

/** The declaration lines of our chains `names`, as the merge writes them. */
function declarationLines(names: Iterable<string>): string[] {
  return [...names].map((name) => `:${name} - [0:0]`);
}

function ourRules(ours: IptablesNat): string[] {
  return [...ours.chains.values()].flat();
}

/** Our rules as ready text, when the renderer gave it, in the file's line ending. */
function rulesText(ours: IptablesNat, lineEnding: string): string | undefined {
  if (ours.rulesText === undefined) return undefined;
  // A rule line holds no line break, so every \n of the text ends a line.
  return lineEnding === '\n' ? ours.rulesText : ours.rulesText.replaceAll('\n', lineEnding);
}

/**
 * Where our lines go in the existing `*nat` table (indexes into `lines`): declarations after
 * the last chain line; the jump where an old jump already precedes every NAT rule of
 * POSTROUTING, else right before the first of them, else after the last POSTROUTING rule; our
 * rules just before COMMIT.
 */
function placements(lines: readonly RulesLine[], start: number, commit: number) {
  let lastChain = start;
  let lastPostrouting = -1;
  let firstNatRule = -1;
  let oldJump = -1;
  for (const [i, line] of lines.entries()) {
    if (i <= start || i >= commit) continue;
    if (isOurJump(line)) {
      if (oldJump < 0) oldJump = i;
    } else if (isOurLine(line)) {
      continue;
    } else if (line.kind === 'chain') {
      lastChain = i;
    } else if (line.kind === 'rule' && line.chain === 'POSTROUTING') {
      lastPostrouting = i;
      if (firstNatRule < 0 && NAT_TARGETS.has(line.target ?? '')) firstNatRule = i;
    }
  }
  let jumpBefore: number;
  if (oldJump >= 0 && (firstNatRule < 0 || oldJump < firstNatRule)) jumpBefore = oldJump;
  else if (firstNatRule >= 0) jumpBefore = firstNatRule;
  else if (lastPostrouting >= 0) jumpBefore = lastPostrouting + 1;
  else jumpBefore = commit;
  return { declarationsAfter: lastChain, jumpBefore };
}

/** Where our lines go in a rules file, as a fill-in-the-blanks template (see prepareMerge). */
type Slot = 'declarations' | 'jump' | 'rules';

/** Our chains and jump as one canonical text: equal texts mean the same NAT ruleset. */
export function canonicalNat(nat: {
  jump: string | undefined;
  chains: ReadonlyMap<string, readonly string[]>;
}): string {
  const lines = [nat.jump ?? ''];
  for (const [name, rules] of nat.chains) lines.push(`:${name}`, ...rules);
  return lines.join('\n');
}

/** No chains and no jump: a rules file rendered with it holds nothing of ours (nat6 removed). */
export const NO_NAT: IptablesNat = { chains: new Map(), jump: '' };

export interface MergeTemplate {
  /** The rules file with `ours` filled in. */
  render(ours: IptablesNat): string;
  /** The same template as plain data (see TemplateForm). */
  readonly form: TemplateForm;
}

/**
 * A merge template as data, to be kept beside the rules file (src/apply/plan-cache.ts): the
 * file's own text, without any line of ours, cut where our declarations, our jump and our rules
 * go, in this order; and the line ending our lines get.
 */
export interface TemplateForm {
  readonly parts: readonly (string | { readonly slot: Slot })[];
  readonly lineEnding: string;
}

/**
 * Parses `current` (rules.v4 text, or undefined when there is no file) once, without our lines,
 * and returns a template that puts any version of our part in place. The template of a merged
 * file renders exactly like the template of the file it was merged from, so a caller that
 * keeps it can merge again without parsing again. Throws TnatError('E_RULES_FILE') naming
 * `file` when `current` cannot be parsed.
 */
export function prepareMerge(current: string | undefined, file: string): MergeTemplate {
  return templateOf(assertOursAlone(parseRulesFile(current ?? '', file), file));
}

/**
 * prepareMerge and extractNatPart of the same text: the template, and our part as the file
 * holds it now. Our chains are most of a big file (a /16: 130 000 lines, 190 ms to parse
 * whole), and the merge drops them anyway: one scan takes their lines out of the `*nat` table
 * as they were written (`:TNAT... - [0:0]`, `-A TNAT... `), and only the rest is parsed. A
 * rest that still holds a line of ours in another form (packet counters, `--append`) is
 * parsed whole instead, so both ways give the same template and part.
 */
export function prepareMergeAndExtract(
  current: string,
  file: string,
): { readonly template: MergeTemplate; readonly ours: ExtractedNat } {
  const split = splitOurLines(current);
  const rest = split && parseQuietly(split.rest, file);
  if (split && rest) {
    // Our jump stays in the rest, for the template to place; any other line of ours left
    // there is one the scan did not take.
    const stray = rest.lines.some((line) => isOurLine(line) && !isOurJump(line));
    const foreign =
      misuseOfOurNames(rest.lines) !== undefined ||
      [...split.chains.keys()].some((name) => !isGivenChainName(name));
    if (!stray && !foreign) {
      const { jump } = natPartOf(rest.tables.get('nat'));
      const { chains, rulesText } = split;
      return { template: templateOf(rest), ours: { chains, jump, rulesText } };
    }
  }
  const parsed = assertOursAlone(parseRulesFile(current, file), file);
  return { template: templateOf(parsed), ours: natPartOf(parsed.tables.get('nat')) };
}

/** The parse, or undefined when it fails: the full parse then names the line. */
function parseQuietly(text: string, file: string): RulesFile | undefined {
  try {
    return parseRulesFile(text, file);
  } catch {
    return undefined;
  }
}

/**
 * Our chains' declaration and rule lines, taken out of the `*nat` table of `text` (see
 * prepareMergeAndExtract): the chains in declaration order with their rules, and the text
 * without those lines. Undefined when a rule line names a chain of ours that its table never
 * declared (the full parse says what that means).
 */
function splitOurLines(
  text: string,
): { chains: Map<string, string[]>; rest: string; rulesText: string | undefined } | undefined {
  const chains = new Map<string, string[]>();
  const restParts: string[] = [];
  let restFrom = 0;
  let inNat = false;
  let start = 0;
  // Our rule lines as one run: where it starts and ends, while they still are one.
  let runStart = -1;
  let runEnd = -1;
  let oneRun = true;
  const ruleOrder: string[] = [];
  // The rule lines of one chain come together: `-A NAME ` of the last one, to know the next
  // by a comparison instead of cutting its name out (a /16: 130 000 lines).
  let lastLead: string | undefined;
  let lastRules: string[] | undefined;
  while (start < text.length) {
    const newline = text.indexOf('\n', start);
    const end = newline < 0 ? text.length : newline + 1;
    const first = text.charCodeAt(start);
    if (first === 42 /* * */) {
      inNat = text.startsWith('*nat', start) && text.slice(start + 4, end).trim() === '';
    } else if (first === 67 /* C */ && /^COMMIT\r?\n?$/.test(text.slice(start, end))) {
      inNat = false;
      lastRules = undefined;
    } else if (inNat && lastRules && lastLead && text.startsWith(lastLead, start)) {
      let lineEnd = end;
      if (text.charCodeAt(lineEnd - 1) === 10) lineEnd--;
      if (text.charCodeAt(lineEnd - 1) === 13) lineEnd--;
      lastRules.push(text.slice(start, lineEnd));
      if (start !== runEnd || lineEnd + 1 !== end) oneRun = false;
      runEnd = end;
      if (restFrom !== start) restParts.push(text.slice(restFrom, start));
      restFrom = end;
    } else if (inNat && (first === 58 /* : */ || first === 45) /* - */) {
      const ours = ourLine(text, start, end);
      if (ours !== undefined) {
        if (ours.rule === undefined) {
          // Declared again: it keeps its rules, as in the full parse.
          if (!chains.has(ours.chain)) chains.set(ours.chain, []);
          lastRules = undefined;
        } else {
          const rules = chains.get(ours.chain);
          if (rules === undefined) return undefined;
          rules.push(ours.rule);
          // One run, in the chains' order, each line ending in a bare \n.
          if (runStart < 0) runStart = start;
          else if (start !== runEnd) oneRun = false;
          if (rules.length === 1) ruleOrder.push(ours.chain);
          else if (ruleOrder.at(-1) !== ours.chain) oneRun = false;
          runEnd = end;
          if (ours.rule.length + 1 !== end - start) oneRun = false;
          lastLead = `-A ${ours.chain} `;
          lastRules = rules;
        }
        if (restFrom !== start) restParts.push(text.slice(restFrom, start));
        restFrom = end;
      }
    }
    start = end;
  }
  restParts.push(text.slice(restFrom));
  const rulesText =
    oneRun && runStart >= 0 && inDeclarationOrder(chains, ruleOrder)
      ? text.slice(runStart, runEnd)
      : undefined;
  return { chains, rest: restParts.join(''), rulesText };
}

/** Whether the chains' rules came in the order the chains were declared (`order`: as they came). */
function inDeclarationOrder(chains: ReadonlyMap<string, readonly string[]>, order: string[]) {
  let next = 0;
  for (const [name, rules] of chains) {
    if (rules.length === 0) continue;
    if (order[next] !== name) return false;
    next++;
  }
  return next === order.length;
}

/**
 * The line from `start` to `end` (its line ending included) when it is one of our chains'
 * declarations (`:NAME - [0:0]`, no rule) or rules (`-A NAME ...`, its text without the line
 * ending), as our renderer writes them; undefined for any other line.
 */
function ourLine(
  text: string,
  start: number,
  end: number,
): { chain: string; rule: string | undefined } | undefined {
  const declaration = text.charCodeAt(start) === 58;
  const nameStart = start + (declaration ? 1 : 3);
  if (!declaration && !text.startsWith('-A ', start)) return undefined;
  if (!text.startsWith(CHAIN_PREFIX, nameStart)) return undefined;
  const nameEnd = text.indexOf(' ', nameStart);
  if (nameEnd < 0 || nameEnd >= end) return undefined;
  const chain = text.slice(nameStart, nameEnd);
  if (!isOurChain(chain)) return undefined;
  let lineEnd = end;
  if (text.charCodeAt(lineEnd - 1) === 10) lineEnd--;
  if (text.charCodeAt(lineEnd - 1) === 13) lineEnd--;
  if (declaration) {
    return text.slice(nameEnd, lineEnd) === ' - [0:0]' ? { chain, rule: undefined } : undefined;
  }
  return { chain, rule: text.slice(start, lineEnd) };
}

function templateOf(parsed: RulesFile): MergeTemplate {
  const { lines, lineEnding } = parsed;
  const nat = parsed.tables.get('nat');
  const parts: (string | { readonly slot: Slot })[] = [];
  let text = '';
  const slot = (name: Slot) => {
    parts.push(text, { slot: name });
    text = '';
  };
  if (!nat) {
    for (const line of lines) text += line.text + (line.eol || lineEnding);
    for (const line of ['*nat', ...BUILTIN_NAT_CHAINS.map((name) => `:${name} ACCEPT [0:0]`)]) {
      text += line + lineEnding;
    }
    slot('declarations');
    slot('jump');
    slot('rules');
    text += 'COMMIT' + lineEnding;
  } else {
    const start = nat.line - 1;
    const commit = nat.commitLine - 1;
    const { declarationsAfter, jumpBefore } = placements(lines, start, commit);
    lines.forEach((line, i) => {
      if (i === jumpBefore) slot('jump');
      if (i === commit) slot('rules');
      if (!isOurLine(line)) text += line.text + (line.eol || lineEnding);
      if (i === declarationsAfter) slot('declarations');
    });
  }
  parts.push(text);
  return templateOfForm({ parts, lineEnding });
}

const asLines = (lines: readonly string[], lineEnding: string) =>
  lines.map((line) => line + lineEnding).join('');

/** The template `form` is the data of (see MergeTemplate.form). */
export function templateOfForm(form: TemplateForm): MergeTemplate {
  const { parts, lineEnding } = form;
  return {
    form,
    render(ours) {
      const fill: Record<Slot, () => string> = {
        declarations: () => asLines(declarationLines(ours.chains.keys()), lineEnding),
        jump: () => asLines(ours.jump === '' ? [] : [ours.jump], lineEnding),
        rules: () => rulesText(ours, lineEnding) ?? asLines(ourRules(ours), lineEnding),
      };
      // Concatenated, not joined: our rules are most of a big file and are not copied again.
      let merged = '';
      for (const part of parts) merged += typeof part === 'string' ? part : fill[part.slot]();
      return merged;
    },
  };
}

/**
 * prepareMergeAndExtract of `text`, the rules file a merge with `form` wrote, without scanning
 * it: from what that merge knew, our chains' names in order, where each one's rules start in
 * its rules text (`textStart`, the text's length last) and the jump. Everything is checked
 * against `text`: each part of the template where it must stand, our declarations and jump in
 * their slots, our rules one run of `\n` lines, and each chain's part starting and ending with
 * a rule of that chain (`-A NAME `). Undefined when any of it does not hold (the caller then
 * parses the file).
 */
export function mergeFromForm(
  text: string,
  form: TemplateForm,
  ours: { readonly names: readonly string[]; readonly textStart: Float64Array; jump: string },
): { template: MergeTemplate; ours: ExtractedNat } | undefined {
  const { names, textStart, jump } = ours;
  if (form.lineEnding !== '\n' || textStart.length !== names.length + 1) return undefined;
  const declarations = asLines(declarationLines(names), '\n');
  const jumpText = jump === '' ? '' : jump + '\n';
  const rulesLength = textStart[names.length] ?? 0;
  let at: number | undefined;
  let offset = 0;
  for (const part of form.parts) {
    let expected: string | undefined;
    if (typeof part === 'string') expected = part;
    else if (part.slot === 'declarations') expected = declarations;
    else if (part.slot === 'jump') expected = jumpText;
    else {
      if (at !== undefined) return undefined;
      at = offset;
      offset += rulesLength;
      continue;
    }
    if (text.slice(offset, offset + expected.length) !== expected) return undefined;
    offset += expected.length;
  }
  if (at === undefined || offset !== text.length) return undefined;
  if (rulesLength > 0 && (at < 1 || text.charCodeAt(at - 1) !== 10)) return undefined;
  const chains = chainsOfText(names, text, at, textStart, true);
  if (chains === undefined) return undefined;
  return {
    template: templateOfForm(form),
    ours: {
      chains,
      jump: jump === '' ? undefined : jump,
      rulesText: text.slice(at, at + rulesLength),
    },
  };
}

/**
 * Returns `current` (rules.v4 text, or undefined when there is no file) with our part replaced
 * by `ours`. Throws TnatError('E_RULES_FILE') naming `file` when `current` cannot be parsed.
 */
export function mergeIntoRulesFile(
  current: string | undefined,
  ours: IptablesNat,
  file: string,
): string {
  return prepareMerge(current, file).render(ours);
}

/** Our part of a ruleset as it stands in a rules file or in `iptables-save` output. */
export interface ExtractedNat {
  readonly chains: ReadonlyMap<string, readonly string[]>;
  /** The first POSTROUTING jump into our root chain, if any. */
  readonly jump: string | undefined;
  /**
   * Our rules as the file holds them, when they are one run of lines ending in `\n` and in
   * the order of `chains` (as our merge writes them): a slice of the file's text.
   */
  readonly rulesText?: string | undefined;
}

/** Our chains (declaration order) and their rules, without packet counters. */
export function extractNatPart(text: string, file = '<rules>'): ExtractedNat {
  return natPartOf(parseRulesFile(text, file).tables.get('nat'));
}

function natPartOf(nat: ParsedTable | undefined): ExtractedNat {
  const chains = new Map<string, string[]>();
  let jump: string | undefined;
  if (!nat) return { chains, jump };
  for (const name of nat.chains.keys()) if (isOurChain(name)) chains.set(name, []);
  for (const rule of nat.rules) {
    const chain = rule.chain ?? '';
    if (isOurChain(chain)) {
      const rules = chains.get(chain) ?? [];
      chains.set(chain, rules);
      rules.push(rule.text);
    } else if (chain === 'POSTROUTING' && rule.target === ROOT_CHAIN) {
      jump ??= rule.text;
    }
  }
  return { chains, jump };
}

export interface ChainDiff {
  /** In both, with different rules (after's order). */
  readonly changed: readonly string[];
  /** Only in before (before's order). */
  readonly removed: readonly string[];
  /** Only in after (after's order). */
  readonly added: readonly string[];
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((rule, i) => rule === b[i]));
}

/** Which chains differ between two rulesets, so an apply can rewrite only those. */
export function diffChains(
  before: ReadonlyMap<string, readonly string[]>,
  after: ReadonlyMap<string, readonly string[]>,
): ChainDiff {
  const changed: string[] = [];
  const added: string[] = [];
  for (const [name, rules] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (!sameRules(old, rules)) changed.push(name);
  }
  const removed = [...before.keys()].filter((name) => !after.has(name));
  return { changed, removed, added };
}
