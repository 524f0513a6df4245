/**
 * The portal's connection_log, in real SQLite files with the 3.x and the 2.x schema: several
 * users one after another on the same address, sessions that overlap at the edges, and
 * databases that are missing or not eduVPN's. Reading never changes the file.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { sha256 } from '../../src/archive/header.js';
import { openPortalDatabases } from '../../src/trace/portal-db.js';
import type { UserAnswer } from '../../src/trace/sessions.js';
import type { LocalZone } from '../../src/trace/time.js';

const PLUS_TWO: LocalZone = { name: 'Test/PlusTwo', offsetsAt: () => [120] };
const MARGIN = 5;
const at = (iso: string): number => Date.parse(iso) / 1000;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-portal-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

type Row3 = [string, string, string, string, string, string | null];

/** user, profile, connection id, ip_four, connected_at, disconnected_at */
function portal3x(name: string, rows: readonly Row3[]): string {
  const path = join(dir, name);
  const db = new Database(path);
  db.exec(`CREATE TABLE connection_log (
    user_id VARCHAR(255) NOT NULL, profile_id VARCHAR(255) NOT NULL, vpn_proto VARCHAR(255) NOT NULL,
    connection_id VARCHAR(255) NOT NULL, ip_four VARCHAR(255) NOT NULL, ip_six VARCHAR(255) NOT NULL,
    connected_at VARCHAR(255) NOT NULL, bytes_in INTEGER DEFAULT NULL, bytes_out INTEGER DEFAULT NULL,
    disconnected_at VARCHAR(255) DEFAULT NULL)`);
  const insert = db.prepare(
    `INSERT INTO connection_log (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at, disconnected_at)
     VALUES (?, ?, 'wireguard', ?, ?, 'fd00::2', ?, ?)`,
  );
  for (const row of rows) insert.run(...row);
  db.close();
  return path;
}

/** user, profile, common name, ip4, connected_at, disconnected_at (server-local, no zone) */
function serverApi2x(name: string, rows: readonly (readonly (string | null)[])[]): string {
  const path = join(dir, name);
  const db = new Database(path);
  db.exec(`CREATE TABLE connection_log (
    user_id VARCHAR(255), common_name VARCHAR(255) NOT NULL, profile_id VARCHAR(255) NOT NULL,
    ip4 VARCHAR(255) NOT NULL, ip6 VARCHAR(255) NOT NULL, connected_at DATETIME NOT NULL,
    disconnected_at DATETIME DEFAULT NULL, bytes_transferred INTEGER DEFAULT NULL,
    client_lost BOOLEAN DEFAULT 0)`);
  const insert = db.prepare(
    `INSERT INTO connection_log (user_id, common_name, profile_id, ip4, ip6, connected_at, disconnected_at)
     VALUES (?, ?, ?, ?, 'fd00::2', ?, ?)`,
  );
  for (const row of rows) insert.run(...row);
  db.close();
  return path;
}

function lookup(paths: readonly string[], client: string, time: number): UserAnswer {
  const databases = openPortalDatabases(paths, PLUS_TWO, MARGIN);
  try {
    return databases.sessionsOf(client, time);
  } finally {
    databases.close();
  }
}

function users(answer: UserAnswer) {
  return { status: answer.status, users: answer.sessions.map((session) => session.userId) };
}

const ROWS_3X: Row3[] = [
  ['alice', 'office', 'c-a1', '10.0.0.2', '2023-09-20T10:00:00+00:00', '2023-09-20T11:00:00+00:00'],
  ['alice', 'office', 'c-a2', '10.0.0.2', '2023-09-20T10:50:00+00:00', '2023-09-20T10:50:30+00:00'],
  ['bob', 'internet', 'c-b1', '10.0.0.2', '2023-09-20T11:00:03+00:00', '2023-09-20T12:00:00+00:00'],
  ['carol', 'internet', 'c-c1', '10.0.0.2', '2023-09-20T12:30:00+00:00', null],
  ['dave', 'office', 'c-d1', '10.0.0.3', '2023-09-20T10:00:00+00:00', null],
];

