/**
 * The CLI killed with SIGKILL at many moments of a real apply, not only during the kernel load
 * (kill-during-apply.test.ts): while node starts, while it plans, while the archive is
 * compressed in the thread pool and the rules file written beside it, around the load, while it
 * renames. Whatever the moment, the rules file is the old one or the new one, never a mix; and
 * the next apply ends with the new ruleset active, archived once, anchored, and nothing left
 * behind. Nothing slows the apply down: the moments are spread over its real duration, and
 * beyond it.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isRoot } from '../helpers/netns.js';
import { archiveBody } from '../../src/archive/header.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { ALPHA, createFaultSite, readText, type FaultSite } from './site.js';
import { applyKilledWhen } from './slow-load.js';

/** WireGuard 10.44.0.0/20: 4 093 clients, so an apply lasts long enough to be hit inside. */
const WIDE = { id: 'wide', wireguard: '10.44.0.0/20' };

// Namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)(
  'kill -9 anywhere in an apply (%s)',
  (backend) => {
    let site: FaultSite;

    beforeAll(() => {
      // 8 ports each, so that the /20's 4 093 clients fit on one public address.
      site = createFaultSite(backend, { removalGuard: false }, { portsPerClient: 8 });
    });
    afterAll(() => {
      site.destroy();
    });

    test('the rules file is old or new, and the next apply ends with the new ruleset, archived once', async () => {
      site.sandbox.writeProfiles([WIDE]);
      const first = site.cli(['apply', '--json']);
      expect(first.status).toBe(0);
      const started = Date.now();
      site.sandbox.writeProfiles([WIDE, ALPHA]);
      site.cli(['apply']);
      // How long one change takes here, the CLI's start included: the kills are spread over it.
      const duration = Date.now() - started;
      // Over one and a half times that: the last ones land after the apply has ended.
      const moments = Array.from({ length: 12 }, (_, i) => Math.round(((i + 0.5) * duration) / 8));
      const seen = new Set<string>();
      for (const [i, ms] of moments.entries()) {
        const before = readText(site.sandbox.rulesFile);
        const archivesBefore = site.archives().length;
        site.sandbox.writeProfiles(i % 2 === 0 ? [WIDE] : [WIDE, ALPHA]);
        await applyKilledWhen(site, [], () => sleep(ms));
        const afterKill = readText(site.sandbox.rulesFile);

        const next = site.cli(['apply', '--json']);
        // On failure the diff shows the message and the moment.
        expect({ status: next.status, stderr: next.stderr, ms }).toMatchObject({ status: 0 });
        const planned = readText(site.sandbox.rulesFile);
        // Old or new, byte for byte: never a cut or mixed file.
        expect([before, planned]).toContain(afterKill);
        seen.add(afterKill === before ? 'old' : 'new');
        // Exactly one new archive, holding the new ruleset, whoever wrote it (the killed apply,
        // recovered, or the next one).
        const archives = site.archives();
        expect(archives).toHaveLength(archivesBefore + 1);
        const newest = readArchiveText(join(site.sandbox.archiveDir, archives.at(-1) ?? ''));
        expect(archiveBody(newest)).toBe(planned);
        expect(site.leftovers()).toEqual([]);
        // The kernel holds it, read whole; the chain and its anchor are sound.
        const verified = site.cli(['apply', '--verify', '--json']);
        expect(JSON.parse(verified.stdout)).toMatchObject({ outcome: 'unchanged' });
        const check = site.cli(['check']);
        expect(check.status).toBe(0);
        // The next change may come within the same second as this one's archive.
        await sleep(1000);
      }
      // The moments reached into the apply: some kills left the old file, and the late ones
      // came after the new file was in place (or the apply had ended).
      expect(seen).toEqual(new Set(['old', 'new']));
      // Twelve kills, each followed by three CLI runs: 36-41 s alone on a slow day here, over
      // the suite's 60 s on that machine with other tests beside it.
    }, 180_000);
  },
);
