/**
 * Tracing on archives made by real applies: the gateway namespace's kernel loads each ruleset,
 * an injected clock puts the applies at chosen moments, and ports are traced at, just before
 * and just after every switch, against the mapping each apply planned. Then end to end: a real
 * connection goes through the NAT, and the port the server saw is traced by the real CLI back
 * to the client and its eduVPN user. Needs root (CI runs as root).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { parseArchiveHeader } from '../../src/archive/header.js';
import { parseArchiveName } from '../../src/archive/names.js';
import { listArchives } from '../../src/archive/store.js';
import { discover } from '../../src/cli/discovery.js';
import { archiveDirOf } from '../../src/cli/trace-sources.js';
import { loadConfig } from '../../src/config-file.js';
import type { PortMap } from '../../src/mapping/types.js';
import { formatAddress } from '../../src/net/address.js';
import { formatIpv4, parseIpv4 } from '../../src/net/ipv4.js';
import type { Clock } from '../../src/system/clock.js';
import { lookupClientAt } from '../../src/trace/lookup-at.js';
import { SWITCH_MARGIN_SECONDS, type ArchiveDir } from '../../src/trace/timeline.js';
import { traceArchives } from '../../src/trace/trace.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { createTopology, isRoot, PUBLIC_ADDRESS, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type Sandbox } from '../helpers/sandbox.js';
import { probe, startServer, type Server } from '../helpers/traffic.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';

/** Profiles of each apply, and when it starts (unix seconds): two switches. */
const APPLIES = [
  { at: 1700000000, profiles: [ALPHA, BETA] },
  { at: 1700003600, profiles: [BETA, GAMMA] },
  { at: 1700007200, profiles: [ALPHA, BETA, GAMMA] },
];
const SAMPLE = ['10.42.0.2', '10.42.0.254', '10.42.1.2', '10.42.1.130', '10.42.2.2', '10.42.2.77'];
const PUBLIC = parseIpv4(PUBLIC_ADDRESS) ?? 0;
const MARGIN = SWITCH_MARGIN_SECONDS;

/** A clock that only moves when the apply looks at it (250 ms a look) or sleeps. */
function steppingClock(): Clock & { set(unixSeconds: number): void } {
  let now = 0;
  return {
    set: (unixSeconds) => {
      now = unixSeconds * 1000;
    },
    now: () => (now += 250),
    sleep: (ms) => {
      now += ms;
      return Promise.resolve();
    },
  };
}