describe('eduVPN 3.x portal database', () => {
  let path: string;
  beforeAll(() => {
    path = portal3x('db.sqlite', ROWS_3X);
  });

  test.each([
    ['one session', '10.0.0.2', '2023-09-20T10:30:00Z', 'found', ['alice']],
    [
      'two sessions of one user are one user',
      '10.0.0.2',
      '2023-09-20T10:50:10Z',
      'found',
      ['alice', 'alice'],
    ],
    [
      'a hand-over between users within the margin',
      '10.0.0.2',
      '2023-09-20T11:00:01Z',
      'ambiguous',
      ['alice', 'bob'],
    ],
    ['the next user alone', '10.0.0.2', '2023-09-20T11:30:00Z', 'found', ['bob']],
    ['between sessions', '10.0.0.2', '2023-09-20T12:10:00Z', 'none', []],
    ['still connected', '10.0.0.2', '2023-10-01T00:00:00Z', 'found', ['carol']],
    ['before any row (older than the retention)', '10.0.0.2', '2023-08-01T00:00:00Z', 'none', []],
    ['another address, same time', '10.0.0.3', '2023-09-20T11:00:01Z', 'found', ['dave']],
    ['an address nobody had', '10.0.0.9', '2023-09-20T11:00:01Z', 'none', []],
  ] as const)('%s', (_, client, time, status, expected) => {
    expect(users(lookup([path], client, at(time)))).toEqual({ status, users: expected });
  });

  test('a session carries what the abuse desk needs, times as stored and in UTC', () => {
    const answer = lookup([path], '10.0.0.2', at('2023-09-20T11:30:00Z'));
    expect(answer.sessions).toEqual([
      {
        database: path,
        schema: '3.x',
        userId: 'bob',
        profileId: 'internet',
        connectionId: 'c-b1',
        vpnProto: 'wireguard',
        connectedAt: '2023-09-20T11:00:03+00:00',
        disconnectedAt: '2023-09-20T12:00:00+00:00',
        connectedAtUtc: '2023-09-20T11:00:03Z',
        disconnectedAtUtc: '2023-09-20T12:00:00Z',
        timesAre: 'UTC',
      },
    ]);
  });

  test('none says why: the portal keeps a month', () => {
    const answer = lookup([path], '10.0.0.2', at('2023-08-01T00:00:00Z'));
    expect(answer.reason).toMatch(/no connection_log row has 10\.0\.0\.2 .*a month/);
  });

  test('ambiguous lists the sessions and says how many users', () => {
    const answer = lookup([path], '10.0.0.2', at('2023-09-20T11:00:01Z'));
    expect(answer.reason).toMatch(/^2 users had 10\.0\.0\.2 at 2023-09-20T11:00:01Z/);
  });

  test('reading leaves the database file and its directory as they were', () => {
    const before = { hash: sha256(readFileSync(path)), mtime: statSync(path).mtimeMs };
    const files = readdirSync(dir).sort();
    lookup([path], '10.0.0.2', at('2023-09-20T10:30:00Z'));
    expect({ hash: sha256(readFileSync(path)), mtime: statSync(path).mtimeMs }).toEqual(before);
    expect(readdirSync(dir).sort()).toEqual(files);
  });

  test('the portal can keep writing while the trace has the database open', () => {
    const databases = openPortalDatabases([path], PLUS_TWO, MARGIN);
    try {
      const writer = new Database(path);
      writer
        .prepare(
          `INSERT INTO connection_log (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at)
           VALUES ('erin', 'office', 'openvpn', 'c-e1', '10.0.0.7', 'fd00::7', '2023-09-21T00:00:00+00:00')`,
        )
        .run();
      writer.close();
      expect(users(databases.sessionsOf('10.0.0.7', at('2023-09-22T00:00:00Z')))).toEqual({
        status: 'found',
        users: ['erin'],
      });
    } finally {
      databases.close();
    }
  });
});

