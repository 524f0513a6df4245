/**
 * `trace`, `trace --batch` and `lookup --at` for IPv6 (issue 14, trace side), in-process over
 * the bundled example's eduVPN files, archives written by the real store from the rendered
 * IPv6 rules, and a portal database with ip_six: the client with its IPv4 twin, the user, a
 * client's own global address, and one sentence with exit 2 for bad input.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { discover } from '../../src/cli/discovery.js';
import { parseConfig } from '../../src/config.js';
import { TwinIndex } from '../../src/mapping/twin6.js';
import { formatIpv4 } from '../../src/net/ipv4.js';
import { formatIpv6 } from '../../src/net/ipv6.js';
import { mapNat6 } from '../../src/render/ruleset6.js';
import type { Map6 } from '../../src/mapping/map6.js';
import { runMain } from '../helpers/run-main.js';
import { writeActivations } from '../trace/archive6-fixtures.js';

const T1 = 1_780_000_000; // 2026-05-28T20:26:40Z
const AT = T1 + 1800;
const ROWS = [['10.42.0.2', '192.0.2.1', 65472, 65535]] as const;
/** A client's own global address, as eduVPN without NAT66 gives it (not in any range here). */
const GLOBAL = '2001:db8:77::4d';

let dir: string;
let configFile: string;
let map: Map6;

function writeConfig(nat6: string): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    readFileSync('examples/config.yaml', 'utf8').replace(
      /^firewall:\n[\s\S]*$/m,
      [
        'firewall:',
        `  rulesFile: ${join(dir, 'rules.v4')}`,
        `  rulesFile6: ${join(dir, 'rules.v6')}`,
        `  archiveDir: ${join(dir, 'archive')}`,
        `  stateFile: ${join(dir, 'state.json')}`,
        'trace:',
        `  portalDatabase: ${join(dir, 'db.sqlite')}`,
        `  serverApiDatabase: ${join(dir, 'no-2x.sqlite')}`,
        nat6,
      ].join('\n'),
    ),
  );
  return file;
}

/** The map apply would have archived, from the example's pools. */
function mapFor(file: string): Map6 {
  const config = parseConfig(readFileSync(file, 'utf8'), file);
  if (!config.nat6) throw new Error('no nat6');
  return mapNat6(config.nat6, discover(config).pools);
}

/** The 47th client of the map (any will do) and its IPv4 twin from today's pools. */
function someClient(of: Map6) {
  const client = [...of.assignments()][47];
  if (!client) throw new Error('too few clients');
  return { ...client, text: formatIpv6(client.client), twinText: formatIpv4(client.twin) };
}

