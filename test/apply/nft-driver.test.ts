/**
 * The apply's decisions for nftables without root: applyRuleset over a user-space nftables
 * that parses every transaction (test/helpers/fake-nft-table.ts), real files in a sandbox, and
 * a clock that never waits. What nft itself does is tested in test/kernel and test/faults.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { applyRuleset, type ApplyOptions, type ApplyResult } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { isTnatError } from '../../src/errors.js';
import { nftCanaryOf } from '../../src/render/nftables.js';
import { FakeNftTable } from '../helpers/fake-nft-table.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

const TABLE = 'traceable_nat';

let sandbox: Sandbox;
let table: FakeNftTable;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('nftables');
  sandbox.writeProfiles([ALPHA, BETA]);
  sandbox.writeConfig({ firewall: { removalGuard: false } });
  table = new FakeNftTable();
  clock = new SteppingClock(Date.parse('2026-12-05T12:00:00Z'));
});

afterEach(() => {
  sandbox.remove();
});

async function apply(options: ApplyOptions = {}): Promise<ApplyResult> {
  const result = await applyRuleset(
    loadConfig(sandbox.configFile),
    { runner: table, clock, discover },
    options,
  );
  clock.ms += 2000; // the next apply in a later archive second
  return result;
}

function archives(): string[] {
  return readdirSync(sandbox.archiveDir).filter((name) => !name.startsWith('.'));
}

function headSha(): string | undefined {
  const state = JSON.parse(readFileSync(sandbox.stateFile, 'utf8')) as {
    archiveDirs: Record<string, { head?: { sha256: string } }>;
  };
  return Object.values(state.archiveDirs)[0]?.head?.sha256;
}

/** The archive digests the table's canary chains name. */
function canaries(): string[] {
  return table.chains().flatMap((name) => nftCanaryOf(name) ?? []);
}

/** Our table as the fake holds it, canary chains left out. */
function held(): string {
  return table.list().replace(/\tchain applied_[0-9a-f]{64} \{\n\t\}\n/g, '');
}

/** Our table as `nft -f <rules file>` leaves it in an empty kernel (a boot). */
function booted(): string {
  const fresh = new FakeNftTable();
  fresh.load(readFileSync(sandbox.rulesFile, 'utf8'));
  return fresh.list();
}

/** One hand-run `<verb> element` for `keys` (delete) or `key : value` texts (add). */
function elementEdit(verb: 'add' | 'delete', map: string, elements: readonly string[]): string {
  return `${verb} element ip ${TABLE} ${map} {\n${elements.map((text) => `\t${text},\n`).join('')}}\n`;
}

/** The address of the n-th client of map `clients`, in address order. */
function client(n: number): string {
  return [...table.elements('clients').keys()][n] ?? '';
}

/** The client addresses a transaction adds to (or deletes from) `map`. */
function touched(transaction: string, verb: 'add' | 'delete', map: string): string[] {
  const block = new RegExp(`^${verb} element ip ${TABLE} ${map} \\{\\n([^}]*)\\}`, 'm').exec(
    transaction,
  );
  return [...(block?.[1] ?? '').matchAll(/^\t(\S+?),?(?: :|$)/gm)].map((match) => match[1] ?? '');
}

const loads = () => table.calls.filter((call) => call.startsWith('nft -f'));
const fullReads = () => table.calls.filter((call) => call.startsWith('nft -j list table ip '));
const lastTransaction = () => table.transactions.at(-1) ?? '';

test('the first apply loads the whole table and a canary naming the archive it writes', async () => {
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'full' });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: true });
  expect(held()).toBe(booted());
  // Alpha's 253 and beta's 250 clients, in both maps.
  expect(table.elements('clients').size).toBe(503);
  expect(table.elements('others').size).toBe(503);
  expect(canaries()).toEqual([headSha()]);
  expect(archives()).toHaveLength(1);
  expect(loads()).toHaveLength(1);
  expect(lastTransaction()).toMatch(new RegExp(`^delete table ip ${TABLE}$`, 'm'));
});

