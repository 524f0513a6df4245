/**
 * `check`'s archive head step: the newest archive against the state file's anchor. A state file
 * that anchors nothing while archives exist leaves an edited newest archive unseen (found by an
 * audit: check said the newest archive was "as the state file anchors it").
 */
import { rmSync } from 'node:fs';
import { archiveHeadProblems } from '../../src/archive/head-check.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { createFakeSite, type FakeSite } from '../helpers/fake-site.js';
import { ALPHA } from '../helpers/profiles.js';

let site: FakeSite;

beforeEach(async () => {
  site = createFakeSite(new FakeNatTable(), Date.parse('2026-12-07T12:00:00Z'));
  site.sandbox.writeProfiles([ALPHA]);
  await site.apply();
});

afterEach(() => {
  site.sandbox.remove();
});

const problems = () =>
  archiveHeadProblems(site.sandbox.archiveDir, site.sandbox.stateFile, site.clock.ms);

test('an anchored newest archive: no problem', () => {
  expect(problems()).toEqual([]);
});

test('the state file gone while archives exist: a problem that says what cannot be checked', () => {
  rmSync(site.sandbox.stateFile);
  expect(problems()).toEqual([
    expect.stringContaining(
      'anchors no archive of this directory (lost, or never written by a version before the state file)',
    ) as string,
  ]);
  // The next apply anchors the newest again.
  return site.apply().then(() => {
    expect(problems()).toEqual([]);
  });
});
