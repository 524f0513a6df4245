/**
 * The real daemon in a network namespace with real iptables must keep hearing the portal's
 * files: after fifty replacements of config.php by rename (how editors, configuration tools
 * and `sed ... > f.tmp; mv f.tmp f` write) it applies the last version and hears the next
 * rename; after the portal's directory is deleted and created again it applies the new file.
 * The periodic check is an hour away, so only the watcher can make these pass.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { Daemon } from '../../src/daemon/daemon.js';
import { createNotifier } from '../../src/daemon/notify.js';
import { watchSources } from '../../src/daemon/watch.js';
import { systemClock } from '../../src/system/clock.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { spawnDaemon } from '../helpers/daemon-process.js';
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { collectLines, type LineLog } from '../helpers/process-lines.js';
import {
  createSandbox,
  renderPortalConfig,
  type ProfileSpec,
  type Sandbox,
} from '../helpers/sandbox.js';
import { ARCHIVE_FILE, readArchiveText } from '../helpers/archive-files.js';
import { ALPHA, BETA, DELTA, GAMMA } from '../helpers/profiles.js';

const EPSILON: ProfileSpec = { id: 'epsilon', wireguard: '10.42.4.0/28' };
const ZETA: ProfileSpec = { id: 'zeta', wireguard: '10.42.5.0/28' };
const ETA: ProfileSpec = { id: 'eta', wireguard: '10.42.6.0/28' };
/** As in the reproduction of the issue. */
const SETTLE_MS = 300;
/** Far beyond every wait here: the periodic check must not be what applies a change. */
const VERIFY_INTERVAL_MS = 3_600_000;
/** "Within a few seconds" of a change: settle time plus one apply of a few hundred clients. */
const APPLIED_WITHIN_MS = 5000;

interface LogEvent {
  readonly msg: string;
  readonly outcome?: string;
  readonly trigger?: string;
}

function parseLog(line: string): LogEvent | undefined {
  const match = /^<\d>(\{.*\})$/.exec(line);
  return match?.[1] ? (JSON.parse(match[1]) as LogEvent) : undefined;
}

/** The address of a range's first client (the gateway has .1): 10.42.3.0/28 -> 10.42.3.2/32. */
function firstClient(profile: ProfileSpec): string {
  const range = profile.wireguard ?? profile.openvpn?.range ?? '';
  return range.replace(/\.0\/\d+$/, '.2/32');
}

/** Waits (bounded) until the gateway's nat table has rules for every profile; says who is missing. */
async function waitForRules(
  net: Topology,
  profiles: readonly ProfileSpec[],
  withinMs: number,
  recentLog: () => string,
): Promise<void> {
  const started = Date.now();
  for (;;) {
    const rules = net.exec(net.gateway, ['iptables-save', '-t', 'nat']);
    const missing = profiles.filter((profile) => !rules.includes(firstClient(profile)));
    if (missing.length === 0) return;
    if (Date.now() - started > withinMs) {
      throw new Error(
        `after ${withinMs} ms the nat table still has no rules for ${missing.map((p) => p.id).join(', ')}; ` +
          `daemon said:\n${recentLog()}`,
      );
    }
    await sleep(100);
  }
}

