/**
 * The nat tables of both families for the iptables backend with nat6: the ip6tables commands
 * are answered by a second user-space table (test/helpers/fake-nat-table.ts), which parses and
 * refuses IPv6 payloads as the IPv4 one does. Every command of either family is in `calls`.
 */
import type { RunOptions, RunResult } from '../../src/netfilter/runner.js';
import { FakeNatTable } from './fake-nat-table.js';

export class FakeDualNatTable extends FakeNatTable {
  /** The ip6tables nat table. */
  readonly ipv6 = new FakeNatTable();

  override run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult> {
    if (!command.startsWith('ip6tables')) return super.run(command, args, options);
    this.calls.push([command, ...args].join(' '));
    return this.ipv6.run(command.replace('ip6tables', 'iptables'), args, options);
  }
}