describe('eduVPN 2.x server-api database', () => {
  let path: string;
  beforeAll(() => {
    path = serverApi2x('db2.sqlite', [
      ['eve', 'cn-eve', 'internet', '10.0.0.2', '2020-12-26 13:00:00', '2020-12-26 14:00:00'],
      ['frank', 'cn-frank', 'internet', '10.0.0.2', '2020-12-26 14:00:02', null],
      [null, 'cn-gone', 'office', '10.0.0.5', '2020-12-26 13:00:00', '2020-12-26 15:00:00'],
    ]);
  });

  test.each([
    [
      'times are read in the local zone (+02:00)',
      '10.0.0.2',
      '2020-12-26T11:30:00Z',
      'found',
      ['eve'],
    ],
    [
      'the same wall time in UTC would be wrong',
      '10.0.0.2',
      '2020-12-26T13:30:00Z',
      'found',
      ['frank'],
    ],
    [
      'a hand-over within the margin',
      '10.0.0.2',
      '2020-12-26T12:00:01Z',
      'ambiguous',
      ['eve', 'frank'],
    ],
    ['before any session', '10.0.0.2', '2020-12-26T10:00:00Z', 'none', []],
    ['a row without user id', '10.0.0.5', '2020-12-26T11:30:00Z', 'found', [null]],
  ] as const)('%s', (_, client, time, status, expected) => {
    expect(users(lookup([path], client, at(time)))).toEqual({ status, users: expected });
  });

  test('a 2.x session says which zone its times were read in', () => {
    const [session] = lookup([path], '10.0.0.2', at('2020-12-26T11:30:00Z')).sessions;
    expect(session).toMatchObject({
      schema: '2.x',
      connectionId: 'cn-eve',
      vpnProto: null,
      connectedAt: '2020-12-26 13:00:00',
      connectedAtUtc: '2020-12-26T11:00:00Z',
      timesAre: 'Test/PlusTwo (assumed: eduVPN 2.x stores times without a zone)',
    });
  });
});

describe('databases that cannot be used', () => {
  test('a missing database: the user is unavailable, and why', () => {
    const answer = lookup([join(dir, 'none.sqlite')], '10.0.0.2', 0);
    expect(answer.status).toBe('unavailable');
    expect(answer.reason).toBe(`the user is unknown: ${join(dir, 'none.sqlite')} does not exist`);
  });

  test('a file that is not SQLite, and a SQLite file without connection_log', () => {
    const garbage = join(dir, 'garbage.sqlite');
    writeFileSync(garbage, 'not a database, just text that is long enough to have a header\n');
    const other = join(dir, 'other.sqlite');
    new Database(other).exec('CREATE TABLE t (x)').close();
    const answer = lookup([garbage, other], '10.0.0.2', 0);
    expect(answer.status).toBe('unavailable');
    expect(answer.reason).toMatch(
      /garbage\.sqlite cannot be read \(.+\); .*other\.sqlite has no eduVPN connection_log table$/,
    );
  });

  test('one usable database is enough: the 3.x one when the 2.x one is missing', () => {
    const path = portal3x('only.sqlite', ROWS_3X);
    const answer = lookup(
      [path, join(dir, 'missing-2x.sqlite')],
      '10.0.0.2',
      at('2023-09-20T10:30:00Z'),
    );
    expect(users(answer)).toEqual({ status: 'found', users: ['alice'] });
  });

  test('sessions from a 3.x and a 2.x database together (an upgraded server)', () => {
    const newer = portal3x('up3.sqlite', [
      ['zoe', 'x', 'c', '10.0.0.2', '2023-09-20T10:00:00+00:00', null],
    ]);
    const older = serverApi2x('up2.sqlite', [
      ['yann', 'cn', 'x', '10.0.0.2', '2023-09-20 12:00:00', null],
    ]);
    const answer = lookup([newer, older], '10.0.0.2', at('2023-09-20T11:00:00Z'));
    expect(users(answer)).toEqual({ status: 'ambiguous', users: ['zoe', 'yann'] });
  });
});

