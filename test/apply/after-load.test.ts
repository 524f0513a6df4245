/**
 * A step that fails after the kernel took the new ruleset. The kernel keeps it, so the apply
 * must neither say that nothing was applied nor drop what records it: its pending archive stays
 * (trace gives both answers from the apply's start, and the next apply archives it, as after a
 * kill), the error says the new rules are active and what is left to do (exit status 5), and
 * the next apply finishes. These tests make the archive's final name taken (link(2) fails) or
 * the rules file a directory (rename(2) fails) right after the load, against a fake nat table.
 */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { archiveName } from '../../src/archive/names.js';
import { ipv6HalfDigest, listArchives, readArchive } from '../../src/archive/store.js';
import { verifyArchiveChain } from '../../src/archive/verify.js';
import { discover } from '../../src/cli/discovery.js';
import { EXIT } from '../../src/cli/io.js';
import { reportError } from '../../src/cli/report-error.js';
import { loadConfig } from '../../src/config-file.js';
import { isTnatError, TnatError } from '../../src/errors.js';
import type { RunOptions } from '../../src/netfilter/runner.js';
import { FakeDualNatTable } from '../helpers/fake-dual-nat-table.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { ALPHA, GAMMA } from '../helpers/profiles.js';
import { createFakeSite } from '../helpers/fake-site.js';
import type { Sandbox } from '../helpers/sandbox.js';
import type { SteppingClock } from '../helpers/stepping-clock.js';

/** GAMMA's first client: in the new ruleset, not in the old one. */
const GAMMA_CLIENT = '10.42.2.2';

/** The fake table, with something done right after a load that changed it. */
class TableWithAfterLoad extends FakeNatTable {
  afterLoad: (() => void) | undefined;

  override run(command: string, args: readonly string[], options?: RunOptions) {
    const result = super.run(command, args, options);
    const loads = command === 'iptables-restore' && !args.includes('--test');
    if (!loads || this.afterLoad === undefined) return result;
    const then = this.afterLoad;
    this.afterLoad = undefined;
    return result.then((value) => {
      then();
      return value;
    });
  }
}

/** A copy of `table` whose kernel refuses every load (exit status 4: nothing changed). */
function refusingCopy(table: FakeNatTable): FakeNatTable {
  const refusing = new (class extends FakeNatTable {
    override run(command: string, args: readonly string[], options?: RunOptions) {
      if (command === 'iptables-restore' && !args.includes('--test')) {
        return Promise.reject(new TnatError('E_COMMAND', 'iptables-restore refused line 1'));
      }
      return super.run(command, args, options);
    }
  })();
  refusing.load(table.save());
  return refusing;
}

let sandbox: Sandbox;
let table: TableWithAfterLoad;
let clock: SteppingClock;
let apply: () => Promise<ApplyResult>;

beforeEach(() => {
  const site = createFakeSite(new TableWithAfterLoad());
  ({ sandbox, table, clock, apply } = site);
  sandbox.writeProfiles([ALPHA]);
});

afterEach(() => {
  sandbox.remove();
});

async function failure(): Promise<TnatError> {
  try {
    await apply();
  } catch (error) {
    if (isTnatError(error)) return error;
    throw error;
  }
  throw new Error('the apply did not fail');
}

const archiveFiles = () => readdirSync(sandbox.archiveDir).sort();
const pendingFile = () => join(sandbox.archiveDir, 'rules.v4.pending');

test('the archive cannot be given its name: it stays pending, and the next apply archives it', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  const oldRules = readFileSync(sandbox.rulesFile, 'utf8');
  // Its final name taken right after the load (a file copied in), so link(2) fails.
  const taken = [true, false].map((gz) =>
    join(sandbox.archiveDir, archiveName('iptables', Math.floor(clock.ms / 1000), gz)),
  );
  table.afterLoad = () => {
    for (const path of taken) writeFileSync(path, 'not an archive\n');
  };
  const error = await failure();
  expect(error.code).toBe('E_UNFINISHED');
  expect(error.message).toMatch(/^the new ruleset is active in the kernel, but the apply did not/);
  expect(error.message).toContain(`its archive stays pending in ${sandbox.archiveDir}`);
  expect(error.message).toContain('(EEXIST)');
  expect(error.message).not.toContain('nothing was applied');
  expect(error.message).toContain(`${sandbox.rulesFile} still holds the previous rules`);
  // What records the active ruleset stayed; the kernel holds it; the rules file is the old one.
  expect(existsSync(pendingFile())).toBe(true);
  expect(readArchiveText(pendingFile())).toContain(`-s ${GAMMA_CLIENT}/32`);
  expect(table.save()).toContain(`-s ${GAMMA_CLIENT}/32`);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(oldRules);
  const io = { stdout: () => undefined, stderr: () => undefined, env: {} };
  expect(reportError(error, io)).toBe(EXIT.unfinished);

  // The operator takes the copied-in files away; the next apply finishes.
  for (const path of taken) rmSync(path);
  const next = await apply();
  expect(next.warnings.join('\n')).toMatch(/had loaded its ruleset; it is now archived as /);
  expect(existsSync(pendingFile())).toBe(false);
  const newest = archiveFiles()
    .filter((name) => /^rules\.v4\.\d+(\.gz)?$/.test(name))
    .at(-1);
  expect(readArchiveText(join(sandbox.archiveDir, newest ?? ''))).toContain(
    `-s ${GAMMA_CLIENT}/32`,
  );
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toContain(`-s ${GAMMA_CLIENT}/32`);
  // And it stays finished: nothing left to change.
  expect((await apply()).outcome).toBe('unchanged');
});

