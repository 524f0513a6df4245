/**
 * The plan cache beside the rules file (src/apply/plan-cache.ts) spares an iptables apply the
 * scan of the rules file for its merge template and our chains. A wrong cache would put a
 * wrong template (the operator's own lines) or wrong chains into the next rules file, so these
 * tests try to get one through: a boundary between chains moved to another line, two names
 * swapped, a part of the template changed under a matching key, a torn file, a cache for
 * another file, an older rules file, or another renderer, the rules file edited by the
 * operator. Each must be refused, and the apply must then give what a parse of the file gives.
 * And a cache that is right must give exactly what the parse gives.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { applyRuleset, planFromDisk, type ApplyResult } from '../../src/apply/apply.js';
import { planCacheFile, readPlanCache, type PlanCacheKey } from '../../src/apply/plan-cache.js';
import { sha256 } from '../../src/archive/header.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { assignmentColumns } from '../../src/mapping/columns.js';
import { layoutOfRulesFile } from '../../src/render/iptables.js';
import { prepareMergeAndExtract } from '../../src/render/rules-file.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA, DELTA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type ProfileSpec, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';
import { readArchiveText } from '../helpers/archive-files.js';

/** An operator's rules.v4 around ours: a filter table, and eduVPN's MASQUERADE. */
const OPERATOR_RULES = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
  'COMMIT',
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  '-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE',
  'COMMIT',
  '',
].join('\n');

interface Site {
  readonly sandbox: Sandbox;
  readonly table: FakeNatTable;
  readonly clock: SteppingClock;
}

const sites: Site[] = [];

function createSite(): Site {
  const sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA]);
  // Small blocks and two addresses: a few hundred clients make a tree of several levels.
  // Random sequences remove most clients at once: the removal guard is not what is tested here.
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'], portsPerClient: 64 },
    firewall: { removalGuard: false },
  });
  writeFileSync(sandbox.rulesFile, OPERATOR_RULES);
  const site = {
    sandbox,
    table: new FakeNatTable(),
    clock: new SteppingClock(Date.parse('2026-12-07T12:00:00Z')),
  };
  sites.push(site);
  return site;
}

afterEach(() => {
  for (const site of sites.splice(0)) site.sandbox.remove();
});

/** An apply as the CLI makes one: its own configuration, nothing trusted. */
async function apply(site: Site): Promise<ApplyResult> {
  const config = loadConfig(site.sandbox.configFile);
  const result = await applyRuleset(config, { runner: site.table, clock: site.clock, discover });
  site.clock.ms += 2000;
  return result;
}

/** What an apply now would write, planned from a parse of the files (the dry run). */
function parsedPlanText(site: Site): string {
  const config = loadConfig(site.sandbox.configFile);
  return planFromDisk(config, discover(config)).fileText;
}

function cacheFile(site: Site): string {
  return planCacheFile(site.sandbox.stateFile);
}

type CacheContent = Record<string, unknown> & {
  names: string[];
  textStart: number[];
  parts: (string | { slot: string })[];
};

function readCache(site: Site): CacheContent {
  return JSON.parse(readFileSync(cacheFile(site), 'utf8')) as CacheContent;
}

function writeCache(site: Site, content: CacheContent): void {
  writeFileSync(cacheFile(site), JSON.stringify(content));
}

/** The key the apply after `result` reads the cache with. */
function keyAfter(site: Site, result: ApplyResult): PlanCacheKey {
  if (!result.archive) throw new Error('the apply wrote no archive');
  return {
    rulesFile: site.sandbox.rulesFile,
    body: sha256(readFileSync(site.sandbox.rulesFile)),
    archive: result.archive.sha256,
  };
}

function restore(site: Site, result: ApplyResult, key = keyAfter(site, result)) {
  const text = readFileSync(site.sandbox.rulesFile, 'utf8');
  return readPlanCache(cacheFile(site), key, text, assignmentColumns(result.plan.map));
}

