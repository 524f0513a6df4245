/**
 * `traceable-nat status` without root: readActiveStatus over the user-space nat table
 * (test/helpers/fake-nat-table.ts) after real applies in a sandbox. Its promise is to say
 * whether the rules file, the newest archive and the kernel bind every client the same, and
 * which of them does not; a count of clients alone would hide a client moved to other ports.
 */
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyRuleset } from '../../src/apply/apply.js';
import { readActiveStatus } from '../../src/apply/status.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { FakeDualNatTable } from '../helpers/fake-dual-nat-table.js';
import { FakeNatTable } from '../helpers/fake-nat-table.js';
import { ALPHA, BETA } from '../helpers/profiles.js';
import { createSandbox, type Sandbox } from '../helpers/sandbox.js';
import { SteppingClock } from '../helpers/stepping-clock.js';

let sandbox: Sandbox;
let table: FakeNatTable;
let clock: SteppingClock;

const START = Date.parse('2026-12-05T12:00:00Z');
const PUBLIC = ['192.0.2.1', '192.0.2.2'];
/** Alpha's 253 WireGuard clients and beta's 2 x 125 OpenVPN ones. */
const CLIENTS = 503;

beforeEach(() => {
  sandbox = createSandbox('iptables');
  sandbox.writeProfiles([ALPHA, BETA]);
  sandbox.writeConfig({ nat: { publicAddresses: PUBLIC, portsPerClient: 256 } });
  table = new FakeNatTable();
  clock = new SteppingClock(START);
});

afterEach(() => {
  sandbox.remove();
});

async function apply(): Promise<void> {
  await applyRuleset(loadConfig(sandbox.configFile), { runner: table, clock, discover });
  clock.ms += 2000;
}

const status = () => readActiveStatus(loadConfig(sandbox.configFile), table);

const address = (text: string): number => parseIpv4(text) ?? NaN;

function onlyArchive(): string {
  const names = readdirSync(sandbox.archiveDir).filter((name) => !name.startsWith('.'));
  expect(names).toHaveLength(1);
  return join(sandbox.archiveDir, names[0] ?? '');
}

/** The SNAT rules (tcp and udp) of one source, as a rules file or iptables-save prints them. */
function rulesOf(text: string, source: string): string[] {
  return text.split('\n').filter((line) => line.includes(` -s ${source} `));
}

test('after an apply the three agree, each summarised with its clients, block size and addresses', async () => {
  await apply();
  const result = await status();
  const summary = {
    clients: CLIENTS,
    blockSize: 256,
    publicAddresses: PUBLIC.map(address),
  };
  expect(result.rulesFile).toMatchObject({ source: sandbox.rulesFile, ...summary });
  expect(result.archive).toMatchObject({
    source: onlyArchive(),
    activatedAt: START / 1000,
    ...summary,
  });
  expect(result.kernel).toMatchObject({ source: 'iptables kernel state', ...summary });
  expect(result.ipv6).toBeUndefined();
  expect(result.agree).toBe(true);
  // One line per client, not one per rule (tcp and udp).
  expect(result.archive.bindings.split('\n')).toHaveLength(CLIENTS);
});

test('a rules file edited by hand to bind one client elsewhere: disagrees, and only the file differs', async () => {
  await apply();
  const text = readFileSync(sandbox.rulesFile, 'utf8');
  const moved = rulesOf(text, '10.42.0.2/32');
  expect(moved).toHaveLength(2);
  let edited = text;
  for (const line of moved)
    edited = edited.replace(line, line.replace(/--to-source [\d.]+:/, '--to-source 198.51.100.7:'));
  writeFileSync(sandbox.rulesFile, edited);

  const result = await status();
  expect(result.agree).toBe(false);
  expect(result.rulesFile.clients).toBe(CLIENTS);
  expect([...result.rulesFile.publicAddresses].sort()).toEqual(
    [...PUBLIC, '198.51.100.7'].map(address).sort(),
  );
  expect(result.rulesFile.bindings).not.toBe(result.archive.bindings);
  expect(result.kernel.bindings).toBe(result.archive.bindings);
});

