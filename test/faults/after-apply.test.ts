/**
 * Issue 11, item 8 and the leftovers of a killed applier. Once the kernel took the new ruleset
 * and its archive has its name, a failure of what comes after (the afterWrite command) must not
 * be reported as a failed apply ("the previous rules stay active" would be false): it is
 * applied, with the failure as a warning. Temporary files a kill -9 left (15 MB each for a /16)
 * are removed by the next apply, which holds the lock.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isRoot } from '../helpers/netns.js';
import { ALPHA, BETA, createFaultSite, GAMMA, type FaultSite } from './site.js';

// Namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)(
  'after the kernel took the rules (%s)',
  (backend) => {
    let site: FaultSite;

    beforeAll(() => {
      site = createFaultSite(backend, { afterWrite: 'echo the hook broke >&2; exit 3' });
      site.sandbox.writeProfiles([ALPHA]);
    });
    afterAll(() => {
      site.destroy();
    });

    test('a failing afterWrite is a warning: applied, archived, anchored, exit 0', () => {
      const result = site.cli(['apply', '--json']);
      expect(result.status).toBe(0);
      const answer = JSON.parse(result.stdout) as {
        outcome: string;
        archive: { path: string; sha256: string };
        warnings: string[];
      };
      expect(answer.outcome).toBe('applied');
      expect(answer.warnings).toEqual([
        expect.stringMatching(
          /^firewall\.afterWrite failed \(.*exited with status 3: the hook broke\); the new ruleset is active and archived all the same$/,
        ),
      ]);
      expect(result.stderr).toMatch(/^traceable-nat: warning: firewall\.afterWrite failed/);
      expect(existsSync(answer.archive.path)).toBe(true);
      const state = JSON.parse(readFileSync(site.sandbox.stateFile, 'utf8')) as {
        archiveDirs: Record<string, { head: { name: string; sha256: string } }>;
      };
      expect(state.archiveDirs[site.sandbox.archiveDir]?.head).toMatchObject({
        name: basename(answer.archive.path),
        sha256: answer.archive.sha256,
      });
      // And the next run knows it is done.
      expect(site.cli(['apply', '--verbose']).stdout).toMatch(/^unchanged/);
    });

    test('an archive directory never anchored (an upgrade) is anchored by the next apply, even with nothing to change', () => {
      rmSync(site.sandbox.stateFile);
      expect(site.cli(['apply', '--verbose']).stdout).toMatch(/^unchanged/);
      const state = JSON.parse(readFileSync(site.sandbox.stateFile, 'utf8')) as {
        archiveDirs: Record<string, { head: { name: string; sha256: string } }>;
      };
      const newest = site.archives().at(-1) ?? '';
      expect(state.archiveDirs[site.sandbox.archiveDir]?.head).toMatchObject({
        name: newest,
        sha256: createHash('sha256')
          .update(readFileSync(join(site.sandbox.archiveDir, newest)))
          .digest('hex'),
      });
    });

    test("a killed applier's temporary files are removed by the next apply", () => {
      const rulesName = basename(site.sandbox.rulesFile);
      const archivePrefix = backend === 'iptables' ? 'rules.v4' : 'traceable-nat.nft';
      mkdirSync(site.sandbox.archiveDir, { recursive: true });
      const leftovers = [
        join(site.sandbox.dir, `.${rulesName}.0123456789ab.tmp`),
        join(site.sandbox.archiveDir, `.${archivePrefix}.0.0123456789ab.tmp`),
      ];
      for (const path of leftovers) writeFileSync(path, 'x'.repeat(100000));
      const unrelated = join(site.sandbox.dir, '.someone-else.tmp');
      writeFileSync(unrelated, 'keep');
      site.sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
      expect(site.cli(['apply']).status).toBe(0);
      expect(leftovers.filter((path) => existsSync(path))).toEqual([]);
      expect(readFileSync(unrelated, 'utf8')).toBe('keep');
    });
  },
);
