/**
 * A user-space nftables that answers the commands the nftables apply runs (nft -f, nft -j list
 * table ip, nft -j list chains ip, nft list table ip6, conntrack), so the apply's decisions can
 * be tested without root. It parses each transaction file for the statements our payloads use
 * (src/render/nftables.ts: the whole table, the element delta, the canary chains) and applies it
 * whole or not at all, refusing what nft 1.0.6 refuses, with its stderr: a delete or flush of a
 * table, chain or element that is not there, an element added again with other data, a
 * one-port value in the interval map, a statement or rule naming a table or map that does not
 * exist, a base chain declared again with another hook, and, as a syntax error, any statement it
 * does not model. It holds tables of family `ip` only. Its JSON has the shape nft 1.0.6 prints
 * (captured in a network namespace); the real-kernel tests (test/kernel, test/faults) stay the
 * judges of nft itself.
 */
import { readFileSync } from 'node:fs';
import { CommandError } from '../../src/errors.js';
import { formatIpv4, parseIpv4 } from '../../src/net/ipv4.js';
import type { RunOptions, RunResult } from '../../src/netfilter/runner.js';
import { FakeRunner } from './fake-runner.js';
import { DEFAULT_NFT_TABLE } from '../../src/render/nftables.js';

/** Our two kinds of map: client -> address . port block (clients), client -> address (others). */
type MapKind = 'ports' | 'address';
const MAP_TYPES: Readonly<Record<MapKind, string>> = {
  ports: 'ipv4_addr : interval ipv4_addr . inet_service',
  address: 'ipv4_addr : ipv4_addr',
};
/** nft(8)'s name for the one standard priority our chain is written with. */
const NAMED_PRIORITIES: Readonly<Record<string, number>> = { srcnat: 100 };

interface Value {
  readonly address: number;
  /** The port block (maps of kind `ports`). */
  readonly ports: readonly [number, number] | undefined;
}

interface NftMap {
  readonly handle: number;
  readonly kind: MapKind;
  /** By client address, in the order the elements were added (the kernel's is a hash order). */
  readonly elements: Map<number, Value>;
}

interface Hook {
  readonly type: string;
  readonly hook: string;
  readonly priority: number;
  readonly policy: string;
}

/** `oifname "<out>" meta l4proto [!=] { tcp, udp } snat ip to ip saddr map @<map>`. */
interface Rule {
  readonly handle: number;
  readonly outInterface: string;
  readonly negated: boolean;
  readonly map: string;
}

interface Chain {
  readonly handle: number;
  /** Undefined: a chain without hook (our canaries). */
  readonly hook: Hook | undefined;
  readonly rules: Rule[];
}

interface Table {
  readonly handle: number;
  nextHandle: number;
  readonly maps: Map<string, NftMap>;
  readonly chains: Map<string, Chain>;
}

interface State {
  readonly tables: Map<string, Table>;
  nextTableHandle: number;
}

interface Line {
  readonly number: number;
  readonly text: string;
}

/** One element of a `{ ... }` list, where it stands in the file. */
interface Element {
  readonly line: Line;
  readonly column: number;
  readonly text: string;
}

/** What nft reports about one spot of the file: `<file>:<line>:<first>-<last>: Error: <why>`. */
class Refusal extends Error {
  constructor(
    readonly line: Line,
    readonly column: number,
    readonly length: number,
    why: string,
  ) {
    super(why);
  }

  /** The first place `token` stands on `line`. */
  static at(line: Line, token: string, why: string): Refusal {
    return new Refusal(line, line.text.indexOf(token) + 1, token.length, why);
  }

  /** A statement the fake does not model, reported as nft reports what it cannot parse. */
  static syntax(line: Line): Refusal {
    const word = /\S+/.exec(line.text);
    return new Refusal(
      line,
      (word?.index ?? 0) + 1,
      word?.[0].length ?? 1,
      `syntax error, unexpected ${word?.[0] ?? 'end of file'}`,
    );
  }
}

const NO_SUCH = 'No such file or directory';
/** The kernel refused the batch (userspace errors, found before it is sent, lack the prefix). */
const KERNEL = 'Could not process rule: ';

/** The lines of a file, skipping blank lines and comments. */
class Lines {
  private index = 0;

  constructor(private readonly all: readonly string[]) {}

  next(): Line | undefined {
    while (this.index < this.all.length) {
      const text = this.all[this.index++] ?? '';
      if (text.trim() !== '' && !text.trim().startsWith('#')) return { number: this.index, text };
    }
    return undefined;
  }

