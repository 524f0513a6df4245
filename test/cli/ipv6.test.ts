/**
 * The IPv6 side of the command line (issue 14, first half): plan, lookup of a twin, check's
 * warning, apply --dry-run, and an apply that says honestly that IPv6 rules are not loaded.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type Sandbox } from '../helpers/sandbox.js';
import { runMain } from '../helpers/run-main.js';

const run = runMain;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-ipv6-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The bundled example's eduVPN files (IPv6 ranges fd20::/64, fd42::/64, fd43::/64, fd50::/64). */
function configWith(nat6: string, outInterface = 'eth0'): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    readFileSync('examples/config.yaml', 'utf8')
      .replace('outInterface: eth0', `outInterface: ${outInterface}`)
      .replace(
        /^firewall:\n[\s\S]*$/m,
        `firewall:\n  rulesFile: ${join(dir, 'rules.v4')}\n  rulesFile6: ${join(dir, 'rules.v6')}\n  archiveDir: ${join(dir, 'archive')}\n  stateFile: ${join(dir, 'state.json')}\n` +
          nat6,
      ),
  );
  return file;
}

const PORTS = 'nat6:\n  publicAddresses: [2001:db8::1]\n';

describe('plan', () => {
  test('--json has the IPv6 side with twins', async () => {
    const result = await run('plan', '--json', '--config', configWith(PORTS));
    expect(result.status).toBe(0);
    const plan = JSON.parse(result.stdout) as {
      ipv6: { mode: string; clients: number; blockSize: number; pools: { firstClient: unknown }[] };
    };
    expect(plan.ipv6.mode).toBe('ports');
    expect(plan.ipv6.clients).toBe(872);
    expect(plan.ipv6.blockSize).toBe(64);
    expect(plan.ipv6.pools[0]?.firstClient).toEqual({
      client: 'fd42::2',
      twin: '10.42.0.2',
      to: '[2001:db8::1]:65472-65535',
    });
  });

  test('the table lists each pool with its first and last twin', async () => {
    const result = await run('plan', '--config', configWith(PORTS));
    expect(result.stdout).toContain(
      'IPv6 (nat6): 872 clients on 2001:db8::1: 64 ports per client, 1008 blocks per address, room for 1008',
    );
    expect(result.stdout).toMatch(
      /^internet +wireguard +- +fd43::\/64 +253 +fd43::2 \(10\.43\.0\.2\) -> \[2001:db8::1\]:49856-49919 +fd43::fe \(10\.43\.0\.254\) -> \[2001:db8::1\]:33728-33791$/m,
    );
  });

  test('without nat6 it says IPv6 is not traceable', async () => {
    const result = await run('plan', '--config', configWith(''));
    expect(result.stdout).toContain(
      'IPv6: not translated by traceable-nat (no nat6): IPv6 clients are translated by the firewall but not traceable; set nat6.publicAddresses or nat6.publicPrefix',
    );
    const json = JSON.parse((await run('plan', '--json', '--config', configWith(''))).stdout) as {
      ipv6: unknown;
    };
    expect(json.ipv6).toBeNull();
  });

  test('a public prefix too small: one sentence with the config line, exit 2', async () => {
    const result = await run(
      'plan',
      '--config',
      configWith('nat6:\n  publicPrefix: 2001:db8:100::/48\n'),
    );
    expect(result.status).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(
      /config\.yaml:\d+: nat6\.publicPrefix 2001:db8:100::\/48 is too small for the IPv6 client ranges .*use a \/11 or larger prefix/,
    );
  });
});