test('unchanged: decided on the canary, without a listing of the table or any load', async () => {
  await apply();
  table.calls.length = 0;
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  expect(table.calls.filter((call) => call.startsWith('nft -j list chains ip'))).toHaveLength(1);
  expect(fullReads()).toEqual([]);
  expect(loads()).toEqual([]);
  expect(archives()).toHaveLength(1);
});

test('a new profile through the canary: only its elements are added, and the canary follows', async () => {
  await apply();
  const before = headSha() ?? '';
  const alphaAndBeta = table.elements('clients');
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: false });
  expect(fullReads()).toEqual([]);
  expect(loads()).toHaveLength(1);
  const transaction = lastTransaction();
  expect(transaction).not.toMatch(/delete table|^delete element/m);
  const gamma = touched(transaction, 'add', 'clients');
  expect(gamma).toHaveLength(253);
  expect(gamma.every((address) => address.startsWith('10.42.2.'))).toBe(true);
  expect(touched(transaction, 'add', 'others')).toEqual(gamma);
  expect(transaction).toContain(`delete chain ip ${TABLE} applied_${before}\n`);
  // Alpha's and beta's elements are as they were.
  const after = table.elements('clients');
  for (const [address, value] of alphaAndBeta) expect(after.get(address)).toBe(value);
  expect(held()).toBe(booted());
  expect(canaries()).toEqual([headSha()]);
  expect(headSha()).not.toBe(before);
  expect(archives()).toHaveLength(2);
});

test('a client deleted by hand from both maps: unseen through the canary, added back by a full read', async () => {
  await apply();
  const gone = client(7);
  table.load(elementEdit('delete', 'clients', [gone]) + elementEdit('delete', 'others', [gone]));
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  table.calls.length = 0;
  const result = await apply({ kernelCheck: 'full' });
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full', archive: undefined });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: false });
  expect(loads()).toHaveLength(1);
  const transaction = lastTransaction();
  expect(touched(transaction, 'add', 'clients')).toEqual([gone]);
  expect(touched(transaction, 'add', 'others')).toEqual([gone]);
  expect(transaction).not.toMatch(/delete table|^delete element/m);
  expect(held()).toBe(booted());
  expect(archives()).toHaveLength(1);
});

test('a client given another block by hand: read whole, its element deleted and added again', async () => {
  await apply();
  const moved = client(5);
  const planned = table.elements('clients').get(moved);
  table.load(
    elementEdit('delete', 'clients', [moved]) +
      elementEdit('add', 'clients', [`${moved} : 192.0.2.1 . 1024-1087`]),
  );
  expect(table.elements('clients').get(moved)).not.toBe(planned);
  const result = await apply({ kernelCheck: 'full' });
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full', archive: undefined });
  const transaction = lastTransaction();
  expect(touched(transaction, 'delete', 'clients')).toEqual([moved]);
  expect(touched(transaction, 'add', 'clients')).toEqual([moved]);
  // Its public address is the same: the others map is left alone.
  expect(transaction).not.toMatch(/ others \{/);
  expect(table.elements('clients').get(moved)).toBe(planned);
  expect(held()).toBe(booted());
});

test('a client deleted by hand from clients alone: the others map left behind, the table is replaced whole', async () => {
  await apply();
  const gone = client(3);
  table.load(elementEdit('delete', 'clients', [gone]));
  expect(table.elements('others').has(gone)).toBe(true);
  const result = await apply({ kernelCheck: 'full' });
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full', archive: undefined });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: true });
  expect(lastTransaction()).toMatch(new RegExp(`^delete table ip ${TABLE}$`, 'm'));
  expect(held()).toBe(booted());
  expect(canaries()).toEqual([headSha()]);
  expect(archives()).toHaveLength(1);
});

test('a table deleted by hand: no canary, read whole and loaded again', async () => {
  await apply();
  table.load(`delete table ip ${TABLE}\n`);
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full', archive: undefined });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: true });
  expect(fullReads()).toHaveLength(1);
  expect(held()).toBe(booted());
  expect(canaries()).toEqual([headSha()]);
  expect(archives()).toHaveLength(1);
});

test('a table flushed by hand: its canary stays, so only a full read sees the rules gone', async () => {
  await apply();
  table.load(`flush table ip ${TABLE}\n`);
  expect(table.list()).not.toContain('snat');
  expect(canaries()).toEqual([headSha()]);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  const result = await apply({ kernelCheck: 'full' });
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: true });
  expect(held()).toBe(booted());
  expect(archives()).toHaveLength(1);
});

