/**
 * `traceable-nat trace` against a /16 archive with 1 000 archives in the directory. The five
 * archives around the moment asked about are distinct files with their own headers and hash
 * chain; the others are hard links of two of them, because the trace reads only the archives
 * around the moment and 1 000 real copies of a /16 would be some 15 GB of disk, not a trace.
 */
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { archiveBody, sha256 } from '../src/archive/header.js';
import { archiveName } from '../src/archive/names.js';
import { formatIpv4 } from '../src/net/ipv4.js';
import { readAssignments } from '../src/render/read-rules.js';
import type { Cleanup } from './cleanup.js';
import { PUBLIC_ADDRESSES, SLASH16 } from './apply-time.js';
import { CLI } from './daemon.js';
import { atMost, median, type Metric } from './report.js';
import { createSite } from './site.js';

const SECTION = 'trace';
const ARCHIVES = 1000;
/** The moment asked about lies inside the lifetime of this archive. */
const ASKED = 500;
/** 2023-11-14T22:13:20Z, then one archive an hour. */
const FIRST_ACTIVATION = 1_700_000_000;
const HOUR = 3600;
const RUNS = 5;

function activation(index: number): number {
  return FIRST_ACTIVATION + index * HOUR;
}

/** The template's text with the header of archive `index` (apply start, previous archive). */
function archiveText(template: string, index: number, previous: string | undefined): string {
  const started = new Date((activation(index) - 2) * 1000).toISOString();
  const previousLine = previous
    ? `# previous: ${archiveName('iptables', activation(index - 1))} sha256:${sha256(previous)}`
    : '# previous: none';
  return template
    .replace(/^# apply-started: .*$/m, `# apply-started: ${started}`)
    .replace(/^# previous: .*$/m, previousLine);
}

function writeArchives(dir: string, template: string): void {
  mkdirSync(dir);
  const path = (index: number) => join(dir, archiveName('iptables', activation(index)));
  const distinctFrom = ASKED - 2;
  const distinctTo = ASKED + 2;
  let previous: string | undefined;
  for (let index = distinctFrom; index <= distinctTo; index++) {
    const text = archiveText(template, index, previous);
    writeFileSync(path(index), text, { mode: 0o440 });
    previous = text;
  }
  for (let index = 0; index < ARCHIVES; index++) {
    if (index < distinctFrom) linkSync(path(distinctFrom), path(index));
    if (index > distinctTo) linkSync(path(distinctTo), path(index));
  }
}

function timeCli(args: readonly string[]): { ms: number; stdout: string } {
  const start = performance.now();
  const result = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 1 << 24,
  });
  const ms = performance.now() - start;
  if (result.error) throw result.error;
  return { ms, stdout: result.stdout };
}

export function measureTrace(
  cleanup: Cleanup,
  templateArchive: string,
  progress: (line: string) => void,
): Metric[] {
  const template = readFileSync(templateArchive, 'utf8');
  const site = createSite(cleanup, 'trace');
  const archiveDir = join(site.dir, 'archive');
  site.writeProfiles([SLASH16]);
  site.writeConfig({ backend: 'iptables', publicAddresses: PUBLIC_ADDRESSES, archiveDir });
  writeArchives(archiveDir, template);

  const last = readAssignments(archiveBody(template)).assignments.at(-1);
  if (!last) throw new Error(`${templateArchive} holds no client`);
  const args = [
    'trace',
    '--config',
    site.configFile,
    '--at',
    String(activation(ASKED) + HOUR / 2),
    '--port',
    String(last.firstPort + 7),
    '--address',
    formatIpv4(last.publicAddress),
    '--json',
  ];
  const traces = Array.from({ length: RUNS }, () => timeCli(args));
  const answer = JSON.parse(traces[0]?.stdout ?? '{}') as {
    status?: string;
    candidates?: { client: string }[];
  };
  const clients = (answer.candidates ?? []).map((candidate) => candidate.client);
  const right = clients.length === 1 && clients[0] === formatIpv4(last.client);
  const startup = median(Array.from({ length: RUNS }, () => timeCli(['--help']).ms));
  const ms = median(traces.map((trace) => trace.ms));
  progress(
    `trace: ${ms.toFixed(0)} ms (${answer.status ?? '?'}: ${clients.join(', ')}); --help ${startup.toFixed(0)} ms`,
  );
  return [
    {
      section: SECTION,
      name: `trace of the last client's port, /16 archive, ${ARCHIVES} archives`,
      value: ms,
      unit: 'ms',
      baseline: { name: 'traceable-nat --help', value: startup },
      target: atMost(ms, 1000, '< 1 s'),
      note:
        `wall time of the CLI, median of ${RUNS}; ` +
        (right
          ? `answered ${clients[0] ?? ''} (${answer.status ?? ''}), as expected`
          : `WRONG ANSWER: expected ${formatIpv4(last.client)}, got ${clients.join(', ') || 'none'} (${answer.status ?? ''})`),
    },
  ];
}
