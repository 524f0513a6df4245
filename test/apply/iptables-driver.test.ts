/**
 * The apply's decisions for iptables without root: applyRuleset over a user-space nat table
 * that parses every payload (test/helpers/fake-nat-table.ts), real files in a sandbox, and a
 * clock that never waits. What the real tools do is tested in test/kernel and test/faults.
 */
import {
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  applyRuleset,
  planFromDisk,
  type ApplyResult,
  type TrustedPlan,
} from '../../src/apply/apply.js';
import { renderToReuse, rulesFileIsBody } from '../../src/apply/snapshot.js';
import type { ArchiveHead } from '../../src/archive/anchor.js';
import { archiveBody, parseArchiveHeader, sha256 } from '../../src/archive/header.js';
import { natSettings } from '../../src/apply/plan.js';
import { assignmentColumns } from '../../src/mapping/columns.js';
import { mapClients } from '../../src/mapping/map.js';
import { renderFormat, renderIptablesChains } from '../../src/render/iptables.js';
import { poolOf } from '../mapping/fixtures.js';
import { newestArchive } from '../../src/archive/store.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { isTnatError } from '../../src/errors.js';
import {
  extractNatPart,
  prepareMerge,
  prepareMergeAndExtract,
} from '../../src/render/rules-file.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA, DELTA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA, BETA]);
  sandbox.writeConfig({ firewall: { removalGuard: false } });
  table = new FakeNatTable();
  clock = new SteppingClock(Date.parse('2026-12-05T12:00:00Z'));
});

afterEach(() => {
  sandbox.remove();
});

async function apply(
  kernelCheck?: 'full',
  force = false,
  trusted?: TrustedPlan,
): Promise<ApplyResult> {
  const result = await applyRuleset(
    loadConfig(sandbox.configFile),
    { runner: table, clock, discover },
    { kernelCheck, force, trusted },
  );
  clock.ms += 2000; // the next apply in a later archive second
  return result;
}

/** Our chains and jump in a text: the rules file, an archive, or the table's save. */
function ours(text: string) {
  const { chains, jump } = extractNatPart(text);
  return { jump, chains: [...chains] };
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

function canary(): string | undefined {
  return /^-A TNAT_APPLIED -m comment --comment sha256:([0-9a-f]{64})$/m.exec(table.save())?.[1];
}

/** Our chains and POSTROUTING's jump deleted by hand; the canary is left as it is. */
function deleteOurChains(): void {
  const names = ours(table.save()).chains.map(([name]) => name);
  table.load(
    [
      '*nat',
      ':POSTROUTING ACCEPT [0:0]',
      ...names.map((name) => `:${name} - [0:0]`),
      ...names.map((name) => `-X ${name}`),
      'COMMIT',
      '',
    ].join('\n'),
  );
}

const restores = () => table.calls.filter((call) => call.startsWith('iptables-restore'));
const saves = () => table.calls.filter((call) => call.startsWith('iptables-save'));

test('the first apply loads our chains and sets the canary to the archive it writes', async () => {
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'full' });
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  expect(ours(table.save()).chains.length).toBeGreaterThan(3);
  expect(canary()).toBe(headSha());
  expect(archives()).toHaveLength(1);
  // One transaction, no test run before it.
  expect(restores()).toEqual(['iptables-restore --noflush -w 10']);
});

test('unchanged: decided on the canary, without a save of the table or any load', async () => {
  await apply();
  table.calls.length = 0;
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  expect(saves()).toEqual([]);
  expect(restores()).toEqual([]);
  expect(archives()).toHaveLength(1);
});

test('a change through the canary rewrites only what differs, and the canary follows', async () => {
  await apply();
  const before = ours(table.save());
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.calls.length = 0;
  const result = await apply();
  expect(result).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
  expect(saves()).toEqual([]);
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  expect(canary()).toBe(headSha());
  expect(archives()).toHaveLength(2);
  // Alpha's and beta's leaves (their SNAT rules) are as they were; a chain above them gained
  // the jump to gamma's subtree.
  const after = new Map(ours(table.save()).chains);
  const leaves = before.chains.filter(([, rules]) =>
    rules.some((rule) => rule.includes('-j SNAT')),
  );
  expect(leaves.length).toBeGreaterThan(2);
  for (const [name, rules] of leaves) expect(after.get(name)).toEqual(rules);
  expect(result.kernel?.summary.chainsRewritten).toBeLessThan(after.size);
});

