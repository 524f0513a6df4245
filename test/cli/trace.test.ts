/**
 * `trace`, `lookup --at` and the hash-chain step of `check`, in-process over archives and a
 * portal database written by the test: the text an abuse desk pastes, the JSON object, and
 * the exit statuses (0 found, 1 not found, 2 bad input, 3 ambiguous).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { archiveFiles, type ArchiveSpec } from '../trace/archive-fixtures.js';

interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function run(env: Record<string, string>, ...args: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env,
  };
  const status = await main(args, io);
  return { status, stdout, stderr };
}

const A = '192.0.2.1';
const T1 = 1695196800; // 2023-09-20T08:00:00Z
const T2 = T1 + 3 * 3600; // 11:00:00Z
const SPECS: ArchiveSpec[] = [
  {
    at: T1,
    form: 'iptables',
    rows: [
      ['10.42.0.2', A, 65472, 65535],
      ['10.42.0.3', A, 65408, 65471],
    ],
  },
  {
    at: T2,
    form: 'iptables',
    took: 2,
    rows: [
      ['10.42.0.2', A, 65472, 65535],
      ['10.42.0.4', A, 65408, 65471],
    ],
  },
];

let dir: string;
let archiveDir: string;
let config: string;
let noDatabase: string;
const UTC = { TZ: 'UTC' };

function writeConfig(file: string, portalDatabase: string, archives = archiveDir): void {
  const portal = resolve('examples/etc/vpn-user-portal/config.php');
  writeFileSync(
    file,
    [
      'eduvpn:',
      '  source: portal',
      `  portalConfig: ${portal}`,
      'nat:',
      `  publicAddresses: [${A}]`,
      '  outInterface: eth0',
      'firewall:',
      `  rulesFile: ${join(dir, 'rules.v4')}`,
      `  archiveDir: ${archives}`,
      `  stateFile: ${join(dir, 'state.json')}`,
      'trace:',
      `  portalDatabase: ${portalDatabase}`,
      `  serverApiDatabase: ${join(dir, 'no-2x.sqlite')}`,
      '',
    ].join('\n'),
  );
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-trace-cli-'));
  archiveDir = join(dir, 'archive');
  mkdirSync(archiveDir);
  for (const [name, text] of archiveFiles(SPECS)) writeFileSync(join(archiveDir, name), text);
  const database = join(dir, 'db.sqlite');
  const db = new Database(database);
  db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
    vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL, ip_six TEXT NOT NULL,
    connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER, disconnected_at TEXT)`);
  const insert = db.prepare(`INSERT INTO connection_log
    (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at, disconnected_at)
    VALUES (?, 'internet', 'openvpn', ?, ?, 'fd42::2', ?, ?)`);
  // dave's session on 10.42.0.2 overlaps alice's: both are named from 09:10 to 09:30. Hers
  // begins after his, so it is no row left open before the address was handed on.
  insert.run('alice', 'conn-alice', '10.42.0.2', '2023-09-20T09:10:00+00:00', null);
  insert.run(
    'dave',
    'conn-dave',
    '10.42.0.2',
    '2023-09-20T09:00:00+00:00',
    '2023-09-20T09:30:00+00:00',
  );
  insert.run(
    'bob',
    'conn-bob',
    '10.42.0.3',
    '2023-09-20T08:30:00+00:00',
    '2023-09-20T10:59:58+00:00',
  );
  insert.run('carol', 'conn-carol', '10.42.0.4', '2023-09-20T11:00:02+00:00', null);
  db.close();
  config = join(dir, 'config.yaml');
  writeConfig(config, database);
  noDatabase = join(dir, 'config-no-db.yaml');
  writeConfig(noDatabase, join(dir, 'missing.sqlite'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const trace = (...args: string[]) => run(UTC, 'trace', '--config', config, ...args);

describe('trace', () => {
  test('one client, one user: the text an abuse desk can paste', async () => {
    const result = await trace('--at', '2023-09-20T10:00:00Z', '--port', '65500', '--address', A);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      [
        'Time       2023-09-20T10:00:00Z = 2023-09-20T10:00:00Z (UTC)',
        'Query      192.0.2.1 port 65500, tcp or udp',
        `Ruleset    ${archiveDir}/rules.v4.${T1}: active 2023-09-20T08:00:00Z, apply started 2023-09-20T07:59:59Z, replaced 2023-09-20T11:00:00Z`,
        'Client     10.42.0.2 (profile today: internet)',
        `           192.0.2.1 ports 65472-65535 (tcp and udp) in rules.v4.${T1}`,
        'User       alice: profile internet, connection conn-alice, openvpn, connected 2023-09-20T09:10:00+00:00, not disconnected',
        `           (${dir}/db.sqlite, eduVPN 3.x, times UTC)`,
        'Answer     FOUND: client 10.42.0.2, user alice',
        '',
      ].join('\n'),
    );
  });

  test('--json: the documented object', async () => {
    const result = await trace('--at', '1695204000', '--port', '65500', '--address', A, '--json');
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      status: 'found',
      time: {
        given: '1695204000',
        unixSeconds: 1695204000,
        utc: '2023-09-20T10:00:00Z',
        zone: 'unix seconds',
        zoneAssumed: false,
      },
      query: { port: 65500, address: A, proto: null },
      archives: [
        {
          file: `${archiveDir}/rules.v4.${T1}`,
          ours: true,
          activatedAt: '2023-09-20T08:00:00Z',
          applyStarted: '2023-09-20T07:59:59Z',
          until: '2023-09-20T11:00:00Z',
          publicAddresses: [A],
        },
      ],
      candidates: [
        {
          client: '10.42.0.2',
          profileToday: 'internet',
          blocks: [
            {
              archive: `${archiveDir}/rules.v4.${T1}`,
              publicAddress: A,
              firstPort: 65472,
              lastPort: 65535,
              proto: 'both',
            },
          ],
          user: {
            status: 'found',
            reason: null,
            sessions: [
              {
                userId: 'alice',
                profileId: 'internet',
                connectionId: 'conn-alice',
                vpnProto: 'openvpn',
                connectedAt: '2023-09-20T09:10:00+00:00',
                disconnectedAt: null,
                connectedAtUtc: '2023-09-20T09:10:00Z',
                disconnectedAtUtc: null,
                timesAre: 'UTC',
                database: join(dir, 'db.sqlite'),
                schema: '3.x',
              },
            ],
          },
        },
      ],
      notes: [],
    });
  });

  test('a time without zone is read in the server zone (TZ), and the output says so', async () => {
    const result = await run(
      { TZ: 'Europe/Amsterdam' },
      'trace',
      '--config',
      config,
      '--at',
      '2023/09/20 12:00:00',
      '--port',
      '65500',
      '--json',
    );
    const parsed = JSON.parse(result.stdout) as { time: Record<string, unknown> };
    expect(parsed.time).toEqual({
      given: '2023/09/20 12:00:00',
      unixSeconds: 1695204000,
      utc: '2023-09-20T10:00:00Z',
      zone: 'Europe/Amsterdam (+02:00)',
      zoneAssumed: true,
    });
    const text = await run(
      { TZ: 'Europe/Amsterdam' },
      'trace',
      '--config',
      config,
      '--at',
      '2023/09/20 12:00:00',
      '--port',
      '65500',
    );
    expect(text.stdout).toContain(
      "Time       2023/09/20 12:00:00 = 2023-09-20T10:00:00Z (no zone given: read in the server's zone Europe/Amsterdam (+02:00))",
    );
  });

  test('a time without zone where TZ names no zone this tool knows is refused: exit 2, one sentence', async () => {
    const result = await run(
      { TZ: 'CET-1CEST,M3.5.0,M10.5.0/3' },
      'trace',
      '--config',
      config,
      '--at',
      '2023-09-20 12:00:00',
      '--port',
      '65500',
    );
    expect({ status: result.status, stdout: result.stdout }).toEqual({ status: 2, stdout: '' });
    expect(result.stderr).toContain(
      `"2023-09-20 12:00:00" has no zone, and the server's zone is unknown (TZ=CET-1CEST,M3.5.0,M10.5.0/3)`,
    );
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('a time without zone in the hour the clocks repeat or skip is refused: exit 2, one sentence', async () => {
    for (const [at, says] of [
      ['2023-10-29 02:30:00', 'happens twice in Europe/Amsterdam, at +02:00 and again at +01:00'],
      ['2023-03-26 02:30:00', 'never happens in Europe/Amsterdam'],
    ] as const) {
      const result = await run(
        { TZ: 'Europe/Amsterdam' },
        'trace',
        '--config',
        config,
        '--at',
        at,
        '--port',
        '65500',
      );
      expect({ status: result.status, stdout: result.stdout }).toEqual({ status: 2, stdout: '' });
      expect(result.stderr).toContain(`"${at}" ${says}`);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  test.each([
    [
      'at a switch: both clients',
      ['--at', '2023-09-20T11:00:00Z', '--port', '65420'],
      3,
      'ambiguous',
      ['10.42.0.3', '10.42.0.4'],
      ['near-switch'],
    ],
    [
      'two users on the client',
      ['--at', '2023-09-20T09:15:00Z', '--port', '65500'],
      3,
      'ambiguous',
      ['10.42.0.2'],
      [],
    ],
    [
      'the client, but no session',
      ['--at', '2023-09-20T08:10:00Z', '--port', '65420'],
      1,
      'not-found',
      ['10.42.0.3'],
      [],
    ],
    [
      'a port in no block',
      ['--at', '2023-09-20T10:00:00Z', '--port', '2000'],
      1,
      'not-found',
      [],
      ['port-in-no-block'],
    ],
    [
      'before the first archive',
      ['--at', '2023-09-19T10:00:00Z', '--port', '65500'],
      1,
      'not-found',
      [],
      ['before-first-archive'],
    ],
    [
      'not our address',
      ['--at', '2023-09-20T10:00:00Z', '--port', '65500', '--address', '198.51.100.1'],
      1,
      'not-found',
      [],
      ['address-not-ours'],
    ],
    [
      'after the switch, the new client',
      ['--at', '2023-09-20T11:00:10Z', '--port', '65420', '--proto', 'udp'],
      0,
      'found',
      ['10.42.0.4'],
      [],
    ],
  ])('%s', async (_, args, status, jsonStatus, clients, notes) => {
    const result = await trace(...args, '--json');
    expect(result.status).toBe(status);
    const parsed = JSON.parse(result.stdout) as {
      status: string;
      candidates: { client: string }[];
      notes: { code: string }[];
    };
    expect({
      status: parsed.status,
      clients: parsed.candidates.map((candidate) => candidate.client),
      notes: parsed.notes.map((note) => note.code),
    }).toEqual({ status: jsonStatus, clients, notes });
    // No client address that is not a candidate appears anywhere in the object.
    const addresses = new Set(result.stdout.match(/10\.42\.\d+\.\d+/g) ?? []);
    expect([...addresses].sort()).toEqual([...clients].sort());
  });

  test('the text of an ambiguous answer gives both candidates and the reason', async () => {
    const result = await trace('--at', '2023-09-20T11:00:00Z', '--port', '65420');
    expect(result.status).toBe(3);
    expect(result.stdout).toContain('Client     10.42.0.3 (profile today: internet)');
    expect(result.stdout).toContain('Client     10.42.0.4 (profile today: internet)');
    expect(result.stdout).toMatch(/^Note {7}the time is within 5 s of a switch/m);
    expect(result.stdout).toContain('Answer     AMBIGUOUS: 2 candidates: 10.42.0.3, 10.42.0.4\n');
  });

  test('without a portal database the client is still named, and the user is unavailable', async () => {
    const result = await run(
      UTC,
      'trace',
      '--config',
      noDatabase,
      '--at',
      '2023-09-20T10:00:00Z',
      '--port',
      '65500',
    );
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(
      `User       the user is unknown: ${dir}/missing.sqlite does not exist; ${dir}/no-2x.sqlite does not exist\n`,
    );
    expect(result.stdout).toContain('Answer     FOUND: client 10.42.0.2, user unknown\n');
  });

  test('a row left open before another user had the client: exit 3, the user in doubt', async () => {
    const database = join(dir, 'left-open.sqlite');
    const db = new Database(database);
    db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
      vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL,
      ip_six TEXT NOT NULL, connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER,
      disconnected_at TEXT)`);
    const insert = db.prepare(`INSERT INTO connection_log (user_id, profile_id, vpn_proto,
      connection_id, ip_four, ip_six, connected_at, disconnected_at)
      VALUES (?, 'internet', 'openvpn', ?, '10.42.0.2', 'fd42::2', ?, ?)`);
    insert.run('erin', 'conn-erin', '2023-09-20T07:00:00+00:00', null);
    insert.run('dave', 'conn-dave', '2023-09-20T09:00:00+00:00', '2023-09-20T09:30:00+00:00');
    db.close();
    const leftOpen = join(dir, 'config-left-open.yaml');
    writeConfig(leftOpen, database);
    const at = ['--at', '2023-09-20T10:00:00Z', '--port', '65500'];
    const result = await run(UTC, 'trace', '--config', leftOpen, ...at);
    expect(result.status).toBe(3);
    expect(result.stdout).toContain(
      "           the only sessions of 10.42.0.2 at 2023-09-20T10:00:00Z (within 5 s) are in doubt: erin's session (connected 2023-09-20T07:00:00+00:00) has no disconnect time, but dave connected with the same address at 2023-09-20T09:00:00Z: the row may have been left open by a restart, and erin may no longer have had the address\n",
    );
    expect(result.stdout).toContain(
      'Answer     AMBIGUOUS: client 10.42.0.2, user erin in doubt, see the User lines\n',
    );
  });

  test('--archive-dir replaces the configured directories', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    const result = await trace(
      '--at',
      '2023-09-20T10:00:00Z',
      '--port',
      '65500',
      '--archive-dir',
      empty,
    );
    expect(result.status).toBe(1);
    expect(result.stdout).toContain(`Note       there are no archived rulesets in ${empty}\n`);
    const both = await trace(
      '--at',
      '2023-09-20T10:00:00Z',
      '--port',
      '65500',
      '--archive-dir',
      empty,
      '--archive-dir',
      archiveDir,
    );
    expect(both.status).toBe(0);
  });

  test.each([
    [['--port', '65500'], /give the incident time with --at TIME/],
    [
      ['--at', 'yesterday', '--port', '65500'],
      /"yesterday" is not a time this tool reads: give the time as ISO 8601/,
    ],
    [['--at', '1695204000'], /give the source port with --port PORT/],
    [
      ['--at', '1695204000', '--port', '70000'],
      /--port "70000" is not a port number from 1 to 65535/,
    ],
    [
      ['--at', '1695204000', '--port', '65500', '--proto', 'icmp'],
      /--proto "icmp" is not tcp or udp/,
    ],
    [
      ['--at', '1695204000', '--port', '65500', '--address', 'x'],
      /--address "x" is not an IPv4 address/,
    ],
  ])('bad input %j: one sentence, exit 2', async (args, pattern) => {
    const result = await trace(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('lookup --at', () => {
  test.each([
    ['10.42.0.3', '2023-09-20T10:00:00Z', 0, 'found', ['192.0.2.1:65408-65471']],
    ['10.42.0.3', '2023-09-20T11:00:00Z', 3, 'ambiguous', ['192.0.2.1:65408-65471']],
    ['10.42.0.4', '2023-09-20T12:00:00Z', 0, 'found', ['192.0.2.1:65408-65471']],
    ['10.42.0.4', '2023-09-20T10:00:00Z', 1, 'not-found', []],
  ])('%s at %s', async (client, at, status, jsonStatus, blocks) => {
    const result = await run(UTC, 'lookup', client, '--at', at, '--json', '--config', config);
    expect(result.status).toBe(status);
    const parsed = JSON.parse(result.stdout) as {
      found: boolean;
      status: string;
      blocks: { publicAddress: string; firstPort: number; lastPort: number }[];
    };
    expect(parsed.status).toBe(jsonStatus);
    expect(parsed.found).toBe(jsonStatus === 'found');
    expect(parsed.blocks.map((b) => `${b.publicAddress}:${b.firstPort}-${b.lastPort}`)).toEqual(
      blocks,
    );
  });

  test('the text names the archive', async () => {
    const result = await run(
      UTC,
      'lookup',
      '10.42.0.3',
      '--at',
      '2023-09-20T10:00:00Z',
      '--config',
      config,
    );
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('Client     10.42.0.3\n');
    expect(result.stdout).toContain(
      `Block      192.0.2.1 ports 65408-65471 (tcp and udp) in rules.v4.${T1}\n`,
    );
    expect(result.stdout).toContain('Answer     FOUND\n');
  });
});

describe('a moment in the future (issue 11)', () => {
  const now = () => Math.floor(Date.now() / 1000);

  test('trace an hour ahead is no answer: exit 1 and a note saying why', async () => {
    const at = now() + 3600;
    const result = await trace('--at', String(at), '--port', '65500', '--address', A);
    expect(result.status).toBe(1);
    expect(result.stdout).not.toContain('FOUND: client');
    expect(result.stdout).toMatch(
      /s after now \(.*\): which ruleset will be active then cannot be known yet; check the report's time and time zone/,
    );
    const json = await trace('--at', String(at), '--port', '65500', '--address', A, '--json');
    const parsed = JSON.parse(json.stdout) as { status: string; notes: { code: string }[] };
    expect(parsed.status).toBe('not-found');
    expect(parsed.notes.map((note) => note.code)).toEqual(['in-the-future']);
  });

  test('within the allowed clock skew it is taken as now', async () => {
    const result = await trace('--at', String(now() + 30), '--port', '65500', '--address', A);
    expect(result.stdout).toContain('Answer     FOUND: client 10.42.0.2');
    expect(result.status).toBe(0);
  });

  test('lookup --at a day ahead is no answer either', async () => {
    const at = String(now() + 86400);
    const result = await run(UTC, 'lookup', '10.42.0.2', '--at', at, '--config', config);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/s after now .*cannot be known yet/);
    expect(result.stdout).not.toContain('Answer     FOUND');
  });
});

describe('check: the archive hash chain', () => {
  test('intact', async () => {
    const result = await run(UTC, 'check', '--config', config);
    expect(result.stdout).toContain(
      `ok    archive hash chain: 2 archives in ${archiveDir}, every link intact\n`,
    );
  });

  test('an archive dated in the future in a directory trace reads beside ours is reported', async () => {
    const other = join(dir, 'other-node');
    mkdirSync(other);
    const future = Math.floor(Date.now() / 1000) + 86400;
    const [text = ''] = archiveFiles(SPECS).values();
    writeFileSync(join(other, `rules.v4.${String(future)}`), text);
    const file = join(dir, 'config-other-node.yaml');
    writeConfig(file, join(dir, 'db.sqlite'));
    writeFileSync(file, `${readFileSync(file, 'utf8')}  archiveDirs: [${other}]\n`);
    const result = await run(UTC, 'check', '--config', file);
    expect(result.status).toBe(2);
    expect(result.stdout).toMatch(
      new RegExp(`FAIL  archive head: .*; ${other}: rules\\.v4\\.${String(future)} is dated`),
    );
  });

  test('an edited archive is reported with its name', async () => {
    const copy = join(dir, 'tampered');
    mkdirSync(copy);
    const files = archiveFiles(SPECS);
    for (const [name, text] of files) {
      writeFileSync(
        join(copy, name),
        name.endsWith(String(T1)) ? text.replace('65472', '65473') : text,
      );
    }
    const file = join(dir, 'config-tampered.yaml');
    writeConfig(file, join(dir, 'db.sqlite'), copy);
    const result = await run(UTC, 'check', '--config', file);
    expect(result.status).toBe(2);
    expect(result.stdout).toMatch(
      new RegExp(
        `FAIL  archive hash chain: the archive hash chain is broken \\(1 problem\\): ${copy}: rules\\.v4\\.${T1} was changed after rules\\.v4\\.${T2} was written`,
      ),
    );
  });
});