describe('times as eduVPN 3.x stores them', () => {
  test('a 3.x time stored without an offset is UTC, as its session says, not the local time', () => {
    const path = portal3x('no-offset.sqlite', [
      ['alice', 'o', 'c-a', '10.0.0.2', '2023-09-20 10:00:00', '2023-09-20 11:00:00'],
      ['bob', 'o', 'c-b', '10.0.0.2', '2023-09-20 11:00:30', null],
    ]);
    const answer = lookup([path], '10.0.0.2', at('2023-09-20T10:30:00Z'));
    expect(users(answer)).toEqual({ status: 'found', users: ['alice'] });
    expect(answer.sessions[0]).toMatchObject({
      connectedAtUtc: '2023-09-20T10:00:00Z',
      timesAre: 'UTC',
    });
  });

  test('fractional seconds and a +0000 offset are read, the fraction dropped', () => {
    const path = portal3x('fractions.sqlite', [
      [
        'alice',
        'o',
        'c-a',
        '10.0.0.2',
        '2023-09-20T10:00:00.123456+00:00',
        '2023-09-20T11:00:00.999+0000',
      ],
    ]);
    expect(lookup([path], '10.0.0.2', at('2023-09-20T11:00:05Z')).sessions[0]).toMatchObject({
      userId: 'alice',
      connectedAtUtc: '2023-09-20T10:00:00Z',
      disconnectedAtUtc: '2023-09-20T11:00:00Z',
    });
    expect(lookup([path], '10.0.0.2', at('2023-09-20T11:00:06Z')).status).toBe('none');
  });
});

/** user, ip_four, ip_six, connected_at (an open OpenVPN session) */
function portal3xWithIpv6(name: string, rows: readonly [string, string, string, string][]): string {
  const path = portal3x(name, []);
  const db = new Database(path);
  const insert = db.prepare(
    `INSERT INTO connection_log (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at)
     VALUES (?, 'p', 'openvpn', 'c', ?, ?, ?)`,
  );
  for (const row of rows) insert.run(...row);
  db.close();
  return path;
}

describe('an IPv6 client found by its IPv4 twin (a hint from today’s configuration)', () => {
  const noon = at('2023-09-20T12:00:00Z');
  function lookup6(path: string, client: string, twin: string): UserAnswer {
    const databases = openPortalDatabases([path], PLUS_TWO, MARGIN);
    try {
      return databases.sessionsOf(client, noon, twin);
    } finally {
      databases.close();
    }
  }

  test('a row with the twin’s IPv4 address but another IPv6 address was another client’s session', () => {
    // Today fd00::2 pairs with 10.0.0.2; then 10.0.0.2 went with fd00::1000 (an OpenVPN that
    // pooled IPv6 from network + 0x1000, or a range renumbered since).
    const path = portal3xWithIpv6('twin-other.sqlite', [
      ['alice', '10.0.0.2', 'fd00::1000', '2023-09-20T10:00:00+00:00'],
    ]);
    expect(users(lookup6(path, 'fd00::2', '10.0.0.2'))).toEqual({ status: 'none', users: [] });
  });

  test('the twin finds a row whose IPv6 address is the client’s in another text form', () => {
    const path = portal3xWithIpv6('twin-form.sqlite', [
      ['alice', '10.0.0.2', 'FD00:0:0:0:0:0:0:2', '2023-09-20T10:00:00+00:00'],
      ['bob', '10.0.0.2', 'fd00::1000', '2023-09-20T10:00:00+00:00'],
    ]);
    expect(users(lookup6(path, 'fd00::2', '10.0.0.2'))).toEqual({
      status: 'found',
      users: ['alice'],
    });
  });
});

describe('a row left open (a server or portal restart), then the address handed on', () => {
  // alice's row was never closed; bob, and later alice again, got the address after her.
  const ROWS: Row3[] = [
    ['alice', 'o', 'c-a1', '10.0.0.2', '2023-09-20T10:00:00+00:00', null],
    ['bob', 'o', 'c-b1', '10.0.0.2', '2023-09-20T11:05:00+00:00', '2023-09-20T11:30:00+00:00'],
    ['alice', 'o', 'c-a2', '10.0.0.2', '2023-09-20T13:00:00+00:00', null],
  ];
  let path: string;
  beforeAll(() => {
    path = portal3x('left-open.sqlite', ROWS);
  });

  test('after the next session ended, the open row alone names nobody with confidence', () => {
    const answer = lookup([path], '10.0.0.2', at('2023-09-20T12:00:00Z'));
    expect(users(answer)).toEqual({ status: 'ambiguous', users: ['alice'] });
    expect(answer.reason).toBe(
      "the only sessions of 10.0.0.2 at 2023-09-20T12:00:00Z (within 5 s) are in doubt: alice's session (connected 2023-09-20T10:00:00+00:00) has no disconnect time, but bob connected with the same address at 2023-09-20T11:05:00Z: the row may have been left open by a restart, and alice may no longer have had the address",
    );
  });

  test.each([
    ['before the next session began', '2023-09-20T11:00:00Z', 'found', ['alice']],
    ['as the next session began', '2023-09-20T11:05:04Z', 'ambiguous', ['alice', 'bob']],
    ['during the next session', '2023-09-20T11:10:00Z', 'ambiguous', ['alice', 'bob']],
    ['once the same user has it again', '2023-09-20T14:00:00Z', 'found', ['alice', 'alice']],
  ] as const)('%s', (_, time, status, expected) => {
    expect(users(lookup([path], '10.0.0.2', at(time)))).toEqual({ status, users: expected });
  });
});