test('a hand-flushed chain: unseen through the canary, repaired by a full read', async () => {
  await apply();
  const leaf =
    ours(table.save()).chains.find(([, rules]) =>
      rules.some((rule) => rule.includes('-j SNAT')),
    )?.[0] ?? '';
  table.load(`*nat\n:${leaf} - [0:0]\nCOMMIT\n`);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
  expect(await apply('full')).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  expect(archives()).toHaveLength(1);
});

test('no canary (a boot): a full read, then the canary alone is set', async () => {
  await apply();
  table.load('*nat\n:TNAT_APPLIED - [0:0]\n-X TNAT_APPLIED\nCOMMIT\n');
  expect(canary()).toBeUndefined();
  table.calls.length = 0;
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'full' });
  expect(canary()).toBe(headSha());
  expect(restores()).toHaveLength(1);
  expect(await apply()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
});

test('our chains deleted by hand under a canary that still agrees: the refused payload is rebuilt from a full read', async () => {
  await apply();
  deleteOurChains();
  expect(canary()).toBe(headSha());
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.calls.length = 0;
  expect(await apply()).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
  expect(saves()).toHaveLength(1);
  expect(restores()).toHaveLength(2);
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  expect(canary()).toBe(headSha());
});

test('a payload the table refuses leaves the table, the rules file and the archives as they were', async () => {
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await apply();
  // Someone jumps to gamma's top chain from a chain of their own: removing it is refused.
  const gamma = ours(table.save()).chains.find(([name]) => name.startsWith('TNAT-10.42.2.'))?.[0];
  expect(gamma).toBeDefined();
  table.load(`*nat\n:MINE - [0:0]\n-A MINE -j ${gamma ?? ''}\nCOMMIT\n`);
  const tableBefore = table.save();
  const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
  const archivesBefore = archives();
  sandbox.writeProfiles([ALPHA, BETA]);
  const error = await apply().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isTnatError(error) && error.code).toBe('E_COMMAND');
  expect((error as Error).message).toMatch(/line \d+/);
  expect(table.save()).toBe(tableBefore);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
  expect(archives()).toEqual(archivesBefore);
});

/** The binding index beside the newest archive (written after each activation). */
function newestIndex(): string {
  const newest = archives().sort().at(-1) ?? '';
  return join(sandbox.archiveDir, `.${newest}.idx`);
}

/**
 * Alpha removed, then delta added: beta and gamma keep the blocks the first apply gave them,
 * and delta takes the lowest free one. The active bindings come from the newest archive's
 * index; `spoil` changes that index before the last apply.
 */
async function keptBlocks(spoil: () => void): Promise<string> {
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await apply();
  sandbox.writeProfiles([BETA, GAMMA]);
  await apply();
  spoil();
  sandbox.writeProfiles([BETA, GAMMA, DELTA]);
  expect(await apply()).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  return readFileSync(sandbox.rulesFile, 'utf8');
}

test("the active bindings: the same from the newest archive's index as from its text, and an index of other bytes is not used", async () => {
  const withIndex = await keptBlocks(() => {
    expect(existsSync(newestIndex())).toBe(true);
  });
  const fresh = () => {
    sandbox.remove();
    sandbox = createSandbox('iptables');
    sandbox.writeConfig({ firewall: { removalGuard: false } });
    table = new FakeNatTable();
  };
  fresh();
  const withoutIndex = await keptBlocks(() => {
    unlinkSync(newestIndex());
  });
  expect(withoutIndex).toBe(withIndex);
  fresh();
  // The first archive's index under the newest archive's name: it names other bytes.
  const stale = await keptBlocks(() => {
    const first = archives().sort()[0] ?? '';
    // Indexes are read-only (0440): replaced, not written over, as a non-root user must.
    unlinkSync(newestIndex());
    copyFileSync(join(sandbox.archiveDir, `.${first}.idx`), newestIndex());
  });
  expect(stale).toBe(withIndex);
  // Delta's block is one alpha left free, not one after gamma's: the blocks were kept.
  expect(withIndex).toMatch(/-s 10\.42\.3\.2\/32 -p tcp -j SNAT --to-source \S+:65472-65535$/m);
});

/** What the daemon keeps of an apply to trust on its next one. */
const trustedAfter = (result: ApplyResult): TrustedPlan => ({
  plan: result.plan,
  archive: result.activeArchive,
  archiveSha256: result.planArchive,
});

