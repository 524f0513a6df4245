/**
 * Issue 14 end to end: the real CLI applies nat6 in a gateway namespace, real IPv6 TCP and UDP
 * flows leave through it, and the (address, port) the server saw is traced by the real CLI back
 * to the client, its IPv4 twin and its eduVPN user (found by ip_six in the portal database).
 * Port blocks and prefix mode, both backends. Needs root (CI runs as root).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { SWITCH_MARGIN_SECONDS } from '../../src/trace/timeline.js';
import { isRoot } from '../helpers/netns.js';
import { createTopology6, type Topology6 } from '../helpers/flows6.js';
import { createSandbox, runCli, type Sandbox } from '../helpers/sandbox.js';
import { ALPHA } from '../helpers/profiles.js';

/** ALPHA (10.42.0.0/24) has fd0a:2a::/64 in the sandbox: twins fd0a:2a::2 ... fd0a:2a::fe. */
const CLIENTS = { 'fd0a:2a::2': 'alice', 'fd0a:2a::4d': 'bob' } as const;
const TWINS = { 'fd0a:2a::2': '10.42.0.2', 'fd0a:2a::4d': '10.42.0.77' } as const;

interface TraceAnswer {
  status: string;
  candidates: {
    client: string;
    twin?: string | null;
    user: { status: string; sessions: { userId: string }[] };
  }[];
}

// Network namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)('IPv6 traced end to end (%s)', (backend) => {
  let net: Topology6;
  let sandbox: Sandbox;

  const configure = (nat6: Record<string, unknown>) => {
    sandbox.writeConfig({ nat6 });
    const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
    config.trace = {
      portalDatabase: join(sandbox.dir, 'db.sqlite'),
      serverApiDatabase: join(sandbox.dir, 'no-such-2x.sqlite'),
    };
    writeFileSync(sandbox.configFile, JSON.stringify(config, null, 2));
  };
  const trace = (args: readonly string[]): TraceAnswer & { exit: number | null } => {
    const at = String(Math.floor(Date.now() / 1000));
    const result = runCli(undefined, [
      'trace',
      '--at',
      at,
      ...args,
      '--json',
      '--config',
      sandbox.configFile,
    ]);
    expect(result.stderr).toBe('');
    return { ...(JSON.parse(result.stdout) as TraceAnswer), exit: result.status };
  };

  beforeAll(() => {
    net = createTopology6({
      clients: Object.keys(CLIENTS),
      clientRoute: 'fd0a:2a::/64',
      publicRoute: '2001:db8:100::/48',
    });
    sandbox = createSandbox(backend);
    sandbox.writeProfiles([ALPHA]);
    const db = new Database(join(sandbox.dir, 'db.sqlite'));
    db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
      vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL,
      ip_six TEXT NOT NULL, connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER,
      disconnected_at TEXT)`);
    const since = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, '+00:00');
    const insert = db.prepare(`INSERT INTO connection_log (user_id, profile_id, vpn_proto,
      connection_id, ip_four, ip_six, connected_at) VALUES (?, 'alpha', 'wireguard', ?, ?, ?, ?)`);
    for (const [client, user] of Object.entries(CLIENTS))
      insert.run(user, `conn-${user}`, TWINS[client as keyof typeof TWINS], client, since);
    db.close();
  });
  afterAll(() => {
    (net as Topology6 | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test.each([
    ['port blocks', { publicAddresses: ['2001:db8::1'] }],
    ['prefix mode', { publicPrefix: '2001:db8:100::/48' }],
  ])('%s: every flow the server saw names its client and user', async (mode, nat6) => {
    configure(nat6);
    const applied = runCli(net.gateway, ['apply', '--config', sandbox.configFile]);
    expect(applied.stderr).toBe('');
    expect(applied.status).toBe(0);
    // Out of the seconds around the switch, where trace rightly gives both rulesets' answers.
    await sleep((SWITCH_MARGIN_SECONDS + 1) * 1000);
    const flows = await net.flows(Object.keys(CLIENTS));
    const named: string[] = [];
    expect(flows).toHaveLength(Object.keys(CLIENTS).length * 3);
    for (const flow of flows) {
      const answer = trace(['--address', flow.address, '--port', String(flow.port)]);
      expect({ flow, status: answer.status, exit: answer.exit }).toEqual({
        flow,
        status: 'found',
        exit: 0,
      });
      const [candidate] = answer.candidates;
      const client = (candidate?.client ?? '') as keyof typeof CLIENTS;
      named.push(client);
      expect(Object.keys(CLIENTS)).toContain(client);
      expect(candidate?.twin).toBe(TWINS[client]);
      expect(candidate?.user.sessions.map((session) => session.userId)).toEqual([CLIENTS[client]]);
      if (mode === 'prefix mode') {
        // The address alone names the client.
        expect(trace(['--address', flow.address]).candidates[0]?.client).toBe(client);
      }
    }
    // Both clients were named: the answers are not all one.
    expect(new Set(named).size).toBe(Object.keys(CLIENTS).length);
  });
});