test('a cache that is right gives exactly what a parse of the rules file gives', async () => {
  const site = createSite();
  site.sandbox.writeProfiles([ALPHA, BETA, DELTA]);
  const result = await apply(site);
  expect(result.planCache).toEqual({ read: false, written: true });
  const text = readFileSync(site.sandbox.rulesFile, 'utf8');
  const parsed = prepareMergeAndExtract(text, site.sandbox.rulesFile);
  const cached = restore(site, result);
  expect(cached).toBeDefined();
  if (!cached) return;
  expect([...cached.ours.chains]).toEqual([...parsed.ours.chains]);
  expect(cached.ours.jump).toBe(parsed.ours.jump);
  expect(cached.ours.rulesText).toBe(parsed.ours.rulesText);
  // The template puts any part of ours where the parsed one does: this file's, and none.
  const ours = result.plan.iptables;
  if (!ours) throw new Error('no iptables part');
  expect(cached.template.render(ours)).toBe(parsed.template.render(ours));
  expect(cached.template.render({ chains: new Map(), jump: '' })).toBe(
    parsed.template.render({ chains: new Map(), jump: '' }),
  );
  const layout = layoutOfRulesFile(parsed.ours, assignmentColumns(result.plan.map));
  expect(cached.render.layout).toEqual(layout);
});

describe('a cache that is not right is refused', () => {
  let site: Site;
  let result: ApplyResult;
  let content: CacheContent;

  beforeEach(async () => {
    site = createSite();
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    result = await apply(site);
    content = readCache(site);
    // The untouched cache is read: each case below differs from it in one thing.
    expect(restore(site, result)).toBeDefined();
  });

  test('a boundary between two chains moved to another line boundary', () => {
    const { textStart } = content;
    // A chain of several rules; its end moved one line back, into its own rules.
    const i = textStart.findIndex((start, at) => (textStart[at + 1] ?? 0) - start > 200);
    const text = readFileSync(site.sandbox.rulesFile, 'utf8');
    const at = text.indexOf(':POSTROUTING');
    expect(i).toBeGreaterThan(0);
    expect(at).toBeGreaterThan(0);
    const rulesAt = text.length - (textStart.at(-1) ?? 0) - 'COMMIT\n'.length;
    const end = rulesAt + (textStart[i + 1] ?? 0);
    const lineBefore = text.lastIndexOf('\n', end - 2) + 1;
    textStart[i + 1] = lineBefore - rulesAt;
    writeCache(site, content);
    expect(restore(site, result)).toBeUndefined();
  });

  test('two chains named in each other’s place', () => {
    const { names } = content;
    [names[1], names[2]] = [names[2] ?? '', names[1] ?? ''];
    writeCache(site, content);
    expect(restore(site, result)).toBeUndefined();
  });

  test('a part of the template changed (the operator’s rule), under a key that matches', () => {
    content.parts = content.parts.map((part) =>
      typeof part === 'string' ? part.replace('--dport 22', '--dport 23') : part,
    );
    writeCache(site, content);
    expect(restore(site, result)).toBeUndefined();
  });

  test('a torn cache (half of it written)', () => {
    const text = readFileSync(cacheFile(site), 'utf8');
    writeFileSync(cacheFile(site), text.slice(0, text.length >> 1));
    expect(restore(site, result)).toBeUndefined();
  });

  test('a cache for another rules file, another archive, or another rules file’s bytes', () => {
    const key = keyAfter(site, result);
    expect(restore(site, result, { ...key, rulesFile: `${key.rulesFile}.other` })).toBeUndefined();
    expect(restore(site, result, { ...key, archive: '0'.repeat(64) })).toBeUndefined();
    expect(restore(site, result, { ...key, body: '0'.repeat(64) })).toBeUndefined();
  });

  test('a cache written by another renderer', () => {
    writeCache(site, { ...content, render: '0123456789abcdef' });
    expect(restore(site, result)).toBeUndefined();
  });
});