function writePortal(rows: readonly (readonly [string, string, string])[]): void {
  const db = new Database(join(dir, 'db.sqlite'));
  db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
    vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL, ip_six TEXT NOT NULL,
    connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER, disconnected_at TEXT)`);
  const insert = db.prepare(`INSERT INTO connection_log
    (user_id, profile_id, vpn_proto, connection_id, ip_four, ip_six, connected_at, disconnected_at)
    VALUES (?, 'internet', 'wireguard', 'c1', ?, ?, '2026-05-28T20:00:00+00:00', NULL)`);
  for (const row of rows) insert.run(...row);
  db.close();
}

const run = (...args: string[]) => runMain(...args, '--config', configFile);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-trace6-cli-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The configuration with `nat6`, and one activation by `backend` of the map it gives. */
function archiveOne(nat6: string, backend: 'iptables' | 'nftables'): void {
  configFile = writeConfig(nat6);
  map = mapFor(configFile);
  writeActivations(join(dir, 'archive'), [{ at: T1, backend, rows: ROWS, map6: map }]);
}

describe('port blocks', () => {
  beforeEach(() => {
    archiveOne('nat6:\n  publicAddresses: [2001:db8::1]\n', 'iptables');
  });

  test('the client with its twin, and the user found by ip_six', async () => {
    const client = someClient(map);
    writePortal([['alice', client.twinText, client.text]]);
    const port = String(client.block?.first ?? 0);
    const result = await run(
      'trace',
      '--at',
      String(AT),
      '--address',
      '2001:db8::1',
      '--port',
      port,
    );
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(`Client     ${client.text} (twin of ${client.twinText})`);
    expect(result.stdout).toContain(
      `[2001:db8::1] ports ${client.block?.first}-${client.block?.last} (tcp and udp) in rules.v4.${T1}.gz`,
    );
    expect(result.stdout).toMatch(/^User {7}alice: /m);
    expect(result.stdout).toContain(`Answer     FOUND: client ${client.text}, user alice`);
    expect(result.status).toBe(0);
  });

  test('the user found by the twin when the row has another ip_six form', async () => {
    const client = someClient(map);
    writePortal([['bob', client.twinText, '']]);
    const json = await run(
      'trace',
      '--at',
      String(AT),
      '--address',
      '2001:db8::1',
      '--port',
      String(client.block?.last ?? 0),
      '--json',
    );
    const object = JSON.parse(json.stdout) as {
      status: string;
      candidates: { client: string; twin: string; user: { sessions: { userId: string }[] } }[];
    };
    expect(object.status).toBe('found');
    expect(object.candidates.map((c) => [c.client, c.twin, c.user.sessions[0]?.userId])).toEqual([
      [client.text, client.twinText, 'bob'],
    ]);
  });

  test('a batch with an IPv6 row gives the same answer as the single trace', async () => {
    const client = someClient(map);
    writePortal([['alice', client.twinText, client.text]]);
    const port = String(client.block?.first ?? 0);
    const feed = join(dir, 'feed.csv');
    writeFileSync(
      feed,
      `time,address,port\n${AT},192.0.2.1,65500\n${AT},2001:db8::1,${port}\n${AT},2001:db8::1,\n${AT},2001:db8::zz,80\n`,
    );
    const batch = await run('trace', '--batch', feed);
    const lines = batch.stdout.split('\n');
    // The IPv4 row goes the IPv4 way (no session of it in this portal).
    expect(lines[1]).toMatch(/^\d+,192\.0\.2\.1,65500,not-found,10\.42\.0\.2,,,/);
    expect(lines[2]).toBe(`${AT},2001:db8::1,${port},found,${client.text},alice,internet,`);
    expect(lines[3]).toMatch(/,bad-input,,,,.*line 4: 2001:db8::1 was a port-block address/);
    expect(lines[4]).toMatch(
      /,bad-input,,,,.*line 5: address ""2001:db8::zz"" is not an IPv6 address/,
    );
    expect(batch.status).toBe(2);
  });

  test('lookup --at an IPv6 client', async () => {
    const client = someClient(map);
    const result = await run('lookup', client.text, '--at', String(AT));
    expect(result.stdout).toContain(`Client     ${client.text} (twin of ${client.twinText})`);
    expect(result.stdout).toContain(
      `Block      [2001:db8::1] ports ${client.block?.first}-${client.block?.last} (tcp and udp)`,
    );
    expect(result.status).toBe(0);
  });

  test('bad input: one sentence and exit 2', async () => {
    const cases = [
      [['--address', '2001:db8::1/128', '--port', '80'], /is not an IPv6 address/],
      [['--address', 'fe80::1%eth0', '--port', '80'], /is not an IPv6 address/],
      [['--address', '2001:db8::1'], /was a port-block address .* give --port/],
    ] as const;
    for (const [args, message] of cases) {
      const result = await run('trace', '--at', String(AT), ...args);
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.status).toBe(2);
    }
  });

  test("a client's own global address traces to its user through the portal", async () => {
    writePortal([['erin', '10.43.0.9', GLOBAL]]);
    const result = await run('trace', '--at', String(AT), '--address', GLOBAL, '--port', '443');
    expect(result.stdout).toContain(`Client     ${GLOBAL}`);
    expect(result.stdout).toMatch(/^Note .*names it as a VPN client's own address/m);
    expect(result.stdout).toContain(`Answer     FOUND: client ${GLOBAL}, user erin`);
    expect(result.status).toBe(0);
    // Without such a session it stays what it was: no address of ours.
    const stranger = await run(
      'trace',
      '--at',
      String(AT),
      '--address',
      '2001:db8:77::1',
      '--port',
      '443',
    );
    expect(stranger.stdout).toMatch(/^Note {7}2001:db8:77::1 was not one of our public addresses/m);
    expect(stranger.status).toBe(1);
  });
});

describe('prefix mode', () => {
  beforeEach(() => {
    archiveOne('nat6:\n  publicPrefix: 2000::/11\n', 'nftables');
  });

  test('the address alone names the client; a port does not change it, a bad one is exit 2', async () => {
    const client = someClient(map);
    writePortal([['carol', client.twinText, client.text]]);
    const address = formatIpv6(client.publicAddress);
    const bare = await run('trace', '--at', String(AT), '--address', address);
    expect(bare.stdout).toContain(`Query      ${address} any port, tcp or udp`);
    expect(bare.stdout).toContain(`Client     ${client.text} (twin of ${client.twinText})`);
    expect(bare.stdout).toMatch(/every port \(NETMAP fd\S+ -> 2000::\/11\)/);
    expect(bare.stdout).toContain(`Answer     FOUND: client ${client.text}, user carol`);
    expect(bare.status).toBe(0);
    const withPort = await run('trace', '--at', String(AT), '--address', address, '--port', '80');
    expect(withPort.stdout).toContain(`Answer     FOUND: client ${client.text}, user carol`);
    const badPort = await run('trace', '--at', String(AT), '--address', address, '--port', '0');
    expect(badPort.stderr).toMatch(/--port "0" is not a port number/);
    expect(badPort.status).toBe(2);
  });

  test("the twins come from today's pools, and are left out when those cannot be read", async () => {
    const client = someClient(map);
    const pools = discover(parseConfig(readFileSync(configFile, 'utf8'), configFile)).pools;
    expect(new TwinIndex(pools).clientOf(client.client)?.client4).toBe(client.twin);
    writeFileSync(
      configFile,
      readFileSync(configFile, 'utf8').replaceAll('examples/etc/', `${join(dir, 'gone')}/`),
    );
    const result = await run(
      'trace',
      '--at',
      String(AT),
      '--address',
      formatIpv6(client.publicAddress),
    );
    expect(result.stdout).toContain(`Client     ${client.text}\n`);
  });
});