test("the daemon's trusted apply knows the archive's text by its digest, and only while the archive holds the plan's text", async () => {
  const first = await apply();
  expect(first.planArchive).toBe(headSha());
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  table.calls.length = 0;
  const changed = await apply(undefined, false, trustedAfter(first));
  expect(changed).toMatchObject({ outcome: 'applied', kernelRead: 'trusted' });
  expect(saves()).toEqual([]);
  expect(changed.planArchive).toBe(headSha());
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  const same = await apply(undefined, false, trustedAfter(changed));
  expect(same).toMatchObject({ outcome: 'unchanged', kernelRead: 'trusted' });
  expect(same.planArchive).toBe(changed.planArchive);
  expect(archives()).toHaveLength(2);
  // A line of the operator's own in the rules file: the merge keeps it, so the plan's text is
  // no longer the archive's, and a later trusted apply must read the archive.
  const edited = `# checked by hand\n${readFileSync(sandbox.rulesFile, 'utf8')}`;
  writeFileSync(sandbox.rulesFile, edited);
  const kept = await apply();
  expect(kept).toMatchObject({ outcome: 'unchanged', planArchive: undefined });
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(edited);
});

test("the daemon's write that changes nothing takes its trusted plan again instead of planning anew, and only while nothing it was made from changed", async () => {
  const config = loadConfig(sandbox.configFile);
  const deps = { runner: table, clock, discover };
  const first = await applyRuleset(config, deps, {});
  clock.ms += 2000;
  const again = await applyRuleset(config, deps, { trusted: { ...trustedAfter(first), config } });
  expect(again).toMatchObject({ outcome: 'unchanged', kernelRead: 'trusted' });
  expect(again.plan).toBe(first.plan);
  // The configuration read again (a reload): planned anew, to the same text.
  const reloaded = await applyRuleset(loadConfig(sandbox.configFile), deps, {
    trusted: { ...trustedAfter(again), config },
  });
  expect(reloaded.plan).not.toBe(first.plan);
  expect(reloaded.plan.fileText).toBe(first.plan.fileText);
  // Another profile: planned anew and applied.
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const changed = await applyRuleset(config, deps, { trusted: { ...trustedAfter(again), config } });
  expect(changed).toMatchObject({ outcome: 'applied', kernelRead: 'trusted' });
  expect(changed.plan.map.clientCount).toBeGreaterThan(first.plan.map.clientCount);
  expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
});

test('chains of applies, each reusing the render before (the daemon) or the rules file (the CLI), write exactly what a plan from scratch gives', async () => {
  // Random sequences of profile sets, applied one after the other, on the last apply's word
  // (trusted) or through the canary, which reads the rules file back.
  const profiles = [ALPHA, BETA, GAMMA, DELTA];
  const sequences = fc.sample(
    fc.array(fc.tuple(fc.subarray(profiles, { minLength: 1 }), fc.boolean()), {
      minLength: 3,
      maxLength: 6,
    }),
    { numRuns: 8, seed: 13 },
  );
  const reusedFromFile: number[] = [];
  for (const sequence of sequences) {
    let last = await apply();
    for (const [set, daemon] of sequence) {
      sandbox.writeProfiles(set);
      last = await apply(undefined, false, daemon ? trustedAfter(last) : undefined);
      expect(last.kernelRead).toBe(daemon ? 'trusted' : 'canary');
      // More than one piece of text: some of it was taken from the file, not written.
      if (!daemon && last.outcome === 'applied')
        reusedFromFile.push(last.plan.iptables?.layout?.pieces.length ?? 0);
      const config = loadConfig(sandbox.configFile);
      const scratch = planFromDisk(config, discover(config));
      const file = readFileSync(sandbox.rulesFile, 'utf8');
      expect(file).toBe(scratch.fileText);
      expect(last.plan.fileText).toBe(scratch.fileText);
      const newest = newestArchive(sandbox.archiveDir, 'iptables');
      expect(newest && archiveBody(newest.text)).toBe(file);
      expect(parseArchiveHeader(newest?.text ?? '')?.settings.render).toBe(renderFormat());
      // The same chains and rules (the kernel lists new chains last, the file in tree order).
      const sorted = (text: string) => ours(text).chains.sort(([a], [b]) => a.localeCompare(b));
      expect(sorted(table.save())).toEqual(sorted(file));
    }
  }
  expect(reusedFromFile.filter((pieces) => pieces > 1).length).toBeGreaterThan(3);
});