function replaceByRename(file: string, profiles: readonly ProfileSpec[]): void {
  writeFileSync(`${file}.tmp`, renderPortalConfig(profiles));
  renameSync(`${file}.tmp`, file);
}

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel('the daemon keeps hearing the eduVPN files', () => {
  let net: Topology;
  let sandbox: Sandbox;
  let daemon: ChildProcess;
  let log: LineLog;

  const nat = () => net.exec(net.gateway, ['iptables-save', '-t', 'nat']);
  const newestArchive = () => {
    const names = readdirSync(sandbox.archiveDir)
      .filter((name) => ARCHIVE_FILE.test(name))
      .sort();
    return readArchiveText(join(sandbox.archiveDir, names[names.length - 1] ?? ''));
  };
  const natCovers = (profiles: readonly ProfileSpec[], withinMs: number) =>
    waitForRules(net, profiles, withinMs, () => log.lines.slice(-10).join('\n'));
  const writeByRename = (profiles: readonly ProfileSpec[]) => {
    replaceByRename(sandbox.portalConfig, profiles);
  };

  beforeAll(async () => {
    net = createTopology([]);
    sandbox = createSandbox('iptables');
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    sandbox.writeConfig();
    const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      sandbox.configFile,
      JSON.stringify(
        { ...config, daemon: { settleMs: SETTLE_MS, verifyIntervalMs: VERIFY_INTERVAL_MS } },
        null,
        2,
      ),
    );
    daemon = spawnDaemon(net.gateway, sandbox.configFile, {
      JOURNAL_STREAM: '8:12345',
      TRACEABLE_NAT_LOG_LEVEL: 'debug',
    });
    log = collectLines(daemon);
    await log.waitFor((line) => parseLog(line)?.msg === 'daemon ready', 30000);
  });

  afterAll(() => {
    // beforeAll may have failed half-way: clean up whatever exists.
    (daemon as ChildProcess | undefined)?.kill('SIGKILL');
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('fifty replacements by rename: the last version is applied, and one more rename after it', async () => {
    // Forty-nine versions without the last profile, each with its own display name, then the
    // version with every profile: written exactly as in the reproduction, by sed and mv.
    const partial = join(sandbox.dir, 'partial.php');
    const complete = join(sandbox.dir, 'complete.php');
    writeFileSync(partial, renderPortalConfig([ALPHA, BETA, GAMMA]));
    writeFileSync(complete, renderPortalConfig([ALPHA, BETA, GAMMA, DELTA]));
    const burst = spawnSync(
      'bash',
      [
        '-c',
        `for i in $(seq 1 50); do
           if [ "$i" -lt 50 ]; then src="$1"; else src="$2"; fi
           sed "s/'displayName' => 'alpha'/'displayName' => 'alpha $i'/" "$src" > "$3.tmp"
           mv "$3.tmp" "$3"
         done`,
        'burst',
        partial,
        complete,
        sandbox.portalConfig,
      ],
      { encoding: 'utf8', timeout: 30000 },
    );
    expect(burst.status).toBe(0);
    expect(readFileSync(sandbox.portalConfig, 'utf8')).toContain("'alpha 50'");

    await natCovers([ALPHA, BETA, GAMMA, DELTA], APPLIED_WITHIN_MS);
    // Let any apply still due from the burst finish: the last one must hold the last version.
    await sleep(SETTLE_MS * 4);
    expect(nat()).toContain(firstClient(DELTA));
    expect(newestArchive()).toContain(firstClient(DELTA));

    writeByRename([ALPHA, BETA, GAMMA, DELTA, EPSILON]);
    await natCovers([ALPHA, BETA, GAMMA, DELTA, EPSILON], APPLIED_WITHIN_MS);
    expect(newestArchive()).toContain(firstClient(EPSILON));
  });

  test("the portal's directory deleted and created again with a new range: its rules are applied", async () => {
    const portalDir = join(sandbox.dir, 'vpn-user-portal');
    const from = log.lines.length;
    rmSync(portalDir, { recursive: true });
    // The daemon hears the deletion, and cannot read the file: the active rules stay.
    await log.waitFor(
      (line) => parseLog(line)?.msg === 'apply failed, the active rules stay',
      APPLIED_WITHIN_MS,
      from,
    );
    expect(nat()).toContain(firstClient(EPSILON));

    mkdirSync(portalDir);
    writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, GAMMA, DELTA, ZETA]));
    await natCovers([ALPHA, BETA, GAMMA, DELTA, ZETA], APPLIED_WITHIN_MS);

    // And the new directory is heard from then on.
    await sleep(SETTLE_MS * 2);
    writeByRename([ALPHA, BETA, GAMMA, DELTA, ZETA, ETA]);
    await natCovers([ALPHA, BETA, GAMMA, DELTA, ZETA, ETA], APPLIED_WITHIN_MS);
    expect(
      log.lines
        .slice(from)
        .map(parseLog)
        .filter((event) => event?.outcome === 'applied')
        .every((event) => event?.trigger === 'change'),
    ).toBe(true);
  });

  test("the portal's directory replaced by a file, then by a directory again: the daemon stays up and applies the repair (found by an audit)", async () => {
    const portalDir = join(sandbox.dir, 'vpn-user-portal');
    const from = log.lines.length;
    /** The table without iptables-save's dated comments. */
    const rules = () => nat().replace(/^#.*\n/gm, '');
    const before = rules();
    rmSync(portalDir, { recursive: true });
    // stat(2) of config.php through a file is ENOTDIR: it was thrown out of the watch's
    // callback, and the daemon died of it.
    writeFileSync(portalDir, 'not a directory\n');
    await log.waitFor(
      (line) => parseLog(line)?.msg === 'apply failed, the active rules stay',
      APPLIED_WITHIN_MS,
      from,
    );
    await sleep(SETTLE_MS * 2);
    expect(daemon.exitCode).toBeNull();
    expect(daemon.signalCode).toBeNull();
    expect(rules()).toBe(before);

    rmSync(portalDir);
    mkdirSync(portalDir);
    writeFileSync(sandbox.portalConfig, renderPortalConfig([ALPHA, BETA, EPSILON]));
    await natCovers([ALPHA, BETA, EPSILON], APPLIED_WITHIN_MS);
    expect(nat()).not.toContain(firstClient(ETA));
  });
});

describeKernel('the daemon started in-process, real apply in a namespace', () => {
  test('a change made while the first apply runs is applied after it', async () => {
    const net = createTopology([]);
    const sandbox = createSandbox('iptables');
    let daemon: Daemon | undefined;
    try {
      sandbox.writeProfiles([ALPHA, BETA]);
      sandbox.writeConfig();
      const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as object;
      writeFileSync(
        sandbox.configFile,
        JSON.stringify({
          ...config,
          daemon: { settleMs: SETTLE_MS, verifyIntervalMs: VERIFY_INTERVAL_MS },
        }),
      );
      let reads = 0;
      daemon = new Daemon({
        configFile: sandbox.configFile,
        loadConfig,
        // Right after the first apply has read the files, an admin edits a profile in: the
        // daemon must already be listening, or nothing applies it until the periodic check.
        discover: (loaded) => {
          const found = discover(loaded);
          if (reads++ === 0) replaceByRename(sandbox.portalConfig, [ALPHA, BETA, GAMMA]);
          return found;
        },
        watch: watchSources,
        runner: netnsRunner(net.gateway),
        clock: systemClock,
        timers: {
          setTimeout: (callback, ms) => setTimeout(callback, ms),
          clearTimeout: (handle) => {
            clearTimeout(handle as NodeJS.Timeout);
          },
          setInterval: (callback, ms) => setInterval(callback, ms),
          clearInterval: (handle) => {
            clearInterval(handle as NodeJS.Timeout);
          },
        },
        logger: pino({ level: 'silent' }),
        notifier: createNotifier({}),
      });
      await daemon.start();
      expect(net.exec(net.gateway, ['iptables-save', '-t', 'nat'])).not.toContain(
        firstClient(GAMMA),
      );
      await waitForRules(net, [ALPHA, BETA, GAMMA], APPLIED_WITHIN_MS, () => '');
      expect(reads).toBe(2);
    } finally {
      await daemon?.stop();
      net.destroy();
      sandbox.remove();
    }
  });
});