test('our chain hooked at another priority by hand: seen through the canary, the table is replaced whole', async () => {
  await apply();
  const sha = headSha() ?? '';
  table.load(
    readFileSync(sandbox.rulesFile, 'utf8').replace('priority srcnat - 10;', 'priority srcnat;') +
      `add chain ip ${TABLE} applied_${sha}\n`,
  );
  expect(table.list()).toContain('priority 100;');
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'canary' });
  expect(result.kernel?.summary).toMatchObject({ wholeTable: true });
  expect(fullReads()).toEqual([]);
  expect(held()).toBe(booted());
  expect(table.list()).toContain('priority 90;');
  expect(canaries()).toEqual([sha]);
});

test('a canary naming another archive (an older ruleset put back by hand): read whole and repaired', async () => {
  await apply();
  const older = readFileSync(sandbox.rulesFile, 'utf8');
  const olderSha = headSha() ?? '';
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await apply();
  table.load(`${older}add chain ip ${TABLE} applied_${olderSha}\n`);
  expect(canaries()).toEqual([olderSha]);
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'repaired', kernelRead: 'full', archive: undefined });
  expect(fullReads()).toHaveLength(1);
  const transaction = lastTransaction();
  expect(touched(transaction, 'add', 'clients')).toHaveLength(253);
  expect(transaction).toContain(`delete chain ip ${TABLE} applied_${olderSha}\n`);
  expect(held()).toBe(booted());
  expect(canaries()).toEqual([headSha()]);
  expect(archives()).toHaveLength(2);
});

test('a boot (the table loaded from the rules file, no canary): a full read, then the canary alone is set', async () => {
  await apply();
  table = new FakeNftTable();
  table.load(readFileSync(sandbox.rulesFile, 'utf8'));
  expect(canaries()).toEqual([]);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'full' });
  expect(table.transactions).toEqual([`add chain ip ${TABLE} applied_${headSha() ?? ''}\n`]);
  expect(canaries()).toEqual([headSha()]);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  expect(archives()).toHaveLength(1);
});

test('elements deleted by hand under a canary that still agrees: the refused delta is rebuilt from a full read', async () => {
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await apply();
  const beta = [...table.elements('clients').keys()].filter((key) => key.startsWith('10.42.1.'));
  // The last two: the refused delta deletes the others before it reaches them.
  const gone = beta.slice(-2);
  table.load(elementEdit('delete', 'clients', gone) + elementEdit('delete', 'others', gone));
  expect(canaries()).toEqual([headSha()]);
  sandbox.writeProfiles([ALPHA, GAMMA]);
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
  // The delta built on the canary's word deletes what is gone: refused, nothing changed; the
  // table is read once, whole, and the delta built again from it.
  expect(loads()).toHaveLength(2);
  expect(fullReads()).toHaveLength(1);
  const [refused = '', loaded = ''] = table.transactions.slice(-2);
  expect(touched(refused, 'delete', 'clients')).toEqual(expect.arrayContaining(gone));
  const deleted = touched(loaded, 'delete', 'clients');
  expect(deleted).toHaveLength(beta.length - gone.length);
  expect(deleted.filter((address) => gone.includes(address))).toEqual([]);
  expect(loaded).not.toMatch(/delete table/);
  expect(held()).toBe(booted());
  expect(table.elements('clients').size).toBe(506);
  expect(canaries()).toEqual([headSha()]);
  expect(archives()).toHaveLength(2);
});

