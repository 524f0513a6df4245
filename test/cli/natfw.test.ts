/**
 * `vpn-generate-natfw` in-process: its errors name it and its options as the operator typed
 * them, never traceable-nat or parseArgs' long forms (`--w <value>`).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNatfw } from '../../src/cli/natfw.js';
import type { MainRun } from '../helpers/run-main.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-natfw-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function natfw(...args: string[]): Promise<MainRun> {
  let stdout = '';
  let stderr = '';
  const status = await runNatfw(args, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env: {},
  });
  return { status, stdout, stderr };
}

const HELP = '; run vpn-generate-natfw --help';

describe('a wrong command line: one sentence naming vpn-generate-natfw, exit 2', () => {
  test.each([
    [['-x'], `unknown option -x${HELP}`],
    [['-n', '--frob'], `unknown option --frob${HELP}`],
    // parseArgs takes --w=FILE and --n as long forms of -w and -n; the help knows none.
    [['--w=/tmp/rules.v4'], `unknown option --w${HELP}`],
    [['--n'], `unknown option --n${HELP}`],
    [['rules.v4'], `unexpected argument "rules.v4": give the rules file with -w FILE${HELP}`],
    [['-w'], '-w needs a path: the rules file to write, like -w /etc/iptables/rules.v4'],
    [['-nw'], '-w needs a path: the rules file to write, like -w /etc/iptables/rules.v4'],
    [['-w', ''], '-w needs a path: the rules file to write, like -w /etc/iptables/rules.v4'],
    [
      ['-w', '-n'],
      '-w needs a path: the rules file to write, like -w /etc/iptables/rules.v4, not the option -n',
    ],
    [['-c'], '-c needs a command: the one to run after a new rules file was written'],
    [['-c', ''], '-c needs a command: the one to run after a new rules file was written'],
    [
      ['--config='],
      '--config needs a path: give the configuration file, like --config /etc/traceable-nat/config.yaml',
    ],
    [['--help=yes'], `--help takes no value${HELP}`],
    [['-v=1'], `unknown option -= in -v=1${HELP}`],
    [['-nx'], `unknown option -x in -nx${HELP}`],
  ])('%j', async (args, sentence) => {
    const result = await natfw(...args);
    expect(result).toEqual({ status: 2, stdout: '', stderr: `vpn-generate-natfw: ${sentence}\n` });
  });

  test('a configuration problem is said under its own name too', async () => {
    const result = await natfw('-n', '--config', join(dir, 'none.yaml'));
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      `vpn-generate-natfw: ${join(dir, 'none.yaml')} does not exist: pass --config FILE or create it from config.example.yaml\n`,
    );
  });
});

test('-w naming a file the configuration already uses is refused, and nothing is written', async () => {
  const rules6 = join(dir, 'rules.v6');
  writeFileSync(rules6, '*nat\nCOMMIT\n');
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    `eduvpn:\n  source: portal\n  portalConfig: examples/etc/vpn-user-portal/config.php\nnat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  rulesFile: ${join(dir, 'rules.v4')}\n  rulesFile6: ${rules6}\n  archiveDir: ${join(dir, 'archive')}\n  stateFile: ${join(dir, 'state.json')}\n  lockFile: ${join(dir, 'lock')}\n`,
  );
  const result = await natfw('-n', '--config', config, '-w', rules6);
  expect(result).toEqual({
    status: 2,
    stdout: '',
    stderr: `vpn-generate-natfw: -w "${rules6}" is also firewall.rulesFile6 in ${config}: give -w a path of its own\n`,
  });
  expect(readFileSync(rules6, 'utf8')).toBe('*nat\nCOMMIT\n');
});

test('-w naming an archive is refused: archives are never written over', async () => {
  const config = join(dir, 'config.yaml');
  const archiveDir = join(dir, 'archive');
  writeFileSync(
    config,
    `eduvpn:\n  source: portal\n  portalConfig: examples/etc/vpn-user-portal/config.php\nnat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\nfirewall:\n  rulesFile: ${join(dir, 'rules.v4')}\n  archiveDir: ${archiveDir}\n  stateFile: ${join(dir, 'state.json')}\n  lockFile: ${join(dir, 'lock')}\n`,
  );
  const target = join(archiveDir, 'rules.v4.1700000000');
  const result = await natfw('-n', '--config', config, '-w', target);
  expect(result.status).toBe(2);
  expect(result.stderr).toBe(
    `vpn-generate-natfw: -w "${target}" is named as an archive of firewall.archiveDir (${archiveDir}), and archives are never written over: give -w another file\n`,
  );
  expect(existsSync(target)).toBe(false);
});

test('the spellings the help offers still work: -n -v -wFILE, --config=FILE, -h', async () => {
  const dryRun = await natfw('-nv', `-w${join(dir, 'rules.v4')}`, '--config=examples/config.yaml');
  expect(dryRun.stderr).toBe('');
  expect(dryRun.status).toBe(0);
  expect(dryRun.stdout).toMatch(/^\*nat\n/m);
  const help = await natfw('-h');
  expect(help).toMatchObject({ status: 0, stderr: '' });
  expect(help.stdout).toMatch(/^usage: vpn-generate-natfw /);
});