interface Switch {
  readonly before: PortMap;
  readonly after: PortMap;
  /** Unix seconds: the new apply's start (header) and its activation (name). */
  readonly started: number;
  readonly activated: number;
}

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)('trace on real applies (%s)', (backend) => {
  let net: Topology;
  let sandbox: Sandbox;
  let server: Server | undefined;
  const results: ApplyResult[] = [];

  // The archive directory exactly as the trace command reads it (digests, anchor, pending).
  const archiveDir = (): ArchiveDir =>
    archiveDirOf(sandbox.archiveDir, loadConfig(sandbox.configFile));

  const switches = (): Switch[] =>
    results.slice(1).map((result, index) => {
      const path = result.archive?.path ?? '';
      const header = parseArchiveHeader(readArchiveText(path));
      const previous = results[index];
      if (!previous) throw new Error('no apply before this one');
      return {
        before: previous.plan.map,
        after: result.plan.map,
        started: Math.floor(Date.parse(header?.applyStarted ?? '') / 1000),
        activated: parseArchiveName(basename(path))?.activatedAt ?? NaN,
      };
    });

  const traced = (at: number, port: number) => {
    const result = traceArchives([archiveDir()], { at, port, address: PUBLIC });
    return {
      status: result.status,
      clients: result.candidates.map((candidate) => formatAddress(candidate.client)).sort(),
    };
  };

  beforeAll(async () => {
    net = createTopology(SAMPLE);
    sandbox = createSandbox(backend);
    // The applies swap whole profiles (see test/faults/removal-guard.test.ts for the guard).
    sandbox.writeConfig({ firewall: { removalGuard: false } });
    const clock = steppingClock();
    for (const { at, profiles } of APPLIES) {
      sandbox.writeProfiles(profiles);
      clock.set(at);
      const config = loadConfig(sandbox.configFile);
      results.push(
        await applyRuleset(config, { runner: netnsRunner(net.gateway), clock, discover }),
      );
    }
    server = await startServer(net);
  });

  afterAll(() => {
    server?.stop();
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('every apply activated a new archive at its controlled time', () => {
    expect(results.map((result) => result.outcome)).toEqual(['applied', 'applied', 'applied']);
    const names = listArchives(sandbox.archiveDir);
    expect(names).toHaveLength(3);
    names.forEach((entry, index) => {
      const started = APPLIES[index]?.at ?? 0;
      expect(entry.activatedAt).toBeGreaterThanOrEqual(started);
      expect(entry.activatedAt).toBeLessThanOrEqual(started + 5);
    });
  });

  test('at, just before and just after each switch, traces agree with the planned mappings', () => {
    const checked = { found: 0, ambiguous: 0, nobodyOnOneSide: 0 };
    for (const change of switches()) {
      expect(change.started).toBeLessThanOrEqual(change.activated);
      for (const text of SAMPLE) {
        const client = parseIpv4(text) ?? 0;
        for (const map of [change.before, change.after]) {
          const block = map.forward(client);
          if (!block) continue;
          for (const port of [block.firstPort, block.lastPort]) {
            const old = change.before.reverse(PUBLIC, port);
            const next = change.after.reverse(PUBLIC, port);
            const expectAt = (held: typeof old): { status: string; clients: string[] } =>
              held
                ? { status: 'found', clients: [formatIpv4(held.client)] }
                : { status: 'not-found', clients: [] };
            expect(traced(change.started - MARGIN - 1, port)).toEqual(expectAt(old));
            expect(traced(change.activated + 1 + MARGIN, port)).toEqual(expectAt(next));
            const holders = [old?.client, next?.client].filter((c) => c !== undefined);
            const both = [...new Set(holders)].map(formatIpv4).sort();
            const atSwitch = traced(change.activated, port);
            expect(atSwitch.clients).toEqual(both);
            const agree = old !== undefined && old.client === next?.client;
            expect(atSwitch.status).toBe(agree ? 'found' : 'ambiguous');
            checked[agree ? 'found' : 'ambiguous']++;
            if (!old || !next) checked.nobodyOnOneSide++;
          }
        }
      }
    }
    // The sample covers kept blocks, blocks handed to another client, and new blocks.
    expect(checked.found).toBeGreaterThan(0);
    expect(checked.ambiguous).toBeGreaterThan(0);
    expect(checked.nobodyOnOneSide).toBeGreaterThan(0);
  });

  test('lookup --at follows a client that left and came back', () => {
    const [first, second] = switches();
    const alpha = parseIpv4('10.42.0.2') ?? 0;
    const at = (time: number) => {
      const result = lookupClientAt([archiveDir()], alpha, time);
      return { status: result.status, ports: result.matches.map((m) => m.assignment.firstPort) };
    };
    const before = first?.before.forward(alpha)?.firstPort;
    const back = second?.after.forward(alpha)?.firstPort;
    expect(at((first?.activated ?? 0) - 600)).toEqual({ status: 'found', ports: [before] });
    expect(at(first?.activated ?? 0)).toEqual({ status: 'ambiguous', ports: [before] });
    expect(at((first?.activated ?? 0) + 600)).toMatchObject({ status: 'not-found', ports: [] });
    expect(at((second?.activated ?? 0) + 600)).toEqual({ status: 'found', ports: [back] });
  });

  test('end to end: the port a server saw is traced by the CLI to the client and its user', async () => {
    const database = join(sandbox.dir, 'db.sqlite');
    const db = new Database(database);
    db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
      vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL,
      ip_six TEXT NOT NULL, connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER,
      disconnected_at TEXT)`);
    const insert = db.prepare(`INSERT INTO connection_log (user_id, profile_id, vpn_proto,
      connection_id, ip_four, ip_six, connected_at, disconnected_at) VALUES (?, ?, 'wireguard', ?, ?, 'fd00::2', ?, ?)`);
    const since = new Date(Date.now() - 3600_000).toISOString().replace('.000Z', '+00:00');
    insert.run(
      'mallory',
      'alpha',
      'old',
      '10.42.0.2',
      '2023-11-14T00:00:00+00:00',
      '2023-11-14T01:00:00+00:00',
    );
    insert.run('alice', 'alpha', 'conn-alice', '10.42.0.2', since, null);
    insert.run('gina', 'gamma', 'conn-gina', '10.42.2.2', since, null);
    db.close();
    const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
    config.trace = {
      portalDatabase: database,
      serverApiDatabase: join(sandbox.dir, 'no-such-2x.sqlite'),
    };
    writeFileSync(sandbox.configFile, JSON.stringify(config, null, 2));

    const probes = await probe(net, ['10.42.0.2', '10.42.2.2']);
    const users: Record<string, string> = { '10.42.0.2': 'alice', '10.42.2.2': 'gina' };
    expect(probes).toHaveLength(4);
    for (const { local, proto, seen } of probes) {
      expect(seen?.address).toBe(PUBLIC_ADDRESS);
      const now = String(Math.floor(Date.now() / 1000));
      const args = [
        'trace',
        '--at',
        now,
        '--port',
        String(seen?.port),
        '--address',
        PUBLIC_ADDRESS,
      ];
      const result = runCli(undefined, [
        ...args,
        '--proto',
        proto,
        '--json',
        '--config',
        sandbox.configFile,
      ]);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      const answer = JSON.parse(result.stdout) as {
        status: string;
        candidates: {
          client: string;
          profileToday: string | null;
          user: { status: string; sessions: { userId: string; connectionId: string }[] };
        }[];
      };
      expect(answer.status).toBe('found');
      expect(answer.candidates).toHaveLength(1);
      expect(answer.candidates[0]).toMatchObject({
        client: local,
        profileToday: local.startsWith('10.42.0.') ? 'alpha' : 'gamma',
        user: { status: 'found', sessions: [{ userId: users[local] }] },
      });
    }
  });
});
