/**
 * Apply time with a /16: from scratch, one-profile changes, and no change, for each backend.
 * Ours is applyRuleset in-process, every command run inside the benchmark's namespace; the
 * baseline replays exactly the kernel loads it made (same command, same text) in a twin
 * namespace that holds the same rules, so the ratio is our overhead over a bare load.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { basename } from 'node:path';
import { readdirSync, rmSync } from 'node:fs';
import { applyRuleset, type ApplyResult } from '../src/apply/apply.js';
import { planCacheFile } from '../src/apply/plan-cache.js';
import { parseArchiveName } from '../src/archive/names.js';
import { loadConfig } from '../src/config-file.js';
import { discoverPools } from '../src/eduvpn/discover.js';
import { systemClock } from '../src/system/clock.js';
import { fsSourceReader } from '../src/system/fs-source-reader.js';
import type { Cleanup } from './cleanup.js';
import { publicAddressesFor } from './layouts.js';
import { kernelHoldsClient, kernelListing, type Backend } from './kernel-state.js';
import { createLoneNamespace, type Namespace } from './netns.js';
import { atMost, median, type Metric, type Target } from './report.js';
import {
  CLI,
  isKernelWrite,
  recordingNamespaceRunner,
  timed,
  type RecordedCommand,
} from './shell.js';
import { createSite, type Profile, type Site } from './site.js';

const SECTION = 'apply time with a /16 installed';
export const SLASH16: Profile = { id: 'bench', range: '10.42.0.0/16' };
/** A /30 holds exactly one client: network+2. */
export const ONE_CLIENT: Profile = { id: 'one', range: '10.43.0.0/30' };
const EXTRA_POOL: Profile = { id: 'extra', range: '10.43.1.0/24' };
/** The small site the same change is measured against: a cost that grows with the change. */
const SLASH24: Profile = { id: 'small', range: '10.42.0.0/24' };
/** Enough public addresses for the /16 and what the changes add, at 64 ports per client. */
export const PUBLIC_ADDRESSES = publicAddressesFor(65533 + 1 + 253);

/** One `traceable-nat apply --json`: its wall time, its `read` step, whether it read the plan cache. */
interface CliRun {
  readonly ms: number;
  readonly readMs: number;
  readonly cacheRead: boolean | undefined;
}

interface Step {
  readonly result: ApplyResult;
  readonly totalMs: number;
  /** From the start of the apply to the end of its last kernel load (undefined: no load). */
  readonly activeMs: number | undefined;
  readonly writes: readonly RecordedCommand[];
  readonly commands: readonly RecordedCommand[];
  /** The same loads, replayed in the twin namespace. */
  readonly bareMs: number;
}

export interface ApplyFindings {
  readonly metrics: Metric[];
  /** The /16 archive the iptables apply from scratch wrote (a real one, for the trace). */
  readonly iptablesArchive: string | undefined;
}

function sumMs(commands: readonly RecordedCommand[]): number {
  return commands.reduce((sum, entry) => sum + entry.end - entry.start, 0);
}

function describeCommand(entry: RecordedCommand): string {
  // `-w 10` and stdin's `-` say nothing about what the command did.
  const words = entry.args.filter(
    (arg, i) => arg !== '-' && arg !== '-w' && entry.args[i - 1] !== '-w',
  );
  return `${[entry.command, ...words.slice(0, 3)].join(' ')} ${(entry.end - entry.start).toFixed(0)} ms`;
}

/** Where the time of an apply went, for the notes. */
function breakdown(step: Step): string {
  const commandsMs = sumMs(step.commands);
  const slowest = [...step.commands]
    .sort((a, b) => b.end - b.start - (a.end - a.start))
    .slice(0, 3)
    .map(describeCommand);
  const steps = Object.entries(step.result.timings)
    .map(([name, ms]) => `${name} ${ms.toFixed(0)}`)
    .join(', ');
  return (
    `commands ${commandsMs.toFixed(0)} ms (slowest: ${slowest.join(', ')}), ` +
    `in-process (read files, plan, render, write) ${(step.totalMs - commandsMs).toFixed(0)} ms; ` +
    `by step (commands included): ${steps} ms`
  );
}