test('a transaction nft refuses leaves the table, the rules file and the archives as they were', async () => {
  await apply();
  const tableBefore = table.list();
  const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
  // Every file, the archives' indexes and any temporary included.
  const directoryBefore = readdirSync(sandbox.archiveDir).sort();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.refuseLoads('Cannot allocate memory');
  table.calls.length = 0;
  const error = await apply().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isTnatError(error) && error.code).toBe('E_COMMAND');
  expect((error as Error).message).toMatch(
    /^nft refused line 2 of the nft transaction \(.*Cannot allocate memory\)/,
  );
  // Built on the canary, refused, read whole, built again, refused again: then it gives up.
  expect(loads()).toHaveLength(2);
  expect(fullReads()).toHaveLength(1);
  expect(table.list()).toBe(tableBefore);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
  expect(readdirSync(sandbox.archiveDir).sort()).toEqual(directoryBefore);
  // Once nft takes it, the same change goes through.
  table.refuseLoads(undefined);
  expect(await apply()).toMatchObject({ outcome: 'applied' });
  expect(held()).toBe(booted());
  expect(archives()).toHaveLength(2);
});

describe('the removal guard (a half-written or emptied eduVPN file)', () => {
  beforeEach(() => {
    sandbox.writeConfig();
  });

  const refusal = () =>
    apply().then(
      () => 'applied',
      (caught: unknown) => (isTnatError(caught) ? `${caught.code}: ${caught.message}` : 'other'),
    );

  test('more than half of the active clients, or every client of a protocol: refused, nothing changed', async () => {
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    await apply();
    const tableBefore = table.list();
    const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
    const archivesBefore = archives();
    table.calls.length = 0;
    sandbox.writeProfiles([ALPHA]);
    expect(await refusal()).toMatch(
      /^E_SOURCE: this apply would remove 503 of the 756 active clients/,
    );
    // Beta is the only OpenVPN profile: losing it alone is less than half, still refused.
    sandbox.writeProfiles([ALPHA, GAMMA]);
    expect(await refusal()).toMatch(/^E_SOURCE: this apply would remove all 250 OpenVPN clients/);
    expect(loads()).toEqual([]);
    expect(table.list()).toBe(tableBefore);
    expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
    expect(archives()).toEqual(archivesBefore);
    // Meant: --force replaces the whole table.
    const forced = await apply({ force: true });
    expect(forced).toMatchObject({ outcome: 'applied' });
    expect(forced.kernel?.summary).toMatchObject({ wholeTable: true });
    expect(held()).toBe(booted());
    expect(table.elements('clients').size).toBe(506);
  });

  test('a deleted table does not hide a removal: the newest archive says what was active', async () => {
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    await apply();
    table.load(`delete table ip ${TABLE}\n`);
    sandbox.writeProfiles([GAMMA]);
    expect(await refusal()).toMatch(
      /^E_SOURCE: this apply would remove 503 of the 756 active clients/,
    );
    expect(table.list()).toBe('');
    // The same profiles as before: a repair, not a removal.
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    expect(await apply()).toMatchObject({ outcome: 'repaired' });
    expect(held()).toBe(booted());
  });
});

test('trusted: a change on the word of the last apply (the daemon), with no listing at all', async () => {
  const first = await apply();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.calls.length = 0;
  const result = await apply({ trusted: { plan: first.plan, archive: first.activeArchive } });
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'trusted' });
  expect(table.calls.filter((call) => call.startsWith('nft '))).toEqual(loads());
  expect(loads()).toHaveLength(1);
  expect(touched(lastTransaction(), 'add', 'clients')).toHaveLength(253);
  expect(lastTransaction()).not.toMatch(/delete table|^delete element/m);
  expect(held()).toBe(booted());
  // The canary the last apply set goes in the same transaction, though it was not listed.
  expect(canaries()).toEqual([headSha()]);
  table.calls.length = 0;
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  expect(loads()).toEqual([]);
});

test('trusted, with the canary gone by hand: its removal is one nft accepts all the same', async () => {
  const first = await apply();
  const [canary] = canaries();
  table.load(`delete chain ip ${TABLE} applied_${canary ?? ''}\n`);
  expect(canaries()).toEqual([]);
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const result = await apply({ trusted: { plan: first.plan, archive: first.activeArchive } });
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'trusted' });
  expect(canaries()).toEqual([headSha()]);
});
