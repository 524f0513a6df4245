/**
 * A rules file that is no readable file: one sentence that says what it is and what to do
 * (found by an audit: a directory or a loop of symbolic links was "cannot be read: check its
 * permissions"), and nothing changed.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
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