test('the rules file cannot be replaced: the ruleset is active and archived, and the next apply writes the file', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  const before = archiveFiles();
  table.afterLoad = () => {
    rmSync(sandbox.rulesFile);
    mkdirSync(sandbox.rulesFile);
  };
  const error = await failure();
  expect(error.code).toBe('E_UNFINISHED');
  expect(error.message).toContain('rename-rules');
  expect(error.message).toMatch(/it is archived as \S+rules\.v4\.\d+\.gz/);
  expect(error.message).toContain(`${sandbox.rulesFile} still holds the previous rules`);
  const added = archiveFiles().filter((name) => !before.includes(name));
  expect(added.some((name) => /^rules\.v4\.\d+\.gz$/.test(name))).toBe(true);
  expect(existsSync(pendingFile())).toBe(false);
  expect(table.save()).toContain(`-s ${GAMMA_CLIENT}/32`);

  rmSync(sandbox.rulesFile, { recursive: true });
  const next = await apply();
  expect(next.outcome).toBe('file-updated');
  expect(next.archive).toBeUndefined();
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toContain(`-s ${GAMMA_CLIENT}/32`);
});

test('a failure before the load still says nothing was applied, and leaves no pending archive', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  // The kernel refuses the load: the previous rules stay, exit status 4.
  table.afterLoad = undefined;
  const config = loadConfig(sandbox.configFile);
  const refusing = refusingCopy(table);
  const error = await applyRuleset(config, { runner: refusing, clock, discover }).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(isTnatError(error) && error.code).toBe('E_COMMAND');
  expect(existsSync(pendingFile())).toBe(false);
  const io = { stdout: () => undefined, stderr: () => undefined, env: {} };
  expect(reportError(error, io)).toBe(EXIT.applyFailed);
});

test('with nat6, IPv6 refused and the IPv4 rules not put back: the new IPv4 rules are active, so their archive stays pending, and the next apply finishes both', async () => {
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] },
    nat6: { publicAddresses: ['2001:db8::1'] },
  });
  let refuse = false;
  const dual = new (class extends FakeDualNatTable {
    override run(command: string, args: readonly string[], options?: RunOptions) {
      const loads = command.endsWith('tables-restore') && !args.includes('--test');
      // Once armed: the IPv6 load is refused, and so is the IPv4 load that would undo IPv4's.
      if (refuse && loads && (command === 'ip6tables-restore' || this.ipv4Loaded)) {
        return Promise.reject(new TnatError('E_COMMAND', `${command} refused line 1`));
      }
      if (refuse && loads) this.ipv4Loaded = true;
      return super.run(command, args, options);
    }
    ipv4Loaded = false;
  })();
  const config = () => loadConfig(sandbox.configFile);
  const applyDual = async () => {
    try {
      return await applyRuleset(config(), { runner: dual, clock, discover });
    } finally {
      clock.ms += 2000;
    }
  };
  await applyDual();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  refuse = true;
  const error = await applyDual().then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(isTnatError(error) && error.code).toBe('E_UNFINISHED');
  expect(String(error)).toContain('the IPv4 rules are the new ones, the IPv6 rules the old ones');
  expect(dual.save()).toContain(`-s ${GAMMA_CLIENT}/32`);
  expect(existsSync(pendingFile())).toBe(true);

  refuse = false;
  const next = await applyDual();
  expect(next.warnings.join('\n')).toMatch(/had loaded its ruleset; it is now archived as /);
  expect(readdirSync(sandbox.archiveDir).filter((name) => name.endsWith('.pending'))).toEqual([]);
  // IPv6 caught up: GAMMA's IPv6 twins are translated now, as the archive says.
  expect(dual.ipv6.save()).toContain('fd0a:2a:2::2');
  expect((await applyDual()).outcome).toBe('unchanged');
});