test('a rule of ours edited by hand in the rules file is never reused: the next change writes the planned rules', async () => {
  await apply();
  // One client's tcp rule pointed at a stranger's block, by hand (the archive is unchanged).
  const file = readFileSync(sandbox.rulesFile, 'utf8');
  const rule =
    /^-A TNAT-10\.42\.0\.0\/28 -s 10\.42\.0\.2\/32 -p tcp -j SNAT --to-source (\S+):(\d+)-(\d+)$/m.exec(
      file,
    );
  if (!rule) throw new Error('no rule for 10.42.0.2');
  const edited = file.replace(rule[0], rule[0].replace(`:${rule[2]}-`, ':1-'));
  expect(edited).not.toBe(file);
  writeFileSync(sandbox.rulesFile, edited);
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  const changed = await apply();
  expect(changed.outcome).toBe('applied');
  const after = readFileSync(sandbox.rulesFile, 'utf8');
  expect(after).toContain(rule[0]);
  expect(after).not.toContain(':1-');
  const config = loadConfig(sandbox.configFile);
  expect(after).toBe(planFromDisk(config, discover(config)).fileText);
  expect(ours(table.save()).chains.flatMap(([, rules]) => rules)).toContain(rule[0]);
});

test("the rules file's text is reused only when its archive says this renderer wrote it", () => {
  const map = mapClients(
    [poolOf('a', '10.42.0.0/24')],
    natSettings(loadConfig(sandbox.configFile)),
    undefined,
  );
  const text = prepareMerge('', 'rules.v4').render(
    renderIptablesChains(map, { outInterface: 'eth0' }),
  );
  const { ours: part } = prepareMergeAndExtract(text, 'rules.v4');
  const header = (render: string) =>
    `# traceable-nat archive: test\n# settings: ${JSON.stringify({ render })}\n# end of traceable-nat header\n`;
  const bindings = assignmentColumns(map);
  expect(renderToReuse(header(renderFormat()), part, bindings)?.layout).toBeDefined();
  expect(renderToReuse(header('0123456789abcdef'), part, bindings)).toBeUndefined();
  expect(renderToReuse('# traceable-nat archive: test\n', part, bindings)).toBeUndefined();
});

test("the anchored head holds the digest of the archive's ruleset, which the rules file is known by", async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
  await apply();
  const state = JSON.parse(readFileSync(sandbox.stateFile, 'utf8')) as {
    archiveDirs: Record<string, { head: ArchiveHead }>;
  };
  const head = Object.values(state.archiveDirs)[0]?.head;
  if (!head) throw new Error('no head');
  const bytes = readFileSync(sandbox.rulesFile);
  expect(head.body).toBe(sha256(bytes));
  const newest = newestArchive(sandbox.archiveDir, 'iptables');
  if (!newest) throw new Error('no archive');
  expect(sha256(Buffer.from(archiveBody(newest.text), 'utf8'))).toBe(head.body);
  expect(rulesFileIsBody(head, newest, bytes)).toBe(true);
  // Any other bytes, another archive, or a head without the digest: not known so.
  const cases = {
    edited: rulesFileIsBody(head, newest, Buffer.concat([bytes, Buffer.from('# x\n')])),
    noFile: rulesFileIsBody(head, newest, undefined),
    noDigest: rulesFileIsBody({ ...head, body: undefined }, newest, bytes),
    otherName: rulesFileIsBody({ ...head, name: 'rules.v4.1' }, newest, bytes),
    otherArchive: rulesFileIsBody({ ...head, sha256: '0'.repeat(64) }, newest, bytes),
  };
  expect(cases).toEqual({
    edited: false,
    noFile: false,
    noDigest: false,
    otherName: false,
    otherArchive: false,
  });
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
    const tableBefore = table.save();
    const archivesBefore = archives();
    sandbox.writeProfiles([ALPHA]);
    expect(await refusal()).toMatch(
      /^E_SOURCE: this apply would remove 503 of the 756 active clients/,
    );
    // Beta is the only OpenVPN profile: losing it alone is less than half, still refused.
    sandbox.writeProfiles([ALPHA, GAMMA]);
    expect(await refusal()).toMatch(/^E_SOURCE: this apply would remove all 250 OpenVPN clients/);
    expect(table.save()).toBe(tableBefore);
    expect(archives()).toEqual(archivesBefore);
    // Meant: --force goes through.
    expect(await apply(undefined, true)).toMatchObject({ outcome: 'applied' });
    expect(ours(table.save())).toEqual(ours(readFileSync(sandbox.rulesFile, 'utf8')));
  });

  test('a flushed table does not hide a removal: the newest archive says what was active', async () => {
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    await apply();
    deleteOurChains();
    expect(ours(table.save()).chains).toEqual([]);
    sandbox.writeProfiles([GAMMA]);
    expect(await refusal()).toMatch(
      /^E_SOURCE: this apply would remove 503 of the 756 active clients/,
    );
    // The same profiles as before: a repair, not a removal.
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    expect(await apply()).toMatchObject({ outcome: 'repaired' });
  });
});