  /** The next line inside a block, which the end of the file leaves unclosed. */
  need(): Line {
    const line = this.next();
    if (line) return line;
    throw Refusal.syntax({ number: this.all.length, text: '' });
  }
}

/** Applies one file's statements, in order, to `state` (a copy: on a refusal it is dropped). */
class Transaction {
  private readonly lines: Lines;

  constructor(
    private readonly state: State,
    text: string,
  ) {
    this.lines = new Lines(text.split('\n'));
  }

  run(): void {
    for (let line = this.lines.next(); line; line = this.lines.next()) this.statement(line);
  }

  private statement(line: Line): void {
    const text = line.text.trim();
    const declared = /^table ip (\w+)( \{)?$/.exec(text);
    if (declared) {
      const table = this.declareTable(declared[1] ?? '');
      if (declared[2] !== undefined) this.tableBlock(table);
      return;
    }
    const [, tableVerb, tableName = ''] = /^(delete|flush) table ip (\w+)$/.exec(text) ?? [];
    if (tableVerb !== undefined) {
      const table = this.state.tables.get(tableName);
      if (!table) throw Refusal.at(line, tableName, KERNEL + NO_SUCH);
      if (tableVerb === 'delete') this.state.tables.delete(tableName);
      // `flush table` deletes the rules of every chain; chains and map elements stay.
      else for (const chain of table.chains.values()) chain.rules.length = 0;
      return;
    }
    const [, chainVerb, inTable = '', chainName = ''] =
      /^(add|delete) chain ip (\w+) (\w+)$/.exec(text) ?? [];
    if (chainVerb !== undefined) {
      const table = this.existingTable(line, inTable);
      if (chainVerb === 'add') {
        if (!table.chains.has(chainName))
          table.chains.set(chainName, { handle: table.nextHandle++, hook: undefined, rules: [] });
      } else if (!table.chains.delete(chainName)) {
        throw Refusal.at(line, chainName, KERNEL + NO_SUCH);
      }
      return;
    }
    const [, elementVerb, ofTable = '', mapName = ''] =
      /^(add|delete) element ip (\w+) (\w+) \{/.exec(text) ?? [];
    if (elementVerb !== undefined) {
      const map = this.existingTable(line, ofTable).maps.get(mapName);
      if (!map) throw Refusal.at(line, mapName, NO_SUCH);
      for (const element of this.elementList(line)) {
        if (elementVerb === 'add') addElement(map, element);
        else deleteElement(map, element);
      }
      return;
    }
    throw Refusal.syntax(line);
  }

  /** `table ip <name>`: creates the table, or leaves it as it is. */
  private declareTable(name: string): Table {
    const table = this.state.tables.get(name) ?? {
      handle: this.state.nextTableHandle++,
      nextHandle: 1,
      maps: new Map(),
      chains: new Map(),
    };
    this.state.tables.set(name, table);
    return table;
  }

  /** A table that a statement names: nft looks it up before it sends anything. */
  private existingTable(line: Line, name: string): Table {
    const table = this.state.tables.get(name);
    if (!table) throw Refusal.at(line, name, NO_SUCH);
    return table;
  }

  private tableBlock(table: Table): void {
    for (;;) {
      const line = this.lines.need();
      const text = line.text.trim();
      if (text === '}') return;
      const [, mapName] = /^map (\w+) \{$/.exec(text) ?? [];
      const [, chainName] = /^chain (\w+) \{$/.exec(text) ?? [];
      if (mapName !== undefined) this.mapBlock(table, mapName, line);
      else if (chainName !== undefined) this.chainBlock(table, chainName, line);
      else throw Refusal.syntax(line);
    }
  }

  private mapBlock(table: Table, name: string, open: Line): void {
    const typeLine = this.lines.need();
    const type = typeLine.text.trim().replace(/^type /, '');
    const kind = (Object.keys(MAP_TYPES) as MapKind[]).find((each) => MAP_TYPES[each] === type);
    if (kind === undefined) throw Refusal.syntax(typeLine);
    const existing = table.maps.get(name);
    if (existing && existing.kind !== kind) throw Refusal.at(open, name, `${KERNEL}File exists`);
    const map = existing ?? { handle: table.nextHandle++, kind, elements: new Map() };
    table.maps.set(name, map);
    let line = this.lines.need();
    if (line.text.trim().startsWith('elements = {')) {
      for (const element of this.elementList(line)) addElement(map, element);
      line = this.lines.need();
    }
    if (line.text.trim() !== '}') throw Refusal.syntax(line);
  }

  private chainBlock(table: Table, name: string, open: Line): void {
    let hook: Hook | undefined;
    const rules: Rule[] = [];
    for (;;) {
      const line = this.lines.need();
      const text = line.text.trim();
      if (text === '}') break;
      const spec =
        /^type (\w+) hook (\w+) priority (-?\d+|[a-z]+)(?: ([+-]) (\d+))?; policy (accept|drop);$/.exec(
          text,
        );
      const rule =
        /^oifname "([^"]+)" meta l4proto (!= )?\{ tcp, udp \} snat ip to ip saddr map @(\w+)$/.exec(
          text,
        );
      if (spec && hook === undefined && rules.length === 0) {
        const [, type = '', hookName = '', base = '', sign, offset = '0', policy = ''] = spec;
        const named = NAMED_PRIORITIES[base];
        const start = /\d/.test(base) ? Number(base) : named;
        if (start === undefined) throw Refusal.at(line, base, `unknown chain priority ${base}`);
        const priority = start + (sign === '-' ? -1 : 1) * Number(offset);
        hook = { type, hook: hookName, priority, policy };
      } else if (rule) {
        const [, outInterface = '', negated, map = ''] = rule;
        if (!table.maps.has(map)) throw Refusal.at(line, `@${map}`, NO_SUCH);
        rules.push({
          handle: table.nextHandle++,
          outInterface,
          negated: negated !== undefined,
          map,
        });
      } else {
        throw Refusal.syntax(line);
      }
    }
    const existing = table.chains.get(name);
    if (hook !== undefined && existing && JSON.stringify(existing.hook) !== JSON.stringify(hook))
      throw Refusal.at(open, name, `${KERNEL}Operation not supported`);
    const chain = existing ?? { handle: table.nextHandle++, hook, rules: [] };
    chain.rules.push(...rules);
    table.chains.set(name, chain);
  }

  /**
   * The elements between the `{` on `open` and the matching `}`, on that line or those after
   * it, separated by commas.
   */
  private elementList(open: Line): Element[] {
    const elements: Element[] = [];
    let line = open;
    let start = open.text.indexOf('{') + 1;
    for (;;) {
      const close = line.text.indexOf('}', start);
      const inside = line.text.slice(start, close < 0 ? undefined : close);
      let position = start;
      for (const piece of inside.split(',')) {
        const text = piece.trim();
        if (text !== '') elements.push({ line, column: position + piece.indexOf(text) + 1, text });
        position += piece.length + 1;
      }
      if (close >= 0) {
        if (line.text.slice(close + 1).trim() !== '') throw Refusal.syntax(line);
        return elements;
      }
      line = this.lines.need();
      start = 0;
    }
  }
}

function keyOf(element: Element): number {
  const key = parseIpv4(/^\S+/.exec(element.text)?.[0] ?? '');
  if (key === undefined) throw Refusal.syntax(element.line);
  return key;
}

/** A refusal at the element's key, where nft points. */
function refuseElement(element: Element, why: string): Refusal {
  return new Refusal(element.line, element.column, /^\S+/.exec(element.text)?.[0].length ?? 1, why);
}

function valueOf(map: NftMap, element: Element): Value {
  const [, address = '', first, last] =
    /^\S+ : (\S+)(?: \. (\d+)(?:-(\d+))?)?$/.exec(element.text) ?? [];
  const parsed = parseIpv4(address);
  if (parsed === undefined || (first !== undefined) !== (map.kind === 'ports'))
    throw Refusal.syntax(element.line);
  if (first === undefined) return { address: parsed, ports: undefined };
  // nft 1.0.6 takes a one-port block only written as a range (first-first).
  if (last === undefined) throw refuseElement(element, `${KERNEL}Invalid argument`);
  const ports: [number, number] = [Number(first), Number(last)];
  if (ports[1] > 65535 || ports[0] > ports[1])
    throw refuseElement(element, `${KERNEL}Invalid argument`);
  return { address: parsed, ports };
}

function addElement(map: NftMap, element: Element): void {
  const key = keyOf(element);
  const value = valueOf(map, element);
  const held = map.elements.get(key);
  // Adding an element that is there with the same value changes nothing, as in the kernel.
  if (held && JSON.stringify(held) !== JSON.stringify(value))
    throw refuseElement(element, `${KERNEL}File exists`);
  map.elements.set(key, value);
}

function deleteElement(map: NftMap, element: Element): void {
  if (!/^\S+$/.test(element.text)) throw Refusal.syntax(element.line);
  if (!map.elements.delete(keyOf(element))) throw refuseElement(element, KERNEL + NO_SUCH);
}

function valueText(value: Value): string {
  const address = formatIpv4(value.address);
  return value.ports ? `${address} . ${value.ports[0]}-${value.ports[1]}` : address;
}

function ruleText(rule: Rule): string {
  const l4proto = `meta l4proto ${rule.negated ? '!= ' : ''}{ tcp, udp }`;
  return `oifname ${JSON.stringify(rule.outInterface)} ${l4proto} snat ip to ip saddr map @${rule.map}`;
}

const METAINFO = {
  metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 },
};