describe('a row whose times cannot be read', () => {
  test('cannot be ruled out, and names its user with no confidence', () => {
    const path = portal3x('unreadable.sqlite', [
      ['alice', 'o', 'c-a', '10.0.0.2', 'yesterday', 'today'],
    ]);
    const answer = lookup([path], '10.0.0.2', at('2023-09-20T12:00:00Z'));
    expect(users(answer)).toEqual({ status: 'ambiguous', users: ['alice'] });
    expect(answer.reason).toMatch(
      /in doubt: the times of alice's session \(connected "yesterday", disconnected "today"\) cannot be read/,
    );
  });

  test('beside a readable session of the same user, the user is found', () => {
    const path = portal3x('unreadable-and-not.sqlite', [
      ['alice', 'o', 'c-a', '10.0.0.2', 'yesterday', null],
      ['alice', 'o', 'c-b', '10.0.0.2', '2023-09-20T11:00:00+00:00', null],
    ]);
    expect(users(lookup([path], '10.0.0.2', at('2023-09-20T12:00:00Z')))).toEqual({
      status: 'found',
      users: ['alice', 'alice'],
    });
  });
});

describe('a database the portal is writing, or holds locked', () => {
  test('WAL mode: what the portal committed is read, even before a checkpoint; an open transaction is not', () => {
    const path = portal3x('wal.sqlite', []);
    const writer = new Database(path);
    try {
      writer.pragma('journal_mode = WAL');
      writer.pragma('wal_autocheckpoint = 0');
      const insert = writer.prepare(
        `INSERT INTO connection_log (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at, disconnected_at)
         VALUES (?, 'o', 'openvpn', 'c', '10.0.0.2', 'fd00::2', ?, ?)`,
      );
      insert.run('alice', '2023-09-20T10:00:00+00:00', null);
      writer
        .prepare("UPDATE connection_log SET disconnected_at = '2023-09-20T11:00:00+00:00'")
        .run();
      insert.run('bob', '2023-09-20T11:00:30+00:00', null);
      writer.exec('BEGIN IMMEDIATE');
      insert.run('carol', '2023-09-20T11:30:00+00:00', null);
      expect(users(lookup([path], '10.0.0.2', at('2023-09-20T12:00:00Z')))).toEqual({
        status: 'found',
        users: ['bob'],
      });
      writer.exec('COMMIT');
      expect(users(lookup([path], '10.0.0.2', at('2023-09-20T12:00:00Z')))).toEqual({
        status: 'ambiguous',
        users: ['bob', 'carol'],
      });
    } finally {
      writer.close();
    }
  });

  test('a database locked by the portal longer than the busy timeout: the user is unavailable, and why', () => {
    const path = portal3x('locked.sqlite', ROWS_3X);
    const writer = new Database(path);
    try {
      writer.exec('BEGIN EXCLUSIVE');
      const answer = lookup([path], '10.0.0.2', at('2023-09-20T10:30:00Z'));
      expect(answer.status).toBe('unavailable');
      expect(answer.reason).toBe(
        `the user is unknown: ${path} cannot be read (database is locked)`,
      );
    } finally {
      writer.exec('ROLLBACK');
      writer.close();
    }
    // It waits out the 2 s busy timeout, on a machine that CI may keep busy.
  }, 20_000);

  test('an empty file, as SQLite leaves one it was asked to open, is no eduVPN database', () => {
    const empty = join(dir, 'empty.sqlite');
    writeFileSync(empty, '');
    expect(lookup([empty], '10.0.0.2', 0).reason).toBe(
      `the user is unknown: ${empty} has no eduVPN connection_log table`,
    );
  });
});