test('the rules file edited while the apply ran: the edit is kept, and the next apply merges it', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  const edit = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n';
  // An operator's edit (or netfilter-persistent save) lands during the load (found by an
  // audit: the rename put the apply's merge, made from the file before it, over the edit).
  table.afterLoad = () => {
    appendFileSync(sandbox.rulesFile, edit);
  };
  const error = await failure();
  expect(error.code).toBe('E_UNFINISHED');
  expect(error.message).toContain('rename-rules');
  expect(error.message).toContain(`${sandbox.rulesFile} was changed while this apply ran`);
  expect(readFileSync(sandbox.rulesFile, 'utf8')).toContain('--dport 22');
  expect(table.save()).toContain(`-s ${GAMMA_CLIENT}/32`);
  // The next apply merges the new rules into the edited file.
  const next = await apply();
  expect(next.rulesFileWritten).toBe(true);
  const text = readFileSync(sandbox.rulesFile, 'utf8');
  expect(text).toContain('--dport 22');
  expect(text).toContain(`-s ${GAMMA_CLIENT}/32`);
});

test('the head cannot be written after the commit: the next apply writes it first, so a failed one cannot lock the directory', async () => {
  await apply();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  // The state file unwritable right after the load (found by an audit with a full disk).
  let saved = '';
  table.afterLoad = () => {
    saved = readFileSync(sandbox.stateFile, 'utf8');
    rmSync(sandbox.stateFile);
    mkdirSync(sandbox.stateFile);
  };
  const applied = await apply();
  expect(applied.outcome).toBe('applied');
  expect(applied.warnings.join('\n')).toContain('stays anchored by its pending hash');
  rmSync(sandbox.stateFile, { recursive: true });
  writeFileSync(sandbox.stateFile, saved);
  // A change the kernel refuses: nothing applied, and its own pending hash discarded.
  sandbox.writeProfiles([ALPHA]);
  const config = loadConfig(sandbox.configFile);
  const refusing = refusingCopy(table);
  const refused = await applyRuleset(config, { runner: refusing, clock, discover }).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(isTnatError(refused) && refused.code).toBe('E_COMMAND');
  // The next apply goes on: the archive it committed is the anchored head (no E_ARCHIVE).
  const next = await apply();
  expect(next.outcome).toBe('applied');
  expect(table.save()).not.toContain(`-s ${GAMMA_CLIENT}/32`);
});

test('with nat6, the IPv6 half cannot be named after the rules.v4 half was: the next apply names it at its second', async () => {
  sandbox.writeConfig({
    nat: { publicAddresses: ['192.0.2.1', '192.0.2.2'] },
    nat6: { publicAddresses: ['2001:db8::1'] },
  });
  const dual = new (class extends FakeDualNatTable {
    afterLoad: (() => void) | undefined;
    override async run(command: string, args: readonly string[], options?: RunOptions) {
      const result = await super.run(command, args, options);
      if (command === 'ip6tables-restore' && !args.includes('--test')) this.afterLoad?.();
      return result;
    }
  })();
  const applyDual = async () => {
    try {
      return await applyRuleset(loadConfig(sandbox.configFile), { runner: dual, clock, discover });
    } finally {
      clock.ms += 2000;
    }
  };
  await applyDual();
  sandbox.writeProfiles([ALPHA, GAMMA]);
  // The IPv6 half's final name taken right after the loads (found by an audit: the IPv6 half
  // was named first, and its rules.v4 half later under another second, for good).
  const second = Math.floor(clock.ms / 1000);
  const taken = [true, false].map((gz) =>
    join(sandbox.archiveDir, archiveName('ip6tables', second, gz)),
  );
  dual.afterLoad = () => {
    for (const path of taken) writeFileSync(path, 'not an archive\n');
    dual.afterLoad = undefined;
  };
  const error = await applyDual().then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(isTnatError(error) && error.code).toBe('E_UNFINISHED');
  for (const path of taken) rmSync(path);
  await applyDual();
  // Both halves of that activation carry its second; the chain is whole.
  const names = readdirSync(sandbox.archiveDir);
  expect(names).toContain(archiveName('iptables', second, true));
  expect(names).toContain(archiveName('ip6tables', second, true));
  expect(names.filter((name) => name.endsWith('.pending'))).toEqual([]);
  const dir = sandbox.archiveDir;
  const files = listArchives(dir).map((entry) => ({
    ...readArchive(dir, entry),
    name: entry.name,
    ipv6Sha256: entry.backend === 'iptables' ? ipv6HalfDigest(dir, entry) : undefined,
  }));
  expect(verifyArchiveChain(files).problems).toEqual([]);
});