function chainJson(table: string, name: string, chain: Chain) {
  const { hook } = chain;
  return {
    chain: {
      family: 'ip',
      table,
      name,
      handle: chain.handle,
      ...(hook && { type: hook.type, hook: hook.hook, prio: hook.priority, policy: hook.policy }),
    },
  };
}

function elementJson(key: number, value: Value) {
  const address = formatIpv4(value.address);
  if (!value.ports) return [formatIpv4(key), address];
  // nft prints a one-port block as the port alone.
  const [first, last] = value.ports;
  return [
    formatIpv4(key),
    { concat: [address, first === last ? first : { range: [first, last] }] },
  ];
}

function ruleJson(table: string, chain: string, rule: Rule, kind: MapKind | undefined) {
  const saddr = { payload: { protocol: 'ip', field: 'saddr' } };
  return {
    rule: {
      family: 'ip',
      table,
      chain,
      handle: rule.handle,
      expr: [
        { match: { op: '==', left: { meta: { key: 'oifname' } }, right: rule.outInterface } },
        {
          match: {
            op: rule.negated ? '!=' : '==',
            left: { meta: { key: 'l4proto' } },
            right: { set: ['tcp', 'udp'] },
          },
        },
        // nft 1.0.6 names the family only in the snat to an address and a port.
        {
          snat: {
            ...(kind === 'ports' && { family: 'ip' }),
            addr: { map: { key: saddr, data: `@${rule.map}` } },
          },
        },
      ],
    },
  };
}

