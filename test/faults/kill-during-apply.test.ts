/**
 * Issue 11, item 3: the CLI killed with SIGKILL while iptables-restore / nft is loading. The
 * child goes on and commits the new ruleset; the archive must already be durable (pending), so
 * nothing becomes active unrecorded: trace gives both answers for that window, and the next
 * apply reads the kernel, waits for the orphaned child, and archives what it finds active (or
 * drops the pending archive when the kernel never took it). The real restore is only slowed
 * down by a wrapper first on PATH, so there is time to kill the applier mid-transaction.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArchiveHeader } from '../../src/archive/header.js';
import { SWITCH_MARGIN_SECONDS } from '../../src/trace/timeline.js';
import { isProcessAlive } from '../../src/system/process-alive.js';
import { isRoot } from '../helpers/netns.js';
import { readAssignments } from '../../src/render/read-rules.js';
import { ALPHA, BETA, createFaultSite, GAMMA, type FaultSite } from './site.js';

/** WireGuard 10.44.0.0/20: 4 093 clients. */
const WIDE = { id: 'wide', wireguard: '10.44.0.0/20' };
import { applyAndKill, waitFor, writeSlowWrapper } from './slow-load.js';
import { activationOf, readArchiveText } from '../helpers/archive-files.js';

// Namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

/** Still running (a finished orphan may linger as a zombie where PID 1 does not reap). */
const alive = isProcessAlive;

interface TraceJson {
  status: string;
  notes: { code: string }[];
  candidates: { client: string }[];
}