describe('a rules file whose rules of ours differ while its bindings read back the same', () => {
  test.each([
    [
      'our POSTROUTING jump deleted',
      (text: string) => text.replace(/^-A POSTROUTING .*-j TNAT\n/m, ''),
    ],
    [
      "a client's udp rule deleted",
      (text: string) => text.replace(/^-A TNAT\S* -s 10\.42\.0\.2\/32 -p udp .*\n/m, ''),
    ],
    ['cut off before its COMMIT', (text: string) => text.slice(0, text.lastIndexOf('COMMIT'))],
  ])('%s: no agreement, a boot would load it (it said yes)', async (_, change) => {
    await apply();
    writeFileSync(sandbox.rulesFile, change(readFileSync(sandbox.rulesFile, 'utf8')));
    const result = await status();
    expect(result.rulesFileTree).toBe(false);
    expect(result.agree).toBe(false);
    expect(result.kernelTree).toBe(true);
  });

  test("an operator's own rule added beside ours: still agrees", async () => {
    await apply();
    const text = readFileSync(sandbox.rulesFile, 'utf8');
    writeFileSync(sandbox.rulesFile, text.replace('*nat\n', '*nat\n:OPERATOR - [0:0]\n'));
    const result = await status();
    expect(result.rulesFileTree).toBe(true);
    expect(result.agree).toBe(true);
  });
});

test('the kernel drifted (one client moved to other ports by hand): disagrees, and only the kernel differs', async () => {
  await apply();
  const moved = rulesOf(table.save(), '10.42.0.2/32');
  expect(moved).toHaveLength(2);
  // iptables-restore --noflush: each rule deleted and added again with another port block.
  table.load(
    [
      '*nat',
      ...moved.flatMap((rule) => [
        rule.replace(/^-A /, '-D '),
        rule.replace(/:\d+-\d+$/, ':1024-1279'),
      ]),
      'COMMIT',
      '',
    ].join('\n'),
  );
  expect(rulesOf(table.save(), '10.42.0.2/32')).toEqual(
    moved.map((rule) => rule.replace(/:\d+-\d+$/, ':1024-1279')),
  );

  const result = await status();
  expect(result.agree).toBe(false);
  // The same number of clients on the same addresses: only the bindings tell.
  expect(result.kernel).toMatchObject({ clients: CLIENTS, blockSize: 256 });
  expect(result.kernel.bindings).not.toBe(result.archive.bindings);
  expect(result.rulesFile.bindings).toBe(result.archive.bindings);
});

test('no archive yet, though the rules file and the kernel hold the same rules: they do not agree', async () => {
  await apply();
  rmSync(sandbox.archiveDir, { recursive: true });

  const result = await status();
  expect(result.archive).toMatchObject({
    source: undefined,
    activatedAt: undefined,
    clients: 0,
    blockSize: 0,
    publicAddresses: [],
  });
  expect(result.rulesFile.clients).toBe(CLIENTS);
  expect(result.kernel.bindings).toBe(result.rulesFile.bindings);
  expect(result.agree).toBe(false);
});

test('nothing applied yet: every summary is empty, and nothing agrees', async () => {
  const result = await status();
  expect(result.rulesFile).toMatchObject({ source: undefined, clients: 0 });
  expect(result.archive).toMatchObject({ source: undefined, clients: 0 });
  expect(result.kernel).toMatchObject({ source: 'iptables kernel state', clients: 0 });
  expect(result.agree).toBe(false);
});

test('no rules file (deleted after the apply): disagrees, the archive and the kernel still agree', async () => {
  await apply();
  rmSync(sandbox.rulesFile);

  const result = await status();
  expect(result.rulesFile).toMatchObject({
    source: undefined,
    clients: 0,
    publicAddresses: [],
    bindings: '',
  });
  expect(result.archive.clients).toBe(CLIENTS);
  expect(result.kernel.bindings).toBe(result.archive.bindings);
  expect(result.agree).toBe(false);
});

