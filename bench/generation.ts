/**
 * Generation (discover + map + render, no apply) for a /24, a /16 and a /12 (16 /16 pools,
 * about a million clients over some thousand public addresses at 64 ports), each run in a
 * child process so its peak resident memory (VmHWM) is its own. Issue 13's targets: a /16 in
 * under 0.3 s, a /12 in under 5 s and 1 GiB, for both backends.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Cleanup } from './cleanup.js';
import { publicAddressesFor } from './layouts.js';
import { atMost, median, type Metric, type Target } from './report.js';
import { createSite, type Profile } from './site.js';

const SECTION = 'generation: discover + map + render, no apply';
const CHILD = fileURLToPath(new URL('./generation-child.js', import.meta.url));
const MIB = 1024;

interface ChildResult {
  readonly ms: number;
  readonly clients: number;
  readonly bytes: number;
  readonly peakKiB: number;
}

interface ArchiveCost {
  readonly archiveBytes: number;
  readonly archiveMs: number;
  readonly bytes: number;
}

interface Stages {
  readonly discoverMs: number;
  readonly mapMs: number;
  readonly renderMs: number;
}

interface Size {
  readonly label: string;
  readonly profiles: readonly Profile[];
  readonly clients: number;
  readonly runs: number;
  readonly timeTarget?: { readonly ms: number; readonly text: string };
  readonly memoryTarget?: { readonly mib: number; readonly text: string };
}

const SIZES: readonly Size[] = [
  { label: '/24', profiles: [{ id: 'p24', range: '10.42.0.0/24' }], clients: 253, runs: 3 },
  {
    label: '/16',
    profiles: [{ id: 'p16', range: '10.42.0.0/16' }],
    clients: 65533,
    runs: 3,
    // Issue 13: a /16 in under 0.3 s; a /12 in under 5 s and 1 GiB.
    timeTarget: { ms: 300, text: '< 300 ms' },
  },
  {
    label: '/12',
    profiles: Array.from({ length: 16 }, (_, i) => ({
      id: `p12-${i}`,
      range: `10.${32 + i}.0.0/16`,
    })),
    clients: 16 * 65533,
    runs: 3,
    timeTarget: { ms: 5000, text: '< 5 s' },
    memoryTarget: { mib: 1024, text: '< 1 GiB' },
  },
];

/** The child's one line of JSON. */
function runChild(...args: string[]): unknown {
  const output = execFileSync(process.execPath, [CHILD, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    maxBuffer: 1 << 20,
  });
  return JSON.parse(output);
}

/** Peak resident memory of a node process that does nothing: the floor for memory figures. */
export function idleNodeMiB(): number {
  return (runChild() as ChildResult).peakKiB / MIB;
}

export function measureGeneration(cleanup: Cleanup, progress: (line: string) => void): Metric[] {
  const idleMiB = idleNodeMiB();
  const metrics: Metric[] = [];
  for (const backend of ['iptables', 'nftables'] as const) {
    for (const size of SIZES) {
      const site = createSite(cleanup, `gen-${size.label.slice(1)}`);
      site.writeProfiles(size.profiles);
      site.writeConfig({ backend, publicAddresses: publicAddressesFor(size.clients) });
      const runs = Array.from(
        { length: size.runs },
        () => runChild(site.configFile) as ChildResult,
      );
      const stages = runChild(site.configFile, 'stages') as Stages;
      const archive = runChild(site.configFile, 'archive') as ArchiveCost;
      const ms = median(runs.map((run) => run.ms));
      const peakMiB = Math.max(...runs.map((run) => run.peakKiB)) / MIB;
      const first = runs[0];
      const what = `${first?.clients ?? 0} clients, ${((first?.bytes ?? 0) / 1e6).toFixed(1)} MB of rules`;
      progress(
        `generation ${backend} ${size.label}: ${ms.toFixed(0)} ms, peak RSS ${peakMiB.toFixed(0)} MiB (${what})`,
      );
      const timeTarget: Target | undefined = size.timeTarget
        ? atMost(ms, size.timeTarget.ms, size.timeTarget.text)
        : undefined;
      const memoryTarget: Target | undefined = size.memoryTarget
        ? atMost(peakMiB, size.memoryTarget.mib, size.memoryTarget.text)
        : undefined;
      const staged = stages.discoverMs + stages.mapMs + stages.renderMs;
      const times = runs.map((run) => run.ms.toFixed(0)).join(', ');
      metrics.push(
        {
          section: SECTION,
          name: `${backend} ${size.label} time`,
          value: ms,
          unit: 'ms',
          // Against the target where there is one: below 1.00x is met.
          ratio: size.timeTarget ? ms / size.timeTarget.ms : undefined,
          target: timeTarget,
          note:
            `${what}; median of ${size.runs} run(s) (${times} ms), a fresh process each` +
            (size.timeTarget ? '; ratio: to the target' : '') +
            `; on their own: discover ${stages.discoverMs.toFixed(0)} ms, ` +
            `map ${stages.mapMs.toFixed(0)} ms, render ${stages.renderMs.toFixed(0)} ms` +
            (backend === 'iptables'
              ? `; the plan adds the merge into the rules file and its canonical form of our part (src/apply/plan.ts), about ${Math.max(0, ms - staged).toFixed(0)} ms`
              : ''),
        },
        {
          section: SECTION,
          name: `${backend} ${size.label} archive on disk`,
          value: archive.archiveBytes / 1e6,
          unit: 'MB',
          baseline: { name: 'the same archive as plain text', value: archive.bytes / 1e6 },
          // Issue 15: a /16 archive costs at most 2 MB on disk.
          target:
            size.label === '/16' ? atMost(archive.archiveBytes / 1e6, 2, '<= 2 MB') : undefined,
          note: `gzip as the store writes it, in ${archive.archiveMs.toFixed(0)} ms`,
        },
        {
          section: SECTION,
          name: `${backend} ${size.label} peak memory`,
          value: peakMiB,
          unit: 'MiB',
          baseline: { name: 'idle node, our modules loaded', value: idleMiB },
          target: memoryTarget,
          note: size.memoryTarget
            ? `the largest of ${size.runs} run(s); ${(peakMiB / size.memoryTarget.mib).toFixed(2)}x the target`
            : undefined,
        },
      );
    }
  }
  return metrics;
}
