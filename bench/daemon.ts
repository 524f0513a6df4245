/**
 * The real daemon (`traceable-nat daemon`) in a namespace of its own with a /16: its resident
 * memory when idle after the first apply, and the time from a write of the portal config to
 * the log line saying the new rules are active, minus the configured settle time.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ONE_CLIENT, PUBLIC_ADDRESSES, SLASH16 } from './apply-time.js';
import { ChildLines } from './child-lines.js';
import type { Cleanup } from './cleanup.js';
import { kernelHoldsClient, kernelListing } from './kernel-state.js';
import { createLoneNamespace } from './netns.js';
import { atMost, median, type Metric } from './report.js';
import { CLI } from './shell.js';
import { createSite } from './site.js';

const SECTION = 'daemon with a /16';
const SETTLE_MS = 500;
const IDLE_MS = 3000;
/**
 * And once V8 has given back what it keeps after a peak (its memory reducer runs some 10-20 s
 * into idleness): before the periodic check (60 s) reads the kernel whole again.
 */
const SETTLED_MS = 25_000;
const CHANGES = 4;
const MIB = 1024 * 1024;

interface LogLine {
  readonly msg?: string;
  readonly durationMs?: number;
  readonly timings?: Readonly<Record<string, number>>;
  readonly error?: string;
}

function parseLine(line: string): LogLine {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return {};
  }
}

const APPLIED = 'ruleset applied';
/** An apply that found nothing to change (logged at debug level). */
const VERIFIED = 'ruleset verified';
const FAILED = 'apply failed, the active rules stay';

/**
 * Waits for the next apply after line `from` that ends with `outcome`; throws with the
 * daemon's error if it failed.
 */
async function nextApply(log: ChildLines, from: number, timeoutMs: number, outcome = APPLIED) {
  const found = await log.waitFor(
    (line) => [outcome, FAILED].includes(parseLine(line).msg ?? ''),
    timeoutMs,
    from,
  );
  const entry = parseLine(found.line);
  if (entry.msg === FAILED)
    throw new Error(`the daemon's apply failed: ${entry.error ?? found.line}`);
  return { ...found, durationMs: entry.durationMs ?? Number.NaN, timings: entry.timings ?? {} };
}

/** Each step's median over the applies (the log's `timings`), in the order of the first. */
function medianTimings(all: readonly Readonly<Record<string, number>>[]): string {
  const names = Object.keys(all[0] ?? {});
  return names
    .map((name) => `${name} ${median(all.map((timings) => timings[name] ?? 0)).toFixed(0)}`)
    .join(', ');
}

const UNIT = fileURLToPath(new URL('../../systemd/traceable-nat.service', import.meta.url));

/**
 * How the unit starts the daemon: its `Environment=` settings and node's flags from
 * `ExecStart=`, so the memory measured here is what an installed daemon uses.
 */
export function unitLaunch(unitText: string): { env: string[]; nodeFlags: string[] } {
  const values = (key: string) =>
    [...unitText.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((match) => match[1] ?? '');
  const env = values('Environment').flatMap((line) => line.split(/\s+/).filter(Boolean));
  const [, ...words] = (values('ExecStart')[0] ?? '').split(/\s+/);
  const nodeFlags = words.slice(
    0,
    words.findIndex((word) => !word.startsWith('-')),
  );
  return { env, nodeFlags };
}

/** The daemon of `configFile`, started as the unit starts it, at debug level. */
function spawnDaemon(ns: ReturnType<typeof createLoneNamespace>, configFile: string): ChildLines {
  const { env, nodeFlags } = unitLaunch(readFileSync(UNIT, 'utf8'));
  // At debug level, so an apply that changes nothing is logged too.
  return new ChildLines(
    ns.spawn([
      'env',
      ...env,
      'TRACEABLE_NAT_LOG_LEVEL=debug',
      process.execPath,
      ...nodeFlags,
      CLI,
      'daemon',
      '--config',
      configFile,
    ]),
  );
}

/** VmRSS, VmHWM (peak) and the anonymous part of VmRSS of a process, in bytes. */
function memoryOf(pid: number): { rss: number; peak: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kib('VmRSS') * 1024, peak: kib('VmHWM') * 1024, anon: kib('RssAnon') * 1024 };
}

/** Of a resident size, how much is anonymous (the heaps) and how much file pages (node itself). */
function split(memory: { rss: number; anon: number }): string {
  const anon = memory.anon / MIB;
  return `${anon.toFixed(1)} MiB anonymous, ${(memory.rss / MIB - anon).toFixed(1)} MiB file and shared`;
}