describeKernel.each(['iptables', 'nftables'] as const)(
  'kill -9 during the kernel load (%s)',
  (backend) => {
    let site: FaultSite;
    let wrapperDir: string;

    beforeAll(() => {
      site = createFaultSite(backend, { removalGuard: false });
      wrapperDir = join(site.sandbox.dir, 'slow-bin');
      writeSlowWrapper(wrapperDir, backend, 2);
    });
    afterAll(() => {
      site.destroy();
    });

    const trace = (
      port: number,
      at = new Date().toISOString(),
    ): TraceJson & { exit: number | null } => {
      const result = site.cli([
        'trace',
        '--at',
        at,
        '--port',
        String(port),
        '--address',
        '192.0.2.1',
        '--json',
      ]);
      return { ...(JSON.parse(result.stdout) as TraceJson), exit: result.status };
    };

    test('the ruleset the orphaned child loads is archived by the next apply, and trace is honest in between', async () => {
      site.sandbox.writeProfiles([ALPHA, BETA]);
      expect(site.cli(['apply']).status).toBe(0);
      const [first] = site.archives();
      const alphaPort = site.blockOf('10.42.0.2').firstPort;
      // Out of the seconds around the first archive, where every answer is in doubt anyway.
      await sleep((SWITCH_MARGIN_SECONDS + 1) * 1000);

      // gamma takes the blocks after alpha's and beta's.
      site.sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
      const gammaPort = site.blockOf('10.42.2.2').firstPort;
      const startedAfter = Date.now();
      const { childPid } = await applyAndKill(site, wrapperDir);
      const killedAt = Date.now();
      expect(alive(childPid)).toBe(true); // the load goes on without its parent

      // Before anything is resolved: the pending archive is on disk and trace gives both answers.
      expect(
        existsSync(
          join(
            site.sandbox.archiveDir,
            `${backend === 'iptables' ? 'rules.v4' : 'traceable-nat.nft'}.pending`,
          ),
        ),
      ).toBe(true);
      const during = trace(gammaPort);
      expect(during.notes.map((note) => note.code)).toContain('apply-interrupted');
      expect(during.status).not.toBe('found');
      expect(during.exit).not.toBe(0);
      // alpha's block is the same in both rulesets: that answer holds either way.
      const alpha = trace(alphaPort);
      expect(alpha.notes).toEqual([expect.objectContaining({ code: 'apply-interrupted' })]);
      expect(alpha.status).toBe('found');
      expect(alpha.candidates.map((candidate) => candidate.client)).toEqual(['10.42.0.2']);
      const check = site.cli(['check']);
      expect(check.status).toBe(2);
      expect(check.stdout).toMatch(/FAIL {2}archive head: .*interrupted/);

      // The next apply waits for the orphaned load, finds it active, and archives it.
      const next = site.cli(['apply', '--json']);
      expect(next.status).toBe(0);
      expect(next.stderr).toMatch(/warning: an interrupted apply .* is now archived as/);
      // The rules file was not yet the pending ruleset's: the kernel is read whole, not trusted.
      expect(JSON.parse(next.stdout)).toMatchObject({ kernelRead: 'full' });
      expect(alive(childPid)).toBe(false);
      expect(site.leftovers()).toEqual([]);
      const archives = site.archives();
      expect(archives).toHaveLength(2);
      expect(archives[0]).toBe(first);
      const second = readArchiveText(join(site.sandbox.archiveDir, archives[1] ?? ''));
      const header = parseArchiveHeader(second);
      const activatedAt = activationOf(archives[1] ?? '');
      // Named no earlier than the kill, and its header keeps when the interrupted apply began.
      expect(activatedAt).toBeGreaterThanOrEqual(Math.floor(killedAt / 1000));
      const applyStarted = Date.parse(header?.applyStarted ?? '');
      expect(applyStarted).toBeGreaterThanOrEqual(startedAfter - 1000);
      expect(applyStarted).toBeLessThanOrEqual(killedAt);
      expect(second).toContain(backend === 'iptables' ? '-s 10.42.2.2/32' : '10.42.2.2 : ');
      // The window between the kill and the archive's name is uncertain: both answers.
      const window = trace(gammaPort, new Date(killedAt).toISOString());
      expect(window.status).not.toBe('found');
      expect(site.cli(['check']).status).toBe(0);
      expect(site.cli(['apply', '--verbose']).stdout).toMatch(/^unchanged/);
      // The orphaned load set the kernel's canary to the pending archive's digest, which the
      // archive kept when it was named: the next apply may trust it, and finds all as it is.
      const trusted = site.cli(['apply', '--json']);
      expect(JSON.parse(trusted.stdout)).toMatchObject({
        outcome: 'unchanged',
        kernelRead: 'canary',
      });
      const verified = site.cli(['apply', '--verify', '--json']);
      expect(JSON.parse(verified.stdout)).toMatchObject({
        outcome: 'unchanged',
        kernelRead: 'full',
      });
    });

    test('a load killed before it reached the kernel is dropped, and nothing claims activation', async () => {
      const kernelBefore = site.kernelState();
      const archivesBefore = site.archives();
      site.sandbox.writeProfiles([ALPHA, BETA]);
      const { childPid } = await applyAndKill(site, wrapperDir);
      process.kill(childPid, 'SIGKILL'); // the whole server died: the load never happened
      await waitFor('the slowed load to die', () => !alive(childPid));
      expect(site.kernelState()).toBe(kernelBefore);

      site.sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
      const next = site.cli(['apply', '--verbose']);
      expect(next.stderr).toBe('');
      expect(next.stdout).toMatch(/^unchanged/);
      expect(site.archives()).toEqual(archivesBefore);
      expect(site.leftovers()).toEqual([]);
      expect(site.cli(['check']).status).toBe(0);
    });
  },
);

describeKernel('kill -9 while the applier still writes a large nft transaction', () => {
  let site: FaultSite;
  let wrapperDir: string;

  beforeAll(() => {
    // 8 ports each, so that 4 346 clients fit on one public address.
    site = createFaultSite('nftables', { removalGuard: false }, { portsPerClient: 8 });
    wrapperDir = join(site.sandbox.dir, 'eager-bin');
    // Says "loading" as soon as nft starts, before it has read anything.
    writeSlowWrapper(wrapperDir, 'nftables', 2, 'nft', false);
  });
  afterAll(() => {
    site.destroy();
  });

  test('the orphaned nft loads the whole transaction, never a cut one', async () => {
    site.sandbox.writeProfiles([ALPHA]);
    expect(site.cli(['apply']).status).toBe(0);
    // 4 093 more clients: element adds far larger than a pipe's 64 KiB buffer.
    site.sandbox.writeProfiles([ALPHA, WIDE]);
    const { childPid } = await applyAndKill(site, wrapperDir);
    await waitFor('the orphaned load to end', () => !alive(childPid));
    const held = readAssignments(
      site.net.exec(site.net.gateway, ['nft', 'list', 'table', 'ip', 'traceable_nat']),
    ).assignments.length;
    expect(held).toBe(253 + 4093);
    const next = site.cli(['apply']);
    expect(next.stderr).toMatch(/warning: an interrupted apply .* is now archived as/);
    expect(next.status).toBe(0);
  });
});