class ApplyBench {
  private readonly site: Site;
  private readonly ours: Namespace;
  private readonly twin: Namespace;

  constructor(
    cleanup: Cleanup,
    readonly backend: Backend,
  ) {
    this.site = createSite(cleanup, `apply-${backend}`);
    this.site.writeConfig({ backend, publicAddresses: PUBLIC_ADDRESSES });
    this.ours = createLoneNamespace(cleanup, 'apply');
    this.twin = createLoneNamespace(cleanup, 'bare');
  }

  /** Applies `profiles`; with `replay`, also loads the same in the twin, timed. */
  async step(profiles: readonly Profile[], replay = true): Promise<Step> {
    this.site.writeProfiles(profiles);
    const config = loadConfig(this.site.configFile);
    const commands: RecordedCommand[] = [];
    const started = performance.now();
    const result = await applyRuleset(
      config,
      {
        runner: recordingNamespaceRunner(this.ours.name, commands),
        clock: systemClock,
        discover: (loaded) => discoverPools(loaded.eduvpn, fsSourceReader),
      },
      { requester: 'bench' },
    );
    const totalMs = performance.now() - started;
    const writes = commands.filter(isKernelWrite);
    const lastWrite = writes.at(-1);
    let bareMs = 0;
    for (const write of replay ? writes : []) {
      bareMs += timed(() => this.twin.exec([write.command, ...write.args], write.input)).ms;
    }
    await this.waitForNextArchiveSecond(result);
    return {
      result,
      totalMs,
      activeMs: lastWrite ? lastWrite.end - started : undefined,
      writes,
      commands,
      bareMs,
    };
  }

  /**
   * Applies `profiles` through the CLI, as an operator would (`traceable-nat apply`): wall
   * time of the whole process, node's start and module loading included.
   */
  async cliStep(profiles: readonly Profile[]): Promise<CliRun> {
    this.site.writeProfiles(profiles);
    const { ms, value: stdout } = timed(() =>
      this.ours.exec([process.execPath, CLI, 'apply', '--json', '--config', this.site.configFile]),
    );
    const report = JSON.parse(stdout) as {
      timings?: Record<string, number>;
      planCache?: { read: boolean };
    };
    const newest = readdirSync(this.site.archiveDir)
      .map((name) => parseArchiveName(name))
      .filter((name) => name !== undefined)
      .map((name) => name.activatedAt)
      .sort((a, b) => a - b)
      .at(-1);
    const wait = newest === undefined ? 0 : (newest + 1) * 1000 + 20 - Date.now();
    if (wait > 0) await sleep(wait);
    return { ms, readMs: report.timings?.read ?? Number.NaN, cacheRead: report.planCache?.read };
  }

  /**
   * The one-client change through the CLI, both ways, twice: `without` then `with` applied
   * alternately, four processes (each waits for the next archive second, outside its time).
   */
  async cliSteps(without: readonly Profile[], withIt: readonly Profile[]): Promise<number[]> {
    const times: number[] = [];
    for (const profiles of [without, withIt, without, withIt])
      times.push((await this.cliStep(profiles)).ms);
    return times;
  }

  /**
   * The same change through the CLI with and without the plan cache, interleaved (the cache
   * deleted before each run without it, outside its time): the cache's own gain, measured
   * beside it on the same machine.
   */
  async cliCacheSteps(
    without: readonly Profile[],
    withIt: readonly Profile[],
  ): Promise<{ cached: CliRun[]; parsed: CliRun[] }> {
    const cached: CliRun[] = [];
    const parsed: CliRun[] = [];
    for (const [i, profiles] of [without, withIt, without, withIt, without, withIt].entries()) {
      const drop = i % 2 === 1;
      if (drop) rmSync(planCacheFile(this.site.stateFile), { force: true });
      (drop ? parsed : cached).push(await this.cliStep(profiles));
    }
    return { cached, parsed };
  }

  listing(): string {
    return kernelListing(this.ours, this.backend);
  }

  holdsClient(address: string): boolean {
    return kernelHoldsClient(this.ours, this.backend, address);
  }

