/**
 * A user-space nat table that answers the iptables commands the apply runs (iptables-save,
 * iptables -S, iptables-restore --noflush [--test], conntrack), so the apply's decisions can be
 * tested without root. It parses each restore payload the way iptables-restore does where our
 * payloads depend on it, and refuses what the kernel refuses: a rule in or a jump to a chain
 * that does not exist, a delete of a rule that is not there, a chain removed while something
 * jumps to it, input without COMMIT. A refused payload changes nothing; the real-kernel tests
 * (test/kernel, test/faults) stay the judges of the real tools.
 */
import { CommandError } from '../../src/errors.js';
import type { RunOptions, RunResult } from '../../src/netfilter/runner.js';
import { FakeRunner } from './fake-runner.js';

const BUILTIN = ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'];
/** Targets that are no chain (enough for our rules and eduVPN's). */
const TARGETS = new Set(['ACCEPT', 'DROP', 'RETURN', 'SNAT', 'MASQUERADE', 'NETMAP', 'DNAT']);

type Chains = Map<string, string[]>;

function copy(chains: Chains): Chains {
  return new Map([...chains].map(([name, rules]) => [name, [...rules]]));
}

function targetOf(spec: string): string | undefined {
  return / -[jg] (\S+)/.exec(` ${spec}`)?.[1];
}

export class FakeNatTable extends FakeRunner {
  private chains: Chains = new Map(BUILTIN.map((name) => [name, []]));

  /** Loads text as `iptables-restore --noflush` would (for a test's setup or hand edits). */
  load(payload: string): void {
    this.chains = this.restored(payload);
  }

  /** What `iptables-save -t nat` prints, without its comment lines. */
  save(): string {
    const lines = ['*nat'];
    for (const name of this.chains.keys())
      lines.push(`:${name} ${BUILTIN.includes(name) ? 'ACCEPT' : '-'} [0:0]`);
    for (const [name, rules] of this.chains)
      for (const rule of rules) lines.push(`-A ${name} ${rule}`);
    lines.push('COMMIT', '');
    return lines.join('\n');
  }

  protected answer(command: string, args: readonly string[], options: RunOptions): RunResult {
    const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', exitCode: 0 });
    if (command === 'iptables-save') return ok(this.save());
    if (command === 'conntrack') return ok();
    if (command === 'iptables' && args.includes('-S')) {
      const name = args[args.indexOf('-S') + 1] ?? '';
      const rules = this.chains.get(name);
      if (rules === undefined) {
        const failed = {
          stdout: '',
          stderr: 'iptables: No chain/target/match by that name.\n',
          exitCode: 1,
        };
        if (options.allowFailure) return failed;
        throw new CommandError(failed.stderr.trim(), { command: [command, ...args], ...failed });
      }
      const head = BUILTIN.includes(name) ? `-P ${name} ACCEPT` : `-N ${name}`;
      return ok([head, ...rules.map((rule) => `-A ${name} ${rule}`), ''].join('\n'));
    }
    if (command === 'iptables-restore' && args.includes('--noflush')) {
      const next = this.restored(options.input ?? '');
      if (!args.includes('--test')) this.chains = next;
      return ok();
    }
    throw new Error(`the fake nat table does not know: ${[command, ...args].join(' ')}`);
  }

  /** The table after `payload`, or a CommandError naming the line, as iptables-restore fails. */
  private restored(payload: string): Chains {
    const chains = copy(this.chains);
    const fail = (line: number, why: string): never => {
      const stderr = `iptables-restore: line ${line} failed: ${why}\n`;
      throw new CommandError(stderr.trim(), {
        command: ['iptables-restore', '--noflush'],
        exitCode: 1,
        stderr,
      });
    };
    let open = false;
    let committed = false;
    const lines = payload.split('\n');
    for (const [index, text] of lines.entries()) {
      const number = index + 1;
      if (text === '' || text.startsWith('#')) continue;
      if (text === '*nat') {
        open = true;
        continue;
      }
      if (!open) fail(number, 'not in a table');
      if (text === 'COMMIT') {
        open = false;
        committed = true;
        continue;
      }
      const declared = /^:(\S+) \S+/.exec(text);
      if (declared?.[1]) {
        // --noflush: declaring a chain creates it, or flushes it when it exists.
        chains.set(declared[1], []);
        continue;
      }
      const [verb = '', name = '', ...rest] = text.split(' ');
      const rules = chains.get(name);
      if (rules === undefined) fail(number, 'No chain/target/match by that name.');
      const list = rules ?? [];
      const jumpsTo = (spec: string) => {
        const target = targetOf(spec);
        if (target !== undefined && !TARGETS.has(target) && !chains.has(target))
          fail(number, 'No chain/target/match by that name.');
      };
      if (verb === '-A') {
        const spec = rest.join(' ');
        jumpsTo(spec);
        list.push(spec);
      } else if (verb === '-I') {
        const position = Number(rest[0]);
        const spec = rest.slice(1).join(' ');
        jumpsTo(spec);
        list.splice(position - 1, 0, spec);
      } else if (verb === '-D') {
        const at = list.indexOf(rest.join(' '));
        if (at < 0) fail(number, 'Bad rule (does a matching rule exist in that chain?).');
        list.splice(at, 1);
      } else if (verb === '-X') {
        if (BUILTIN.includes(name)) fail(number, 'Invalid argument');
        if (list.length > 0) fail(number, 'Directory not empty');
        for (const other of chains.values())
          if (other.some((spec) => targetOf(spec) === name)) fail(number, 'Too many links');
        chains.delete(name);
      } else {
        fail(number, `unknown command ${verb}`);
      }
    }
    if (open || !committed) fail(lines.length, 'COMMIT expected');
    return chains;
  }
}