describe('with nat6 (rules.v6, the archive IPv6 half, ip6tables)', () => {
  let dual: FakeDualNatTable;

  beforeEach(() => {
    sandbox.writeConfig({
      nat: { publicAddresses: PUBLIC, portsPerClient: 256 },
      nat6: { publicAddresses: ['2001:db8::1'], portsPerClient: 64 },
    });
    dual = new FakeDualNatTable();
    table = dual;
  });

  const half = () =>
    join(
      sandbox.archiveDir,
      readdirSync(sandbox.archiveDir).find((name) => name.startsWith('rules.v6.')) ?? '',
    );

  test('after an apply both families agree, the IPv6 side summarised by its translations', async () => {
    await apply();
    const result = await status();
    const summary6 = { sources: CLIENTS, targets: ['2001:db8::1'] };
    expect(result.ipv6).toMatchObject({
      rulesFile: { source: join(sandbox.dir, 'rules.v6'), ...summary6 },
      archive: { source: half(), ...summary6 },
      kernel: { source: 'iptables kernel state (IPv6)', ...summary6 },
      agree: true,
    });
    expect(result.agree).toBe(true);
  });

  test('the IPv6 kernel drifted: the whole status disagrees, though IPv4 agrees', async () => {
    await apply();
    const moved = rulesOf(dual.ipv6.save(), 'fd0a:2a::2/128');
    expect(moved).toHaveLength(2);
    dual.ipv6.load(
      [
        '*nat',
        ...moved.flatMap((rule) => [
          rule.replace(/^-A /, '-D '),
          rule.replace(/:\d+-\d+$/, ':1024-1087'),
        ]),
        'COMMIT',
        '',
      ].join('\n'),
    );

    const result = await status();
    expect(result.ipv6?.agree).toBe(false);
    expect(result.ipv6?.kernel.sources).toBe(CLIENTS);
    expect(result.ipv6?.kernel.fingerprint).not.toBe(result.ipv6?.archive.fingerprint);
    expect(result.ipv6?.rulesFile.fingerprint).toBe(result.ipv6?.archive.fingerprint);
    expect(result.kernel.bindings).toBe(result.archive.bindings);
    expect(result.agree).toBe(false);
  });

  test('an archived IPv6 half replaced by other bytes of the same rules: agrees with nothing', async () => {
    await apply();
    const path = half();
    const text = readArchiveText(path);
    chmodSync(path, 0o640);
    writeFileSync(path, `${text}# edited\n`);

    const result = await status();
    // The translations read the same; the bytes are not those the rules.v4 header vouches for.
    expect(result.ipv6?.archive.fingerprint).toBe(result.ipv6?.kernel.fingerprint);
    expect(result.ipv6?.agree).toBe(false);
    expect(result.agree).toBe(false);
  });
});

describe('a kernel whose chains or jump differ while the bindings read back the same', () => {
  /** The kernel's nat table with `change` made to its text. */
  function kernelEdited(change: (save: string) => string): void {
    const edited = new FakeNatTable();
    edited.load(change(table.save()));
    table = edited;
  }

  test.each([
    [
      'our POSTROUTING jump deleted',
      (save: string) => save.replace(/^-A POSTROUTING .*-j TNAT\n/m, ''),
    ],
    [
      "a client's udp rule deleted",
      (save: string) => save.replace(/^-A TNAT\S* -s 10\.42\.0\.2\/32 -p udp .*\n/m, ''),
    ],
    [
      'the jump into a subtree deleted',
      (save: string) => save.replace(/^-A TNAT -s \S+ -j TNAT-\S+\n/m, ''),
    ],
  ])('%s: no agreement (found by an audit: it said yes)', async (_, change) => {
    await apply();
    expect((await status()).agree).toBe(true);
    kernelEdited(change);
    const edited = await status();
    expect(edited.kernelTree).toBe(false);
    expect(edited.agree).toBe(false);
  });
});
