/**
 * Golden files under test/fixtures/render/. `UPDATE_GOLDEN=1 npm test -- test/render` rewrites
 * them; review the diff before committing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const fixtureDir = join(import.meta.dirname, '..', 'fixtures', 'render');

export function readFixture(name: string): string {
  return readFileSync(join(fixtureDir, name), 'utf8');
}

export function expectGolden(name: string, actual: string): void {
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(join(fixtureDir, name), actual);
  expect(actual).toBe(readFixture(name));
}
