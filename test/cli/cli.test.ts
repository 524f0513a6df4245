/**
 * The command line in-process, for everything that does not touch the kernel: exit statuses,
 * one-sentence errors with file and line, and no stack trace for bad input.
 */
import { mkdtempSync, rmSync, writeFileSync, readFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMain, type MainRun } from '../helpers/run-main.js';

const run = runMain;

const EXAMPLE = 'examples/config.yaml';
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-cli-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function configWith(portalConfig: string, extra = ''): string {
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    `eduvpn:\n  source: portal\n  portalConfig: ${portalConfig}\nnat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  rulesFile: ${join(dir, 'rules.v4')}\n  archiveDir: ${join(dir, 'archive')}\n  stateFile: ${join(dir, 'state.json')}\n${extra}`,
  );
  return file;
}

function expectOneSentence(result: MainRun, pattern: RegExp): void {
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
}

describe('the bundled example', () => {
  test('profiles lists the pools and their total', async () => {
    const result = await run('profiles', '--config', EXAMPLE);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(
      /^source: portal \(examples\/etc\/vpn-user-portal\/config\.php\)/,
    );
    expect(result.stdout).toContain('872 clients in 8 pools');
  });

  test('profiles --json is machine readable', async () => {
    const parsed = JSON.parse((await run('profiles', '--json', '--config', EXAMPLE)).stdout) as {
      clients: number;
      pools: { firstClient: string }[];
    };
    expect(parsed.clients).toBe(872);
    expect(parsed.pools[0]?.firstClient).toBe('10.42.0.2');
  });

  test('check passes', async () => {
    // The example's eth0 need not exist where the tests run; lo always does.
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      readFileSync(EXAMPLE, 'utf8').replace('outInterface: eth0', 'outInterface: lo'),
    );
    const result = await run('check', '--config', config);
    expect(result.stdout).not.toContain('FAIL');
    expect(result.status).toBe(0);
  });

  test('plan and lookup agree', async () => {
    const plan = JSON.parse((await run('plan', '--json', '--config', EXAMPLE)).stdout) as {
      blockSize: number;
      pools: { firstClient: { client: string; to: string } }[];
    };
    expect(plan.blockSize).toBe(64);
    const first = plan.pools[0]?.firstClient;
    expect(first?.to).toBe('192.0.2.1:65472-65535');
    const lookup = await run('lookup', first?.client ?? '', '--config', EXAMPLE);
    expect(lookup.stdout).toContain('192.0.2.1 ports 65472-65535');
  });

  test('apply --dry-run prints the same complete rules file every time and writes nothing', async () => {
    const config = configWith(join(process.cwd(), 'examples/etc/vpn-user-portal/config.php'));
    const first = await run('apply', '--dry-run', '--config', config);
    const second = await run('apply', '-n', '--config', config);
    expect(first.status).toBe(0);
    expect(first.stdout).toBe(second.stdout);
    expect(first.stdout).toMatch(/^\*nat\n/);
    expect(first.stdout).toContain('-A POSTROUTING -o eth0 -j TNAT\n');
    expect(first.stdout).toContain(
      ' -s 10.42.0.2/32 -p tcp -j SNAT --to-source 192.0.2.1:65472-65535\n',
    );
    expect(() => readFileSync(join(dir, 'rules.v4'))).toThrow();
  });
});