  /**
   * Two activations never share an archive second, so an apply right after another waits for
   * the next second; real profile changes are not that close together, so neither are ours.
   */
  private async waitForNextArchiveSecond(result: ApplyResult): Promise<void> {
    // The archive's name, compressed or not (a pattern for plain names alone missed every
    // .gz archive, so each apply here waited inside its own timing instead).
    const name = parseArchiveName(basename(result.archive?.path ?? ''));
    if (name === undefined) return;
    const wait = (name.activatedAt + 1) * 1000 + 20 - Date.now();
    if (wait > 0) await sleep(wait);
  }
}

function bareName(backend: Backend): string {
  return backend === 'nftables' ? 'bare nft -f' : 'bare iptables-restore';
}

/** A real archive of a /16 applied with the iptables backend (for the trace alone). */
export async function archiveOfSlash16(cleanup: Cleanup): Promise<string> {
  const step = await new ApplyBench(cleanup, 'iptables').step([SLASH16], false);
  if (!step.result.archive) throw new Error('the apply of the /16 wrote no archive');
  return step.result.archive.path;
}

export async function measureApplyTimes(
  cleanup: Cleanup,
  progress: (line: string) => void,
): Promise<ApplyFindings> {
  const metrics: Metric[] = [];
  let iptablesArchive: string | undefined;
  for (const backend of ['iptables', 'nftables'] as const) {
    const bare = bareName(backend);
    // The same one-client change with only a /24 installed: what the change itself costs.
    const small = new ApplyBench(cleanup, backend);
    await small.step([SLASH24], false);
    const smallChange = await small.step([SLASH24, ONE_CLIENT], false);
    const smallActive = smallChange.activeMs ?? Number.NaN;
    progress(
      `apply ${backend}: one client added with a /24 installed: active after ${smallActive.toFixed(0)} ms`,
    );
    // And through the CLI, as the target words it: node's start and our modules are
    // part of what an operator waits for, on a /24 as on a /16.
    const smallCliTimes = await small.cliSteps([SLASH24], [SLASH24, ONE_CLIENT]);
    const smallCliMs = median(smallCliTimes);
    progress(
      `apply ${backend}: one client through the CLI with a /24 installed: ${smallCliTimes.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    );

    const bench = new ApplyBench(cleanup, backend);
    const scratch = await bench.step([SLASH16]);
    if (backend === 'iptables' && scratch.result.archive) {
      iptablesArchive = scratch.result.archive.path;
    }
    const scratchRatio = scratch.totalMs / scratch.bareMs;
    metrics.push({
      section: SECTION,
      name: `${backend}: /16 from scratch (${scratch.result.plan.map.clientCount} clients)`,
      value: scratch.totalMs,
      unit: 'ms',
      baseline: { name: bare, value: scratch.bareMs },
      target: atMost(scratchRatio, 1.3, '<= 1.3x bare'),
      note: breakdown(scratch),
    });
    progress(
      `apply ${backend}: /16 from scratch ${scratch.totalMs.toFixed(0)} ms (${bare} ${scratch.bareMs.toFixed(0)} ms)`,
    );

    /** The one-client change in-process, for the CLI's figure. */
    let active1 = Number.NaN;
    const changes: { name: string; profiles: Profile[]; check?: string; onSmall?: true }[] = [
      {
        name: 'one client added (new /30 profile)',
        profiles: [SLASH16, ONE_CLIENT],
        check: '10.43.0.2',
        onSmall: true,
      },
      {
        name: 'one /24 pool added',
        profiles: [SLASH16, ONE_CLIENT, EXTRA_POOL],
        check: '10.43.1.254',
      },
      { name: 'one /24 pool removed', profiles: [SLASH16, ONE_CLIENT] },
    ];
    for (const change of changes) {
      const step = await bench.step(change.profiles);
      const active = step.activeMs ?? Number.NaN;
      const held = change.check === undefined || bench.holdsClient(change.check);
      metrics.push({
        section: SECTION,
        name: `${backend}: ${change.name}, active after`,
        value: active,
        unit: 'ms',
        baseline: { name: bare, value: step.bareMs },
        target: atMost(active, 200, '< 200 ms'),
        note:
          `apply returned after ${step.totalMs.toFixed(0)} ms; ${breakdown(step)}` +
          (held ? '' : `; CHECK FAILED: the kernel does not hold ${change.check ?? ''}`),
      });
      progress(
        `apply ${backend}: ${change.name}: active after ${active.toFixed(0)} ms, returned after ${step.totalMs.toFixed(0)} ms (${bare} ${step.bareMs.toFixed(0)} ms)`,
      );
      if (change.onSmall) {
        active1 = active;
        metrics.push({
          section: SECTION,
          name: `${backend}: ${change.name}, against the same change on a /24`,
          value: active,
          unit: 'ms',
          baseline: { name: 'the same change with a /24 installed', value: smallActive },
          target: atMost(active / smallActive, 2, '<= 2x the /24 change'),
          note: `with a /24 installed: ${breakdown(smallChange)}`,
        });
      }
    }

    // The one-client change through the CLI: removed, then added again.
    const cliTimes = await bench.cliSteps([SLASH16], [SLASH16, ONE_CLIENT]);
    const cliMs = median(cliTimes);
    metrics.push({
      section: SECTION,
      name: `${backend}: one client removed or added, through the CLI (traceable-nat apply)`,
      value: cliMs,
      unit: 'ms',
      baseline: { name: 'the same change in-process, active after', value: active1 },
      target: atMost(cliMs, 500, '< 500 ms'),
      note: `wall time of the process, median of ${cliTimes.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    });
    metrics.push({
      section: SECTION,
      name: `${backend}: the same through the CLI, against the same change on a /24 through the CLI`,
      value: cliMs,
      unit: 'ms',
      baseline: { name: 'the same change through the CLI with a /24 installed', value: smallCliMs },
      target: atMost(cliMs / smallCliMs, 2, '<= 2x the /24 change'),
      note: `with a /24 installed: median of ${smallCliTimes.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    });
    progress(
      `apply ${backend}: one client through the CLI: ${cliTimes.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    );

    if (backend === 'iptables') {
      const { cached, parsed } = await bench.cliCacheSteps([SLASH16], [SLASH16, ONE_CLIENT]);
      const show = (runs: CliRun[], key: 'ms' | 'readMs') =>
        runs.map((run) => run[key].toFixed(0)).join(', ');
      const readCache = cached.every((run) => run.cacheRead === true);
      const parsedAll = parsed.every((run) => run.cacheRead === false);
      metrics.push({
        section: SECTION,
        name: `${backend}: the same through the CLI, with the plan cache against without it`,
        value: median(cached.map((run) => run.ms)),
        unit: 'ms',
        baseline: {
          name: 'the same, the plan cache deleted before each',
          value: median(parsed.map((run) => run.ms)),
        },
        note:
          `interleaved, medians of ${show(cached, 'ms')} ms and ${show(parsed, 'ms')} ms; ` +
          `their read step ${show(cached, 'readMs')} ms and ${show(parsed, 'readMs')} ms` +
          (readCache && parsedAll ? '' : '; CHECK FAILED: the cache was not read as meant'),
      });
      progress(
        `apply ${backend}: through the CLI with the plan cache ${show(cached, 'ms')} ms (read ${show(cached, 'readMs')}), without ${show(parsed, 'ms')} ms (read ${show(parsed, 'readMs')})`,
      );
    }

    const before = bench.listing();
    const unchanged = await bench.step([SLASH16, ONE_CLIENT]);
    const same = bench.listing() === before;
    const noWrite: Target = {
      text: 'no kernel write',
      met: unchanged.writes.length === 0 && same && unchanged.result.outcome === 'unchanged',
    };
    metrics.push({
      section: SECTION,
      name: `${backend}: no change`,
      value: unchanged.totalMs,
      unit: 'ms',
      baseline: { name: `${bare} of the /16`, value: scratch.bareMs },
      target: noWrite,
      note:
        `outcome ${unchanged.result.outcome}, ${unchanged.writes.length} kernel loads, ` +
        `${backend === 'nftables' ? 'nft -a list ruleset' : 'iptables-save -c'} ${same ? 'identical' : 'DIFFERS'} before and after; ` +
        breakdown(unchanged),
    });
    progress(
      `apply ${backend}: no change ${unchanged.totalMs.toFixed(0)} ms, ${unchanged.writes.length} kernel loads, listing ${same ? 'identical' : 'differs'}`,
    );
  }
  return { metrics, iptablesArchive };
}
