/**
 * Between applies the daemon keeps its plan without the rules file's text (keepTrust), and
 * reads the text back from the file for the next apply (restoreTrust) while the file is still
 * the one that apply left. These tests try to get a plan restored from a file that is not:
 * touched, edited in place with its modification time put back, replaced by a file of the
 * same size, removed; each must give no trusted plan. And a plan restored from the untouched
 * file must be the plan that was kept, and the next apply trusting it must change nothing.
 */
import { readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import {
  applyRuleset,
  planFromDisk,
  type ApplyResult,
  type TrustedPlan,
} from '../../src/apply/apply.js';
import { keepTrust, restoreTrust, type KeptTrust } from '../../src/apply/kept-plan.js';
import { discover } from '../../src/cli/discovery.js';
import type { Config } from '../../src/config.js';
import { loadConfig } from '../../src/config-file.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { FakeNftTable } from '../helpers/fake-nft-table.js';
import { ALPHA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';
import { writeKeepingMtime } from '../helpers/edit-in-place.js';

describe.each(['iptables', 'nftables'] as const)('%s', (backend) => {
  let sandbox: Sandbox;
  let table: FakeNatTable | FakeNftTable;
  let clock: SteppingClock;
  let config: Config;

  beforeEach(() => {
    sandbox = createSandbox(backend);
    sandbox.writeProfiles([ALPHA]);
    sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] } });
    table = backend === 'iptables' ? new FakeNatTable() : new FakeNftTable();
    clock = new SteppingClock(Date.parse('2026-12-06T12:00:00Z'));
    // One configuration object, as the daemon's: a plan made with it may be taken as it is.
    config = loadConfig(sandbox.configFile);
  });

  afterEach(() => {
    sandbox.remove();
  });

  async function apply(trusted?: TrustedPlan): Promise<ApplyResult> {
    const result = await applyRuleset(config, { runner: table, clock, discover }, { trusted });
    clock.ms += 2000;
    return result;
  }

  /** What the daemon keeps from an apply. */
  function keptOf(result: ApplyResult): KeptTrust {
    const trusted = {
      plan: result.plan,
      archive: result.activeArchive,
      archiveSha256: result.planArchive,
      config,
      rulesFile: result.rulesFile,
    };
    return keepTrust(trusted, result.rulesText);
  }

  function restore(kept: KeptTrust): TrustedPlan | undefined {
    return restoreTrust(kept, sandbox.rulesFile);
  }

  /** One digit of the first port of the first translation, changed: the same size. */
  function editInPlace(text: string): string {
    // iptables `--to-source 192.0.2.1:65472-65535`, nftables `192.0.2.1 . 65472-65535`.
    const at = /192\.0\.2\.\d+(?::| \. )\d/.exec(text);
    if (!at) throw new Error('no translation in the rules file');
    const digit = at.index + at[0].length - 1;
    return text.slice(0, digit) + (text[digit] === '1' ? '2' : '1') + text.slice(digit + 1);
  }

  test('kept without its text, restored from the untouched file as the same plan; the next apply changes nothing', async () => {
    const first = await apply();
    const kept = keptOf(first);
    expect(kept.plan).toBeUndefined();
    expect(kept.textless).toBeDefined();
    const restored = restore(kept);
    if (restored === undefined) throw new Error('not restored');
    const { plan } = restored;
    expect(plan.fileText).toBe(first.plan.fileText);
    expect(plan.fileText).toBe(readFileSync(sandbox.rulesFile, 'utf8'));
    expect(plan.ourPart).toBe(first.plan.ourPart);
    expect([...(plan.iptables?.chains ?? [])]).toEqual([...(first.plan.iptables?.chains ?? [])]);
    expect(plan.iptables?.rulesText).toBe(first.plan.iptables?.rulesText);
    expect(plan.map).toBe(first.plan.map);
    const again = await apply(restored);
    expect(again.outcome).toBe('unchanged');
    expect(again.plan).toBe(plan);
    // Kept again from the restored plan: the same textless plan, not made anew.
    expect(keptOf(again).textless).toBe(kept.textless);
  });

  test('restored, it plans a change as an apply from the files does, reusing what it held', async () => {
    const first = await apply();
    sandbox.writeProfiles([ALPHA, GAMMA]);
    const expected = planFromDisk(config, discover(config)).fileText;
    const changed = await apply(restore(keptOf(first)));
    expect(changed.outcome).toBe('applied');
    expect(changed.plan.fileText === expected).toBe(true);
    expect(readFileSync(sandbox.rulesFile, 'utf8') === expected).toBe(true);
    // And once more from what that apply kept.
    sandbox.writeProfiles([GAMMA]);
    const expected2 = planFromDisk(config, discover(config)).fileText;
    const again = await apply(restore(keptOf(changed)));
    expect(again.plan.fileText === expected2).toBe(true);
  });

  test('a touched file (same bytes, new times) is not restored from', async () => {
    const first = await apply();
    const kept = keptOf(first);
    const later = new Date(Date.now() + 5000);
    utimesSync(sandbox.rulesFile, later, later);
    expect(restore(kept)).toBeUndefined();
  });

  test('an edit in place of the same size, its modification time put back, is not restored from', async () => {
    const first = await apply();
    const kept = keptOf(first);
    const text = readFileSync(sandbox.rulesFile, 'utf8');
    const edited = editInPlace(text);
    expect(edited.length).toBe(text.length);
    expect(edited).not.toBe(text);
    const mtimeNs = first.rulesFile?.mtimeNs ?? 0n;
    expect(writeKeepingMtime(sandbox.rulesFile, edited, mtimeNs)).toBe(mtimeNs);
    expect(restore(kept)).toBeUndefined();
    // Without the trust, the apply sees the edit and writes the plan over it.
    const result = await apply(restore(kept));
    expect(result.outcome).not.toBe('unchanged');
    expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(first.plan.fileText);
  });

  test('a new file of the same size renamed over it, or none at all, is not restored from', async () => {
    const first = await apply();
    const kept = keptOf(first);
    const text = readFileSync(sandbox.rulesFile, 'utf8');
    writeFileSync(`${sandbox.rulesFile}.new`, editInPlace(text));
    renameSync(`${sandbox.rulesFile}.new`, sandbox.rulesFile);
    expect(restore(kept)).toBeUndefined();
    rmSync(sandbox.rulesFile);
    expect(restore(kept)).toBeUndefined();
  });

  test('without the file identity (the file does not hold the plan), the plan itself is kept', async () => {
    const first = await apply();
    const kept = keepTrust(
      { plan: first.plan, archive: first.activeArchive, rulesFile: undefined },
      undefined,
    );
    expect(kept.plan).toBe(first.plan);
    expect(restore(kept)?.plan).toBe(first.plan);
  });
});

test('a rules file with UTF-8 in a line that is not ours is read back as UTF-8, not as Latin-1', async () => {
  const sandbox = createSandbox('iptables');
  try {
    sandbox.writeProfiles([ALPHA]);
    sandbox.writeConfig({ nat: { publicAddresses: ['192.0.2.1'] } });
    writeFileSync(
      sandbox.rulesFile,
      '*filter\n:INPUT ACCEPT [0:0]\n# Zürich: the admins’ own rule\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n',
    );
    const config = loadConfig(sandbox.configFile);
    const clock = new SteppingClock(Date.parse('2026-12-06T12:00:00Z'));
    const result = await applyRuleset(config, { runner: new FakeNatTable(), clock, discover });
    expect(result.plan.fileText).toContain('Zürich: the admins’ own rule');
    const kept = keepTrust(
      { plan: result.plan, archive: result.activeArchive, config, rulesFile: result.rulesFile },
      result.rulesText,
    );
    expect(kept.textless === undefined ? undefined : kept.ascii).toBe(false);
    expect(restoreTrust(kept, sandbox.rulesFile)?.plan.fileText).toBe(result.plan.fileText);
  } finally {
    sandbox.remove();
  }
});
