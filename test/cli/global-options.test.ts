/**
 * The usual command-line shape: global options before the command as well as after it (as in
 * `git -C DIR`, `systemctl --user`), and `--version`. In-process, on the bundled example.
 */
import { readFileSync } from 'node:fs';
import { parseGlobalOptions } from '../../src/cli/global-options.js';
import { runMain } from '../helpers/run-main.js';

const run = runMain;

const EXAMPLE = 'examples/config.yaml';
const MISSING = '/nonexistent/traceable-nat.yaml';
const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

describe('--config before the command', () => {
  test.each([
    [['--config', EXAMPLE, 'profiles']],
    [['-C', EXAMPLE, 'profiles']],
    [[`--config=${EXAMPLE}`, 'profiles']],
    [['profiles', '--config', EXAMPLE]],
    [['profiles', '-C', EXAMPLE]],
  ])('%j reads the example', async (args) => {
    const result = await run(...args);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('872 clients in 8 pools');
  });

  test('the command gets its own options and positionals after a global --config', async () => {
    const result = await run('-C', EXAMPLE, 'lookup', '10.42.0.2', '--json');
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ client: '10.42.0.2' });
  });

  test('a --config after the command wins over one before it', async () => {
    expect((await run('-C', MISSING, 'profiles', '-C', EXAMPLE)).status).toBe(0);
    const result = await run('-C', EXAMPLE, 'profiles', '--config', MISSING);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(MISSING);
  });

  test('the global one is the one read when the command has none', async () => {
    const result = await run('--config', MISSING, 'check');
    expect(result.status).toBe(2);
    expect(result.stdout + result.stderr).toContain(MISSING);
  });
});

describe('--version', () => {
  test.each([[['--version']], [['-V']], [['-C', EXAMPLE, '--version']]])(
    '%j prints the name and the package version',
    async (args) => {
      const result = await run(...args);
      expect(result).toEqual({ status: 0, stdout: `traceable-nat ${version}\n`, stderr: '' });
    },
  );
});

describe('usage errors before the command: one sentence, exit 2', () => {
  test.each([
    [['--frob', 'profiles'], /Unknown option '--frob'/],
    [['--json', 'plan'], /Unknown option '--json'/],
    [['--config'], /--config/],
    [['-C', EXAMPLE], /^usage: traceable-nat /],
    [['-C', EXAMPLE, 'frobnicate'], /unknown command "frobnicate"/],
  ])('%j', async (args, pattern) => {
    const result = await run(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test('--help before or without a command prints the usage with the global options', async () => {
    const result = await run('--help');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('usage: traceable-nat [--config FILE] <command>');
    expect(result.stdout).toContain('traceable-nat --version');
  });
});

describe('an empty --config: the option needs a path, before or after the command', () => {
  test.each([
    [['--config=', 'plan']],
    [['-C', '', 'plan']],
    [['apply', '--config=']],
    [['apply', '-n', '-C', '']],
    [['-C', EXAMPLE, 'plan', '--config', '']],
  ])('%j', async (args) => {
    const result = await run(...args);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      'traceable-nat: --config (-C) needs a path: give the configuration file, like --config /etc/traceable-nat/config.yaml\n',
    );
    expect(result.stdout).toBe('');
  });
});

describe('parseGlobalOptions', () => {
  test('stops at the command: what follows belongs to the command, even if it looks global', () => {
    expect(parseGlobalOptions(['-C', 'a.yaml', 'trace', '--at', 'now', '-V'])).toEqual({
      config: 'a.yaml',
      help: false,
      version: false,
      command: 'trace',
      rest: ['--at', 'now', '-V'],
    });
  });

  test('-- ends the global options', () => {
    expect(parseGlobalOptions(['--', 'plan', '--json'])).toMatchObject({
      command: 'plan',
      rest: ['--json'],
    });
  });
});
