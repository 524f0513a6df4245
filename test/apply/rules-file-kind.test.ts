/**
 * A rules file that is no readable file: one sentence that says what it is and what to do
 * (found by an audit: a directory or a loop of symbolic links was "cannot be read: check its
 * permissions"), and nothing changed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';
import { ALPHA } from '../helpers/profiles.js';

let site: FakeSite;

beforeEach(() => {
  site = createFakeSite(new FakeNatTable());
  site.sandbox.writeProfiles([ALPHA]);
});

afterEach(() => {
  site.sandbox.remove();
});

test.each([
  [
    'a directory',
    () => {
      mkdirSync(site.sandbox.rulesFile);
    },
    /is a directory: firewall\.rulesFile must name a file/,
  ],
  [
    'a loop of symbolic links',
    () => {
      symlinkSync(site.sandbox.rulesFile, site.sandbox.rulesFile);
    },
    /is a loop of symbolic links: replace it by the file/,
  ],
])('the rules file is %s', async (_, make, message) => {
  make();
  const before = site.table.save();
  const error: unknown = await site.apply().catch((caught: unknown) => caught);
  expect(error).toMatchObject({ code: 'E_RULES_FILE' });
  expect((error as Error).message).toMatch(message);
  expect((error as Error).message.startsWith(site.sandbox.rulesFile)).toBe(true);
  expect(site.table.save()).toBe(before);
});

test('the rules file is a FIFO: refused at once, not read forever under the lock', () => {
  execFileSync('mkfifo', [site.sandbox.rulesFile]);
  // In a child (the build, as the CLI tests use it): a read that blocks would block this
  // process, beyond the test's timeout.
  const source = resolve('dist/src');
  const script = `
    const { applyRuleset } = await import('${source}/apply/apply.js');
    const { loadConfig } = await import('${source}/config-file.js');
    const { discover } = await import('${source}/cli/discovery.js');
    const runner = { run: async (command) => { throw new Error('no kernel here: ' + command); } };
    const clock = { now: () => Date.now(), sleep: async () => undefined };
    await applyRuleset(loadConfig(${JSON.stringify(site.sandbox.configFile)}), { runner, clock, discover })
      .then(() => console.log('applied'), (error) => console.log(error.code, error.message));
  `;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(child.signal).toBeNull();
  expect(child.stdout).toMatch(/^E_RULES_FILE .* is no regular file \(a FIFO, socket or device\)/);
  rmSync(site.sandbox.rulesFile);
});
