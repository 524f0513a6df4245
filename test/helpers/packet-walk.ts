/**
 * Sends a packet through the `*nat` table of rules text the way the kernel walks POSTROUTING:
 * rules in order, jumps into user chains, RETURN back out, the first SNAT/MASQUERADE/ACCEPT
 * decides. It parses the text on its own (not with the code under test) and refuses options it
 * does not understand, so a rule it cannot judge fails the test instead of being skipped.
 */
import { parseIpv4, prefixMask } from '../../src/net/ipv4.js';

export interface Packet {
  readonly src: string;
  readonly proto: 'tcp' | 'udp' | 'icmp';
  /** The outgoing interface. */
  readonly out: string;
}

interface WalkTrace {
  /** Chains entered, POSTROUTING first. */
  readonly chainPath: string[];
  /** Rules looked at, across all chains. */
  readonly rulesPassed: number;
}

export type WalkResult =
  | ({ readonly action: 'SNAT'; readonly toSource: string } & WalkTrace)
  | ({ readonly action: 'ACCEPT' | 'MASQUERADE' } & WalkTrace);

interface Rule {
  readonly network?: number;
  readonly mask?: number;
  readonly out?: string;
  readonly proto?: string;
  readonly target: string;
  readonly toSource?: string;
}

export interface NatTable {
  readonly chains: ReadonlyMap<string, readonly Rule[]>;
  readonly policies: ReadonlyMap<string, string>;
}

function words(line: string): string[] {
  return line.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
}

function parseRule(line: string): { chain: string; rule: Rule } {
  const [command, chain, ...rest] = words(line);
  if (command !== '-A' || chain === undefined) throw new Error(`packet walk: not a rule: ${line}`);
  const rule: { -readonly [K in keyof Rule]: Rule[K] } = { target: '' };
  for (let i = 0; i < rest.length; i += 2) {
    const option = rest[i];
    const value = rest[i + 1] ?? '';
    if (option === '-s') {
      const [address = '', prefix = '32'] = value.split('/');
      const parsed = parseIpv4(address);
      if (parsed === undefined) throw new Error(`packet walk: bad -s in ${line}`);
      rule.mask = prefixMask(Number(prefix));
      rule.network = (parsed & rule.mask) >>> 0;
    } else if (option === '-o') rule.out = value;
    else if (option === '-p') rule.proto = value;
    else if (option === '-j') rule.target = value;
    else if (option === '--to-source') rule.toSource = value;
    else if (option === '-m' && value === 'comment') i += 2;
    else throw new Error(`packet walk does not understand ${String(option)} in: ${line}`);
  }
  if (rule.target === '') throw new Error(`packet walk: rule without -j: ${line}`);
  return { chain, rule };
}

/** Reads the `*nat` table of rules text (iptables-save / rules.v4 format). */
export function loadNatTable(text: string): NatTable {
  const chains = new Map<string, Rule[]>();
  const policies = new Map<string, string>();
  let inNat = false;
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (line === '*nat') inNat = true;
    else if (line === 'COMMIT') inNat = false;
    else if (inNat && line.startsWith(':')) {
      const [name = '', policy = ''] = line.slice(1).split(' ');
      chains.set(name, []);
      policies.set(name, policy);
    } else if (inNat && line.startsWith('-')) {
      const { chain, rule } = parseRule(line);
      const rules = chains.get(chain);
      if (!rules) throw new Error(`packet walk: rule for undeclared chain ${chain}`);
      rules.push(rule);
    }
  }
  return { chains, policies };
}

function matches(rule: Rule, source: number, packet: Packet): boolean {
  if (rule.mask !== undefined && (source & rule.mask) >>> 0 !== rule.network) return false;
  if (rule.proto !== undefined && rule.proto !== packet.proto) return false;
  if (rule.out !== undefined) {
    const wildcard = rule.out.endsWith('+');
    const name = wildcard ? rule.out.slice(0, -1) : rule.out;
    if (wildcard ? !packet.out.startsWith(name) : packet.out !== name) return false;
  }
  return true;
}

/** Where a new connection's first packet ends up in POSTROUTING of the nat table. */
export function walkIptables(rules: string | NatTable, packet: Packet): WalkResult {
  const table = typeof rules === 'string' ? loadNatTable(rules) : rules;
  const source = parseIpv4(packet.src);
  if (source === undefined) throw new Error(`packet walk: bad source ${packet.src}`);
  const chainPath = ['POSTROUTING'];
  const stack: { chain: string; next: number }[] = [];
  let chain = 'POSTROUTING';
  let next = 0;
  let rulesPassed = 0;
  const policy = (): WalkResult => {
    const action = table.policies.get('POSTROUTING');
    if (action !== 'ACCEPT') throw new Error(`packet walk: POSTROUTING policy ${String(action)}`);
    return { action, chainPath, rulesPassed };
  };
  for (;;) {
    const list = table.chains.get(chain);
    if (!list) throw new Error(`packet walk: jump to missing chain ${chain}`);
    const rule = list[next];
    if (rule === undefined || (matches(rule, source, packet) && rule.target === 'RETURN')) {
      if (rule) rulesPassed++;
      const back = stack.pop();
      if (!back) return policy();
      ({ chain, next } = back);
      continue;
    }
    rulesPassed++;
    next++;
    if (!matches(rule, source, packet)) continue;
    if (rule.target === 'SNAT') {
      return { action: 'SNAT', toSource: rule.toSource ?? '', chainPath, rulesPassed };
    }
    if (rule.target === 'MASQUERADE' || rule.target === 'ACCEPT') {
      return { action: rule.target, chainPath, rulesPassed };
    }
    if (stack.length > 20) throw new Error('packet walk: chains nested too deep');
    stack.push({ chain, next });
    chain = rule.target;
    next = 0;
    chainPath.push(chain);
  }
}