describe('the apply', () => {
  test('reads the cache of the file it left, and plans what a parse of the file plans', async () => {
    const site = createSite();
    await apply(site);
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    const expected = parsedPlanText(site);
    const result = await apply(site);
    expect(result.planCache).toEqual({ read: true, written: true });
    expect(readFileSync(site.sandbox.rulesFile, 'utf8')).toBe(expected);
    expect(result.outcome).toBe('applied');
  });

  test('a rules file the operator edited is parsed, and the edit stays', async () => {
    const site = createSite();
    await apply(site);
    const { rulesFile } = site.sandbox;
    const edited = readFileSync(rulesFile, 'utf8').replace(
      '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n',
      '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT\n',
    );
    writeFileSync(rulesFile, edited);
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    const expected = parsedPlanText(site);
    const result = await apply(site);
    expect(result.planCache.read).toBe(false);
    expect(readFileSync(rulesFile, 'utf8')).toBe(expected);
    expect(expected).toContain('--dport 443 -j ACCEPT');
  });

  test('an older cache put back (its rules file replaced since) is not read', async () => {
    const site = createSite();
    await apply(site);
    const older = readFileSync(cacheFile(site), 'utf8');
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    await apply(site);
    writeFileSync(cacheFile(site), older);
    site.sandbox.writeProfiles([ALPHA, GAMMA, DELTA]);
    const expected = parsedPlanText(site);
    const result = await apply(site);
    expect(result.planCache.read).toBe(false);
    expect(readFileSync(site.sandbox.rulesFile, 'utf8')).toBe(expected);
  });

  test('a cache forged to match the file’s key, with another template, is not read', async () => {
    const site = createSite();
    await apply(site);
    const content = readCache(site);
    content.parts = content.parts.map((part) =>
      typeof part === 'string'
        ? part.replace('-o eth0 -j MASQUERADE', '-o eth1 -j MASQUERADE')
        : part,
    );
    writeCache(site, content);
    site.sandbox.writeProfiles([ALPHA, DELTA]);
    const expected = parsedPlanText(site);
    const result = await apply(site);
    expect(result.planCache.read).toBe(false);
    expect(readFileSync(site.sandbox.rulesFile, 'utf8')).toBe(expected);
    expect(expected).toContain('-o eth0 -j MASQUERADE');
  });
});

describe('faults around the cache', () => {
  test('a cache that cannot be put in place leaves the apply as it was, and no temporary file', async () => {
    const site = createSite();
    // A directory where the cache goes: its temporary file is written, the rename fails.
    mkdirSync(cacheFile(site), { recursive: true });
    const first = await apply(site);
    expect(first.outcome).toBe('applied');
    expect(first.planCache).toEqual({ read: false, written: false });
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    const expected = parsedPlanText(site);
    const second = await apply(site);
    expect(second.outcome).toBe('applied');
    expect(second.planCache.read).toBe(false);
    expect(readFileSync(site.sandbox.rulesFile, 'utf8')).toBe(expected);
    expect(readdirSync(site.sandbox.dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('the temporary file of a cache write that was killed is removed by the next apply', async () => {
    const site = createSite();
    await apply(site);
    const leftover = join(site.sandbox.dir, '.plan-cache.json.0123456789ab.tmp');
    writeFileSync(leftover, '{"half":');
    site.sandbox.writeProfiles([ALPHA, GAMMA]);
    const result = await apply(site);
    expect(result.planCache).toEqual({ read: true, written: true });
    expect(existsSync(leftover)).toBe(false);
  });
});

/** The archive bodies of a site, by name, in order. */
function archives(site: Site): [string, string][] {
  const dir = site.sandbox.archiveDir;
  return readdirSync(dir)
    .filter((name) => name.startsWith('rules.v4-'))
    .sort()
    .map((name) => [name, readArchiveText(join(dir, name))]);
}

const PROFILES: readonly ProfileSpec[] = [ALPHA, BETA, GAMMA, DELTA];

test('over random sequences of profile changes, applies with the cache write what applies without it write', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.subarray([...PROFILES], { minLength: 1 }), { minLength: 1, maxLength: 5 }),
      async (sequence) => {
        const cached = createSite();
        const parsed = createSite();
        try {
          for (const [step, profiles] of sequence.entries()) {
            for (const site of [cached, parsed]) site.sandbox.writeProfiles(profiles);
            const withCache = await apply(cached);
            // Each apply after the first finds the file the one before left, and its cache.
            expect(withCache.planCache.read).toBe(step > 0);
            // The twin parses every time: its cache is gone before each apply.
            writeFileSync(cacheFile(parsed), '');
            const without = await apply(parsed);
            expect(without.planCache.read).toBe(false);
            expect(withCache.outcome).toBe(without.outcome);
            expect(readFileSync(cached.sandbox.rulesFile, 'utf8')).toBe(
              readFileSync(parsed.sandbox.rulesFile, 'utf8'),
            );
          }
          // The same activations, named the same (the clocks step alike), with the same bodies
          // (their headers hold the apply's start, the same too).
          expect(archives(cached)).toEqual(archives(parsed));
        } finally {
          for (const site of sites.splice(0)) site.sandbox.remove();
        }
      },
    ),
    { numRuns: 12 },
  );
}, 120_000);