describe('bad input: one sentence, exit 2, no stack trace', () => {
  test('a missing configuration file', async () => {
    expectOneSentence(
      await run('profiles', '--config', join(dir, 'none.yaml')),
      /none\.yaml does not exist: pass --config FILE/,
    );
  });

  test('a missing eduVPN file for an explicit source', async () => {
    expectOneSentence(
      await run('profiles', '--config', configWith(join(dir, 'config.php'))),
      /config\.php/,
    );
  });

  test('a PHP file cut off in the middle of a write', async () => {
    const example = readFileSync('examples/etc/vpn-user-portal/config.php', 'utf8');
    const php = join(dir, 'config.php');
    writeFileSync(php, example.slice(0, Math.floor(example.length / 2)));
    expectOneSentence(
      await run('profiles', '--config', configWith(php)),
      /config\.php:\d+:\d+: .*half-written|config\.php:\d+:\d+: /,
    );
  });

  test('a public client range', async () => {
    const php = join(dir, 'config.php');
    writeFileSync(
      php,
      "<?php return ['ProfileList' => [['profileId' => 'x', 'wRangeFour' => '192.0.2.0/24', 'wRangeSix' => 'fd00::/64']]];\n",
    );
    expectOneSentence(
      await run('profiles', '--config', configWith(php)),
      /config\.php:1:\d+: .*192\.0\.2\.0\/24/,
    );
  });

  test('clients that do not fit', async () => {
    const php = join(dir, 'config.php');
    writeFileSync(
      php,
      "<?php return ['ProfileList' => [['profileId' => 'x', 'wRangeFour' => '10.0.0.0/16', 'wRangeSix' => 'fd00::/64']]];\n",
    );
    expectOneSentence(
      await run('plan', '--config', configWith(php)),
      /65533 clients need 65533 blocks/,
    );
  });

  test('check reports every failing step and exits 2', async () => {
    const php = join(dir, 'config.php');
    writeFileSync(
      php,
      "<?php return ['ProfileList' => [['profileId' => 'x', 'wRangeFour' => '10.0.0.0/16', 'wRangeSix' => 'fd00::/64']]];\n",
    );
    const result = await run('check', '--config', configWith(php));
    expect(result.status).toBe(2);
    expect(result.stdout).toMatch(/^ok {4}eduVPN configuration: 65533 clients/m);
    expect(result.stdout).toMatch(
      /^FAIL {2}port blocks and rules file: 65533 clients need 65533 blocks/m,
    );
  });

  test('a rules file with a syntax error is refused and left alone', async () => {
    const rules = join(dir, 'rules.v4');
    writeFileSync(rules, '*nat\n-A POSTROUTING -j MASQUERADE\n');
    cpSync('examples/etc/vpn-user-portal/config.php', join(dir, 'config.php'));
    const result = await run('apply', '-n', '--config', configWith(join(dir, 'config.php')));
    expectOneSentence(result, /rules\.v4:\d+: /);
    expect(readFileSync(rules, 'utf8')).toBe('*nat\n-A POSTROUTING -j MASQUERADE\n');
  });

  test('a YAML alias without its anchor: its place, not an internal error', async () => {
    expectOneSentence(
      await run('profiles', '--config', configWith(join(dir, 'config.php'), 'daemon: *nope\n')),
      /^traceable-nat: .*config\.yaml:\d+:9: unresolved alias \*nope: define the anchor &nope before it\n$/,
    );
  });

  test('an IPv6 rules file that is the IPv4 one is refused before anything is read or written', async () => {
    const rules = join(dir, 'rules.v4');
    writeFileSync(rules, '*nat\nCOMMIT\n');
    cpSync('examples/etc/vpn-user-portal/config.php', join(dir, 'config.php'));
    const config = configWith(
      join(dir, 'config.php'),
      `  rulesFile6: ${rules}\nnat6:\n  publicAddresses: ['2001:db8::1']\n`,
    );
    expectOneSentence(
      await run('apply', '-n', '--config', config),
      /config\.yaml:\d+: firewall\.rulesFile6: ".*rules\.v4" is also firewall\.rulesFile: give each its own path/,
    );
    expect(readFileSync(rules, 'utf8')).toBe('*nat\nCOMMIT\n');
  });

  test.each([
    [['frobnicate'], /unknown command "frobnicate"/],
    [['profiles', '--frob'], /Unknown option '--frob'/],
    [['lookup'], /usage: traceable-nat lookup/],
    [['lookup', '10.0.0.300', '--config', EXAMPLE], /"10\.0\.0\.300" is not an IPv4 address/],
  ])('command line %j', async (args, pattern) => {
    expectOneSentence(await run(...args), pattern);
  });
});