describe('lookup', () => {
  test('an IPv6 client answers with its twin and its block', async () => {
    const result = await run('lookup', 'fd43::4d', '--config', configWith(PORTS));
    expect(result.status).toBe(0);
    // Nothing is applied in this sandbox: the plan, said to be one (test/cli/lookup-now.test.ts).
    expect(result.stdout).toMatch(
      /^fd43::4d \(twin of 10\.43\.0\.77\) \(profile internet, fd43::\/64\) -> \[2001:db8::1\] ports 45056-45119\n {2}planned: nothing is applied yet /,
    );
    const ipv4 = await run('lookup', '10.43.0.77', '--config', configWith(PORTS));
    expect(ipv4.stdout).toContain('192.0.2.1 ports 45056-45119');
  });

  test('in prefix mode with its own public address', async () => {
    const result = await run(
      'lookup',
      'fd43::4d',
      '--config',
      configWith('nat6:\n  publicPrefix: "2000::/11"\n'),
    );
    expect(result.stdout).toMatch(
      /^fd43::4d \(twin of 10\.43\.0\.77\) \(profile internet, fd43::\/64\) -> 2003::4d \(all ports\)\n {2}planned: /,
    );
  });

  test('without nat6, the twin and the honest note', async () => {
    const result = await run('lookup', 'fd43::4d', '--config', configWith(''));
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      'fd43::4d (twin of 10.43.0.77) (profile internet, fd43::/64): not translated by traceable-nat (no nat6); IPv6 clients are translated by the firewall but not traceable; set nat6.publicAddresses or nat6.publicPrefix\n',
    );
  });

  test('an address that is no client, and --at for IPv6 with nothing archived', async () => {
    const none = await run('lookup', 'fd43::1', '--config', configWith(PORTS));
    expect(none.status).toBe(1);
    expect(none.stdout).toBe('fd43::1 is not an IPv6 client address of any profile\n');
    const at = await run(
      'lookup',
      'fd43::4d',
      '--at',
      '2026-01-01T00:00:00Z',
      '--config',
      configWith(PORTS),
    );
    // Looked up in the archives now (test/cli/trace6.test.ts); there are none here.
    expect(at.status).toBe(1);
    expect(at.stdout).toMatch(/^Note {7}there are no archived rulesets in /m);
  });
});

describe('check', () => {
  test('IPv6 ranges without nat6: a warn line, exit 0', async () => {
    const result = await run('check', '--config', configWith('', 'lo'));
    expect(result.stdout).not.toContain('FAIL');
    expect(result.stdout).toMatch(
      /^warn {2}IPv6: IPv6 clients are translated by the firewall but not traceable; set nat6\.publicAddresses or nat6\.publicPrefix$/m,
    );
    expect(result.status).toBe(0);
  });

  test('with nat6: the IPv6 plan is checked', async () => {
    const result = await run('check', '--config', configWith(PORTS, 'lo'));
    expect(result.status).toBe(0);
    expect(result.stdout).not.toContain('warn');
    expect(result.stdout).toMatch(
      /^ok {4}IPv6 \(nat6\): 872 IPv6 clients get 64 ports each on 1 public address; .*rules\.v6 can be merged$/m,
    );
  });
});

test('apply --dry-run prints rules.v4 and then the planned rules.v6, and writes nothing', async () => {
  writeFileSync(join(dir, 'rules.v6'), readFileSync('test/fixtures/render/eduvpn3-rules.v6'));
  const result = await run('apply', '--dry-run', '--config', configWith(PORTS));
  expect(result.status).toBe(0);
  const [v4, v6] = result.stdout.split(/^# IPv6: .*rules\.v6 as planned by nat6\n/m);
  expect(v4).toContain(' -s 10.42.0.2/32 -p tcp -j SNAT --to-source 192.0.2.1:65472-65535\n');
  expect(v6).toContain(' -s fd42::2/128 -p tcp -j SNAT --to-source [2001:db8::1]:65472-65535\n');
  expect(v6).toContain(
    '-A POSTROUTING -o eth0 -j TNAT\n-A POSTROUTING -s fc00::/7 -o eth0 -j MASQUERADE\n',
  );
  expect(v6).toContain('-A FORWARD -i wg0 -o eth0 -j ACCEPT\n');
  expect(readFileSync(join(dir, 'rules.v6'), 'utf8')).toBe(
    readFileSync('test/fixtures/render/eduvpn3-rules.v6', 'utf8'),
  );
  expect(() => readFileSync(join(dir, 'rules.v4'))).toThrow();
});

// Network namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel('apply with nat6 set (network namespace)', () => {
  let net: Topology;
  let sandbox: Sandbox;

  beforeAll(() => {
    net = createTopology([]);
    sandbox = createSandbox('iptables');
    sandbox.writeProfiles([{ id: 'alpha', wireguard: '10.42.0.0/24' }]);
  });
  afterAll(() => {
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('loads the IPv6 rules beside the IPv4 ones, without a warning', () => {
    sandbox.writeConfig();
    const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<string, unknown>;
    config.nat6 = { publicAddresses: ['2001:db8::1'] };
    writeFileSync(sandbox.configFile, JSON.stringify(config));
    const result = runCli(net.gateway, ['apply', '--config', sandbox.configFile]);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^applied: /);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('253 IPv6 clients on 2001:db8::1, 64 ports each');
    expect(net.exec(net.gateway, ['ip6tables-save', '-t', 'nat'])).toContain(
      ' -s fd0a:2a::2/128 -p tcp -j SNAT --to-source [2001:db8::1]:65472-65535',
    );
  });
});