/** `nft -j list table ip <name>`: the table, its maps, its chains, then their rules. */
function tableJson(name: string, table: Table): string {
  const maps = [...table.maps].map(([mapName, map]) => ({
    map: {
      family: 'ip',
      name: mapName,
      table: name,
      type: 'ipv4_addr',
      handle: map.handle,
      map: map.kind === 'ports' ? 'ipv4_addr . inet_service' : 'ipv4_addr',
      // An empty map has no `elem` at all.
      ...(map.elements.size > 0 && {
        elem: [...map.elements].map(([key, value]) => elementJson(key, value)),
      }),
    },
  }));
  const chains = [...table.chains].map(([chainName, chain]) => chainJson(name, chainName, chain));
  const rules = [...table.chains].flatMap(([chainName, chain]) =>
    chain.rules.map((rule) => ruleJson(name, chainName, rule, table.maps.get(rule.map)?.kind)),
  );
  const head = { table: { family: 'ip', name, handle: table.handle } };
  return JSON.stringify({ nftables: [METAINFO, head, ...maps, ...chains, ...rules] });
}

function failed(command: readonly string[], stderr: string): CommandError {
  const first = stderr.split('\n')[0] ?? '';
  return new CommandError(`nft exited with status 1: ${first}`, { command, exitCode: 1, stderr });
}

/** nft's report of a refused file: the spot, then that line with carets under it. */
function refusedFile(command: readonly string[], file: string, refusal: Refusal): CommandError {
  const { line, column, length } = refusal;
  const carets =
    line.text.slice(0, column - 1).replace(/[^\t]/g, ' ') + '^'.repeat(Math.max(1, length));
  const spot = `${file}:${line.number}:${column}-${column + Math.max(1, length) - 1}`;
  return failed(command, `${spot}: Error: ${refusal.message}\n${line.text}\n${carets}\n`);
}

export class FakeNftTable extends FakeRunner {
  private state: State = { tables: new Map(), nextTableHandle: 1 };
  /** Set by refuseLoads: every `nft -f` is refused with it. */
  private loadRefusal: string | undefined;
  /** The text of every file given to `nft -f`, loaded or refused, in order. */
  readonly transactions: string[] = [];

  /** Loads text as `nft -f` would (for a test's setup or hand edits); throws what nft says. */
  load(text: string): void {
    this.state = this.applied(text, ['nft', '-f', 'hand-edit.nft'], 'hand-edit.nft');
  }