export async function measureDaemon(
  cleanup: Cleanup,
  idleNodeMiB: number,
  progress: (line: string) => void,
): Promise<Metric[]> {
  const metrics: Metric[] = [];
  for (const backend of ['iptables', 'nftables'] as const) {
    const site = createSite(cleanup, `daemon-${backend}`);
    site.writeProfiles([SLASH16]);
    site.writeConfig({ backend, publicAddresses: PUBLIC_ADDRESSES, settleMs: SETTLE_MS });
    const ns = createLoneNamespace(cleanup, 'daemon');
    let log = spawnDaemon(ns, site.configFile);
    try {
      const first = await nextApply(log, 0, 180_000);
      await sleep(IDLE_MS);
      const pid = log.pid;
      if (pid === undefined) throw new Error('the daemon has no pid');
      const memory = memoryOf(pid);
      progress(
        `daemon ${backend}: first apply ${first.durationMs} ms; idle RSS ${(memory.rss / MIB).toFixed(0)} MiB`,
      );

      const latencies: number[] = [];
      const applyTimes: number[] = [];
      const stepTimes: Readonly<Record<string, number>>[] = [];
      for (let change = 0; change < CHANGES; change++) {
        const from = log.lines.length;
        site.writeProfiles(change % 2 === 0 ? [SLASH16, ONE_CLIENT] : [SLASH16]);
        const written = performance.now();
        const applied = await nextApply(log, from, 120_000);
        latencies.push(performance.now() - written - SETTLE_MS);
        applyTimes.push(applied.durationMs);
        stepTimes.push(applied.timings);
        // Let the daemon settle and the archive second pass before the next change.
        await sleep(1200);
      }
      // The same profiles written again: the daemon wakes, settles, and changes nothing.
      const unchanged: number[] = [];
      const listingBefore = kernelListing(ns, backend);
      for (let write = 0; write < CHANGES; write++) {
        const from = log.lines.length;
        site.writeProfiles(CHANGES % 2 === 1 ? [SLASH16, ONE_CLIENT] : [SLASH16]);
        const written = performance.now();
        await nextApply(log, from, 120_000, VERIFIED);
        unchanged.push(performance.now() - written - SETTLE_MS);
        await sleep(300);
      }
      // nft -a lists handles, which a rewrite would change; iptables-save -c, counters.
      const noWrite = kernelListing(ns, backend) === listingBefore;
      // A restart (a boot, an upgrade) on the installed /16: the first apply reads the kernel
      // whole, which the first apply from scratch above never does.
      await log.stop(15_000, 'SIGTERM');
      log = spawnDaemon(ns, site.configFile);
      await nextApply(log, 0, 180_000, VERIFIED);
      await sleep(IDLE_MS);
      const restartPid = log.pid;
      if (restartPid === undefined) throw new Error('the daemon has no pid');
      const restarted = memoryOf(restartPid);
      await sleep(SETTLED_MS - IDLE_MS);
      const settled = memoryOf(restartPid);
      const heldAtEnd = kernelHoldsClient(ns, backend, '10.43.0.2');
      const shouldHold = CHANGES % 2 === 1;
      const latency = median(latencies);
      progress(
        `daemon ${backend}: change to active ${latencies.map((ms) => ms.toFixed(0)).join(', ')} ms beyond the settle time; ` +
          `no change ${unchanged.map((ms) => ms.toFixed(0)).join(', ')} ms`,
      );
      metrics.push(
        {
          section: SECTION,
          name: `${backend}: idle RSS after applying the /16`,
          value: memory.rss / MIB,
          unit: 'MiB',
          baseline: { name: 'idle node, our modules loaded', value: idleNodeMiB },
          target: atMost(memory.rss, 80e6, '< 80 MB'),
          note: `${split(memory)}; peak (VmHWM) ${(memory.peak / MIB).toFixed(0)} MiB during the first apply`,
        },
        {
          section: SECTION,
          name: `${backend}: idle RSS after a restart on the installed /16`,
          value: restarted.rss / MIB,
          unit: 'MiB',
          baseline: { name: 'idle node, our modules loaded', value: idleNodeMiB },
          target: atMost(restarted.rss, 80e6, '< 80 MB'),
          note: `${split(restarted)}; peak (VmHWM) ${(restarted.peak / MIB).toFixed(0)} MiB during its first apply, which reads the kernel whole`,
        },
        {
          section: SECTION,
          name: `${backend}: idle RSS ${SETTLED_MS / 1000} s after that restart's apply`,
          value: settled.rss / MIB,
          unit: 'MiB',
          baseline: { name: `${IDLE_MS / 1000} s after it`, value: restarted.rss / MIB },
          target: atMost(settled.rss, 80e6, '< 80 MB'),
          note: `${split(settled)}; what it idles at between the periodic checks, each of which reads the kernel whole again`,
        },
        {
          section: SECTION,
          name: `${backend}: profile change to active, beyond the ${SETTLE_MS} ms settle time`,
          value: latency,
          unit: 'ms',
          baseline: { name: 'its apply (log durationMs)', value: median(applyTimes) },
          target: atMost(latency, 300, '< 300 ms'),
          note:
            `median of ${CHANGES} changes (one /30 profile added, removed, ...): ${latencies.map((ms) => ms.toFixed(0)).join(', ')} ms; ` +
            `measured from the write of config.php to the "ruleset applied" log line; ` +
            `by step (medians): ${medianTimings(stepTimes)} ms` +
            (heldAtEnd === shouldHold
              ? ''
              : '; CHECK FAILED: the kernel does not hold the last change'),
        },
        {
          section: SECTION,
          name: `${backend}: a write that changes nothing, to its apply's end, beyond the settle time`,
          value: median(unchanged),
          unit: 'ms',
          baseline: { name: 'a change to active', value: latency },
          target: {
            text: '< 200 ms and no kernel write',
            met: median(unchanged) < 200 && noWrite,
          },
          note:
            `median of ${CHANGES} writes of the same profiles: ${unchanged.map((ms) => ms.toFixed(0)).join(', ')} ms, ` +
            `measured to the "${VERIFIED}" log line; the kernel listing ${noWrite ? 'is identical' : 'DIFFERS'} before and after`,
        },
      );
    } finally {
      await log.stop(15_000, 'SIGTERM');
      ns.remove();
    }
  }
  return metrics;
}
