/**
 * A reader for iptables-save / rules.v4 text that keeps every line as written (with its own
 * line ending), so a merge can put back everything that is not ours byte for byte. It accepts
 * what iptables-restore accepts line by line (iptables-restore(8): tables opened by `*name` and
 * closed by `COMMIT`, `:chain policy [packets:bytes]`, rule lines, `#` comments, blank lines).
 */
import { TnatError } from '../errors.js';

export type LineKind = 'blank' | 'comment' | 'table' | 'chain' | 'rule' | 'commit';

export interface RulesLine {
  /** The line without its line ending. */
  readonly text: string;
  /** `\n`, `\r\n` or '' for a last line without one. */
  readonly eol: string;
  readonly kind: LineKind;
  /** The table the line belongs to (table, chain, rule and commit lines). */
  readonly table?: string | undefined;
  /** The declared chain, or the chain a rule line works on (`-A CHAIN`). */
  readonly chain?: string | undefined;
  /** A rule's `-j`/`-g` target. */
  readonly target?: string | undefined;
}

export interface ParsedChain {
  readonly name: string;
  readonly policy: string;
  readonly counters: string | undefined;
  readonly line: number;
}

export interface ParsedRule {
  readonly chain: string | undefined;
  /** The rule as written, without a leading `[packets:bytes]` counter. */
  readonly text: string;
  /** The `-j`/`-g` target. */
  readonly target: string | undefined;
  readonly line: number;
}

export interface ParsedTable {
  readonly name: string;
  /** 1-based line numbers of `*name` and of its `COMMIT`. */
  readonly line: number;
  readonly commitLine: number;
  readonly chains: ReadonlyMap<string, ParsedChain>;
  readonly rules: readonly ParsedRule[];
}

export interface RulesFile {
  readonly lines: readonly RulesLine[];
  readonly tables: ReadonlyMap<string, ParsedTable>;
  /** The line ending of the first line that has one; `\n` for a file without any. */
  readonly lineEnding: string;
}

const RULE_COMMANDS = new Set([
  '-A',
  '--append',
  '-I',
  '--insert',
  '-D',
  '--delete',
  '-R',
  '--replace',
]);
const COUNTERS = /^\[\d+:\d+\] /;
const CHAIN_LINE = /^:(\S+) (\S+)(?: (\[\d+:\d+\]))?$/;

/** Splits a rule into words the way iptables-restore does: double quotes group, `\"` escapes. */
export function splitRuleWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charAt(i);
    if (char === '\\' && text[i + 1] === '"') {
      word += '"';
      inWord = true;
      i++;
    } else if (char === '"') {
      quoted = !quoted;
      inWord = true;
    } else if ((char === ' ' || char === '\t') && !quoted) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += char;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

function targetOf(words: readonly string[]): string | undefined {
  for (let i = 0; i < words.length - 1; i++) {
    const word = words[i];
    if (word === '-j' || word === '--jump' || word === '-g' || word === '--goto')
      return words[i + 1];
  }
  return undefined;
}

function splitLines(text: string): { text: string; eol: string }[] {
  const lines: { text: string; eol: string }[] = [];
  let start = 0;
  while (start < text.length) {
    const newline = text.indexOf('\n', start);
    if (newline < 0) {
      lines.push({ text: text.slice(start), eol: '' });
      break;
    }
    const crlf = newline > start && text.charCodeAt(newline - 1) === 13;
    lines.push({
      text: text.slice(start, crlf ? newline - 1 : newline),
      eol: crlf ? '\r\n' : '\n',
    });
    start = newline + 1;
  }
  return lines;
}

interface OpenTable {
  name: string;
  line: number;
  chains: Map<string, ParsedChain>;
  rules: ParsedRule[];
}

/** Parses rules.v4 text; throws TnatError('E_RULES_FILE') naming `file` and the line. */
export function parseRulesFile(text: string, file: string): RulesFile {
  function fail(line: number, sentence: string): never {
    throw new TnatError('E_RULES_FILE', sentence, { where: { file, line } });
  }
  if (text.startsWith('\ufeff')) {
    fail(
      1,
      'the file starts with a byte order mark (saved as "UTF-8 with BOM"), which iptables-restore does not read: save it without one',
    );
  }
  const lines: RulesLine[] = [];
  const tables = new Map<string, ParsedTable>();
  let open: OpenTable | undefined;
  const rawLines = splitLines(text);
  for (let index = 0; index < rawLines.length; index++) {
    const { text: line, eol } = rawLines[index] as { text: string; eol: string };
    const number = index + 1;
    if (line.trim() === '') {
      lines.push({ text: line, eol, kind: 'blank' });
    } else if (line.startsWith('#')) {
      lines.push({ text: line, eol, kind: 'comment' });
    } else if (line.startsWith('*')) {
      if (open) {
        fail(
          number,
          `table ${open.name} (line ${open.line}) has no COMMIT before the next table starts: add COMMIT at its end`,
        );
      }
      const name = line.slice(1).trim();
      if (!/^[a-z]+$/.test(name))
        fail(number, `"${line}" is not a table name: expected a line like *nat`);
      if (tables.has(name)) fail(number, `table ${name} appears twice: merge both into one`);
      open = { name, line: number, chains: new Map(), rules: [] };
      lines.push({ text: line, eol, kind: 'table', table: name });
    } else if (line === 'COMMIT') {
      if (!open) fail(number, 'COMMIT outside a table: remove it or add the *table line it closes');
      tables.set(open.name, { ...open, commitLine: number });
      lines.push({ text: line, eol, kind: 'commit', table: open.name });
      open = undefined;
    } else if (line.startsWith(':')) {
      const match = CHAIN_LINE.exec(line);
      if (!match) fail(number, `"${line}" is not a chain line: expected :NAME POLICY [0:0]`);
      if (!open) fail(number, 'a chain line outside a table: add the *table line before it');
      const [, name = '', policy = '', counters] = match;
      open.chains.set(name, { name, policy, counters, line: number });
      lines.push({ text: line, eol, kind: 'chain', table: open.name, chain: name });
    } else if (line.startsWith('-') || COUNTERS.test(line)) {
      if (!open) fail(number, 'a rule line outside a table: add the *table line before it');
      const rule = line.replace(COUNTERS, '');
      // Most rules hold no quotes; plain splitting keeps a /12's two million lines quick.
      const words = rule.includes('"') ? splitRuleWords(rule) : rule.split(/[ \t]+/);
      const chain = RULE_COMMANDS.has(words[0] ?? '') ? words[1] : undefined;
      const target = targetOf(words);
      open.rules.push({ chain, text: rule, target, line: number });
      lines.push({ text: line, eol, kind: 'rule', table: open.name, chain, target });
    } else {
      fail(
        number,
        `"${line.slice(0, 60)}" is neither a comment, table, chain, rule nor COMMIT line: fix or remove it (iptables-save writes only those)`,
      );
    }
  }
  if (open) {
    fail(open.line, `table ${open.name} has no COMMIT: add COMMIT at its end`);
  }
  const lineEnding = lines.find((line) => line.eol !== '')?.eol ?? '\n';
  return { lines, tables, lineEnding };
}
