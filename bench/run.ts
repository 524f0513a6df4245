/**
 * `npm run bench`: builds its own network namespaces, measures, prints a table and writes
 * bench/results.json. Sections can be chosen: `node dist/bench/run.js connect apply`.
 * Needs root (network namespaces) and the iptables, nftables and conntrack tools.
 */
import { fileURLToPath } from 'node:url';
import { archiveOfSlash16, measureApplyTimes } from './apply-time.js';
import { Cleanup } from './cleanup.js';
import { measureConnectCosts } from './connect-cost.js';
import type { ConnectSettings } from './connect-rounds.js';
import { measureConnectCosts6 } from './connect6-cost.js';
import { measureDaemon } from './daemon.js';
import { idleNodeMiB, measureGeneration } from './generation.js';
import { formatTable, writeResults, type Metric } from './report.js';
import { measureTrace } from './trace.js';

const RESULTS_FILE = fileURLToPath(new URL('../../bench/results.json', import.meta.url));

function progress(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** What sections hand on to later ones. */
interface Context {
  readonly cleanup: Cleanup;
  /** A real /16 archive written by the apply section, the trace's template. */
  iptablesArchive?: string | undefined;
}

type Section = (context: Context) => Promise<Metric[]>;

/**
 * Issue 13's independent measurement: 1 500 connects per client and destination, in rounds
 * of 50 interleaved with the reference. At most some 5 100: each address counts up its own
 * range of local ports for all destinations.
 */
const CONNECT_SETTINGS: ConnectSettings = {
  connectsPerAddress: 1500,
  roundSize: 50,
  layoutTimeMs: 25_000,
  destinations: ['fresh', 'closed', 'same'],
};

const SECTIONS: Readonly<Record<string, Section>> = {
  generation: ({ cleanup }) => Promise.resolve(measureGeneration(cleanup, progress)),
  connect: ({ cleanup }) => measureConnectCosts(cleanup, CONNECT_SETTINGS, progress),
  connect6: ({ cleanup }) => measureConnectCosts6(cleanup, CONNECT_SETTINGS, progress),
  apply: async (context) => {
    const findings = await measureApplyTimes(context.cleanup, progress);
    context.iptablesArchive = findings.iptablesArchive;
    return findings.metrics;
  },
  daemon: ({ cleanup }) => measureDaemon(cleanup, idleNodeMiB(), progress),
  trace: async (context) => {
    const template = context.iptablesArchive ?? (await archiveOfSlash16(context.cleanup));
    return measureTrace(context.cleanup, template, progress);
  },
};

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (it creates network namespaces)\n');
    return 2;
  }
  const chosen = process.argv.slice(2);
  const unknown = chosen.filter((name) => !(name in SECTIONS));
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown section ${unknown.join(', ')}; sections: ${Object.keys(SECTIONS).join(', ')}\n`,
    );
    return 2;
  }
  const names = chosen.length > 0 ? chosen : Object.keys(SECTIONS);
  const context: Context = { cleanup: new Cleanup() };
  context.cleanup.exitOnSignals();
  const started = Date.now();
  const metrics: Metric[] = [];
  try {
    for (const name of names) {
      const section = SECTIONS[name];
      if (!section) continue;
      progress(`${name} ...`);
      metrics.push(...(await section(context)));
    }
  } finally {
    context.cleanup.runAll();
  }
  const seconds = (Date.now() - started) / 1000;
  process.stdout.write(formatTable(metrics));
  writeResults(RESULTS_FILE, metrics, {
    date: new Date().toISOString(),
    durationSeconds: Math.round(seconds),
    sections: names,
  });
  process.stdout.write(
    `\n${metrics.length} metrics in ${seconds.toFixed(0)} s; written to ${RESULTS_FILE}\n`,
  );
  return 0;
}

process.exitCode = await main();
