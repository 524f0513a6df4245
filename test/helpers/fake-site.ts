/**
 * An iptables site for apply tests without root: a sandbox with two public addresses, a fake
 * nat table and a stepping clock, and an apply as the CLI makes one (its own configuration,
 * nothing trusted), the clock stepped 2 s after each so that no two archives share a second.
 */
import { applyRuleset, type ApplyOptions, type ApplyResult } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { archiveDirOf } from '../../src/cli/trace-sources.js';
import { traceArchives, type TraceResult } from '../../src/trace/trace.js';
import { FakeNatTable } from './fake-nat-table.js';
import { createSandbox, type Sandbox } from './sandbox.js';
import { SteppingClock } from './stepping-clock.js';

export interface FakeSite<Table extends FakeNatTable = FakeNatTable> {
  readonly sandbox: Sandbox;
  readonly table: Table;
  readonly clock: SteppingClock;
  readonly apply: (options?: ApplyOptions) => Promise<ApplyResult>;
  /** A trace of the site's archives as `traceable-nat trace` reads them, `now` in unix seconds. */
  readonly trace: (query: {
    at: number;
    port: number;
    address: number;
    now: number;
  }) => TraceResult;
}

export function createFakeSite<Table extends FakeNatTable = FakeNatTable>(
  table: Table,
  startMs = Date.parse('2026-12-07T12:00:00Z'),
): FakeSite<Table> {
  const sandbox = createSandbox('iptables');
  sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] } });
  const clock = new SteppingClock(startMs);
  return {
    sandbox,
    table,
    clock,
    apply: async (options) => {
      try {
        return await applyRuleset(
          loadConfig(sandbox.configFile),
          { runner: table, clock, discover },
          options,
        );
      } finally {
        clock.ms += 2000;
      }
    },
    trace: (query) => {
      const config = loadConfig(sandbox.configFile);
      return traceArchives([archiveDirOf(sandbox.archiveDir, config, query.now * 1000)], query);
    },
  };
}