  /**
   * From now on every `nft -f` is refused as the kernel refuses a batch (`Could not process
   * rule: <reason>`, at its first statement), until called with undefined; load() still loads.
   */
  refuseLoads(reason: string | undefined): void {
    this.loadRefusal = reason;
  }

  /**
   * Table ip `name` in the form renderNftTable writes it, elements in address order and
   * priorities as numbers; '' when there is no such table.
   */
  list(name = DEFAULT_NFT_TABLE): string {
    const table = this.state.tables.get(name);
    if (!table) return '';
    const lines = [`table ip ${name} {`];
    for (const [mapName, map] of table.maps) {
      lines.push(`\tmap ${mapName} {`, `\t\ttype ${MAP_TYPES[map.kind]}`);
      if (map.elements.size > 0) {
        lines.push('\t\telements = {');
        for (const [key, value] of [...map.elements].sort(([a], [b]) => a - b))
          lines.push(`\t\t\t${formatIpv4(key)} : ${valueText(value)},`);
        lines.push('\t\t}');
      }
      lines.push('\t}');
    }
    for (const [chainName, { hook, rules }] of table.chains) {
      lines.push(`\tchain ${chainName} {`);
      if (hook)
        lines.push(
          `\t\ttype ${hook.type} hook ${hook.hook} priority ${hook.priority}; policy ${hook.policy};`,
        );
      for (const rule of rules) lines.push(`\t\t${ruleText(rule)}`);
      lines.push('\t}');
    }
    lines.push('}', '');
    return lines.join('\n');
  }

  /** The names of table ip `name`'s chains ([] when there is no such table). */
  chains(name = DEFAULT_NFT_TABLE): string[] {
    return [...(this.state.tables.get(name)?.chains.keys() ?? [])];
  }

  /**
   * A map's elements in address order, client address -> value as nft writes it (empty when
   * there is no such map).
   */
  elements(map: string, name = DEFAULT_NFT_TABLE): Map<string, string> {
    const held = this.state.tables.get(name)?.maps.get(map)?.elements ?? new Map<number, Value>();
    return new Map(
      [...held]
        .sort(([a], [b]) => a - b)
        .map(([key, value]) => [formatIpv4(key), valueText(value)]),
    );
  }

  protected answer(command: string, args: readonly string[], options: RunOptions): RunResult {
    const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', exitCode: 0 });
    if (command === 'conntrack') return ok();
    const words = args.join(' ');
    if (command === 'nft' && args.length === 2 && args[0] === '-f') {
      const file = args[1] ?? '';
      const text = readFileSync(file, 'utf8');
      this.transactions.push(text);
      if (this.loadRefusal !== undefined) {
        const first = new Lines(text.split('\n')).next() ?? { number: 1, text: '' };
        const why = `${KERNEL}${this.loadRefusal}`;
        throw refusedFile([command, ...args], file, new Refusal(first, 1, first.text.length, why));
      }
      this.state = this.applied(text, [command, ...args], file);
      return ok();
    }
    if (command === 'nft' && words === '-j list chains ip') {
      const chains = [...this.state.tables].flatMap(([name, table]) =>
        [...table.chains].map(([chainName, chain]) => chainJson(name, chainName, chain)),
      );
      return ok(JSON.stringify({ nftables: [METAINFO, ...chains] }));
    }
    const [, json, family = '', name = ''] = /^(-j )?list table (\w+) (\w+)$/.exec(words) ?? [];
    // Family ip only: a table ip6 is never there.
    const table = family === 'ip' ? this.state.tables.get(name) : undefined;
    if (command === 'nft' && family !== '' && table === undefined) {
      const at = `list table ${family} `.length;
      const stderr = `Error: ${NO_SUCH}\nlist table ${family} ${name}\n${' '.repeat(at)}${'^'.repeat(name.length)}\n`;
      if (options.allowFailure) return { stdout: '', stderr, exitCode: 1 };
      throw failed([command, ...args], stderr);
    }
    if (command === 'nft' && json !== undefined && table) return ok(tableJson(name, table));
    throw new Error(`the fake nft table does not know: ${[command, ...args].join(' ')}`);
  }

  /** The state after `text` as one transaction, or the CommandError nft gives for it. */
  private applied(text: string, command: readonly string[], file: string): State {
    const next = structuredClone(this.state);
    try {
      new Transaction(next, text).run();
    } catch (error) {
      if (error instanceof Refusal) throw refusedFile(command, file, error);
      throw error;
    }
    return next;
  }
}
