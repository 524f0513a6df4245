/**
 * Issue 11, items 4 and 5: the newest archive, which no later archive vouches for. Edited,
 * deleted, renamed, replaced by a forged file with the right `previous` line, every archive
 * deleted, or dated in the future (a copied file, a clock stepped back): `check` says so, and
 * an apply refuses to chain a new archive to it (quickly: it used to sleep until that second)
 * unless --force says to go on, and then the new archive records the mismatch.
 */
import {
  readFileSync,
  copyFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  chmodSync,
  mkdirSync,
  readdirSync,
} from 'node:fs';
import { join } from 'node:path';
import { applyRuleset } from '../../src/apply/apply.js';
import {
  archiveBody,
  parseArchiveHeader,
  renderArchive,
  sha256,
} from '../../src/archive/header.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import type { Clock } from '../../src/system/clock.js';
import { isTnatError } from '../../src/errors.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { isRoot } from '../helpers/netns.js';
import { ALPHA, BETA, createFaultSite, GAMMA, readText, type FaultSite } from './site.js';
import { activationOf, readArchiveText } from '../helpers/archive-files.js';

// Namespaces need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)(
  'the head of the archive chain (%s)',
  (backend) => {
    let site: FaultSite;
    let dir: string;
    let saved: string;
    const newest = () => site.archives().at(-1) ?? '';

    beforeAll(() => {
      site = createFaultSite(backend);
      dir = site.sandbox.archiveDir;
      saved = join(site.sandbox.dir, 'saved');
      site.sandbox.writeProfiles([ALPHA]);
      expect(site.cli(['apply']).status).toBe(0);
      site.sandbox.writeProfiles([ALPHA, BETA]);
      expect(site.cli(['apply']).status).toBe(0);
      expect(site.archives()).toHaveLength(2);
      // The profile change every case below tries to apply.
      site.sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    });
    afterAll(() => {
      site.destroy();
    });

    /** Saves the archive directory, lets a case damage it, then puts it back. */
    const withDamage = (damage: () => void, assert: () => void) => {
      rmSync(saved, { recursive: true, force: true });
      mkdirSync(saved);
      for (const name of readdirSync(dir)) copyFileSync(join(dir, name), join(saved, name));
      const state = readText(site.sandbox.stateFile);
      try {
        damage();
        assert();
      } finally {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
        for (const name of readdirSync(saved)) copyFileSync(join(saved, name), join(dir, name));
        writeFileSync(site.sandbox.stateFile, state);
      }
    };

    const refused = (problem: RegExp) => {
      const kernelBefore = site.kernelState();
      const archivesBefore = site.archives();
      const check = site.cli(['check']);
      expect(check.status).toBe(2);
      expect(check.stdout).toMatch(new RegExp(`FAIL {2}archive head: .*${problem.source}`));
      const apply = site.cli(['apply']);
      expect(apply.stderr).toMatch(problem);
      expect(apply.stderr).toMatch(/nothing was applied/);
      expect(apply.status).toBe(2);
      expect(site.kernelState()).toBe(kernelBefore);
      expect(site.archives()).toEqual(archivesBefore);
    };

    test('the intact directory passes check', () => {
      const check = site.cli(['check']);
      expect(check.stdout).toMatch(/ok {4}archive head: .* is the newest archive/);
    });

    test('an edited newest archive', () => {
      withDamage(
        () => {
          const path = join(dir, newest());
          chmodSync(path, 0o640);
          writeFileSync(
            path,
            readArchiveText(path)
              .replace('COMMIT', '# edited\nCOMMIT')
              .replace(/}\n$/, '}\n# edited\n'),
          );
        },
        () => {
          refused(/was changed after it was written/);
        },
      );
    });

    test('a deleted newest archive', () => {
      withDamage(
        () => {
          rmSync(join(dir, newest()));
        },
        () => {
          refused(/the state file anchors/);
        },
      );
    });

    test('a renamed newest archive', () => {
      withDamage(
        () => {
          const name = newest();
          const seconds = activationOf(name);
          renameSync(
            join(dir, name),
            join(dir, name.replace(String(seconds), String(seconds - 1))),
          );
        },
        () => {
          refused(/the state file anchors/);
        },
      );
    });

    test('every archive deleted', () => {
      withDamage(
        () => {
          for (const name of site.archives()) rmSync(join(dir, name));
        },
        () => {
          refused(/holds no archive at all/);
        },
      );
    });

    test('a forged newest archive that names the real one as its previous: refused; --force goes on and records it', () => {
      withDamage(
        () => {
          const real = newest();
          const text = readArchiveText(join(dir, real));
          const header = parseArchiveHeader(text);
          if (!header) throw new Error('no header');
          const forged = renderArchive(
            { ...header, previous: { name: real, sha256: sha256(readFileSync(join(dir, real))) } },
            archiveBody(text).replace(/192\.0\.2\.1/g, '192.0.2.1'),
          );
          const seconds = activationOf(real) + 1;
          // Plain text: a forger need not compress, and the store reads both.
          writeFileSync(
            join(dir, real.replace(/\d+(\.gz)?$/, String(seconds))),
            forged + '# forged\n',
          );
        },
        () => {
          // The chain inside the directory looks intact; only the anchor sees it.
          expect(site.cli(['check']).stdout).toMatch(/ok {4}archive hash chain/);
          refused(/an archive was added, renamed, replaced or deleted by hand/);
          const forced = site.cli(['apply', '--force']);
          expect(forced.status).toBe(0);
          const header = parseArchiveHeader(readArchiveText(join(dir, newest())));
          expect(header?.reason).toMatch(/^forced over an anchor mismatch: the newest archive is /);
          expect(site.cli(['check']).stdout).toMatch(/ok {4}archive head/);
        },
      );
    });

    test('an archive dated in the future (a copied file): refused at once, check names it, trace gives its answer too and says why', () => {
      withDamage(
        () => {
          copyFileSync(
            join(dir, newest()),
            join(dir, `${backend === 'iptables' ? 'rules.v4' : 'traceable-nat.nft'}.4102444800`),
          );
        },
        () => {
          const started = Date.now();
          refused(/is dated 2100-01-01T00:00:00.000Z by its name, later than this machine's clock/);
          expect(Date.now() - started).toBeLessThan(30000); // it used to sleep until 2100
          const port = site.blockOf('10.42.0.2').firstPort;
          const trace = site.cli([
            'trace',
            '--at',
            new Date(Date.now() + 10000).toISOString(),
            '--port',
            String(port),
            '--address',
            '192.0.2.1',
            '--json',
          ]);
          const answer = JSON.parse(trace.stdout) as {
            status: string;
            archives: { file: string }[];
            notes: { code: string }[];
          };
          // Its name cannot say when it became active (a clock that ran ahead names it so
          // too): a candidate since the newest archive before it. A copy gives the same client.
          expect(answer.archives.map((archive) => archive.file)).toContainEqual(
            expect.stringMatching(/4102444800$/),
          );
          expect(answer.notes.map((note) => note.code)).toContain('archive-misdated');
          expect(answer.status).toBe('found');
        },
      );
    });

    test('a clock stepped back an hour: the apply refuses instead of waiting, and the next apply at the right time goes on', async () => {
      const config = loadConfig(site.sandbox.configFile);
      let now = Date.now() - 3600 * 1000;
      const sleeps: number[] = [];
      const clock: Clock = {
        now: () => now,
        sleep: (ms) => {
          sleeps.push(ms);
          now += ms;
          return Promise.resolve();
        },
      };
      const deps = { runner: netnsRunner(site.net.gateway), clock, discover };
      const error = await applyRuleset(config, deps).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(isTnatError(error) && error.code).toBe('E_ARCHIVE');
      expect(String(error)).toMatch(/later than this machine's clock/);
      expect(sleeps).toEqual([]);
      now = Date.now() + 1000;
      const result = await applyRuleset(config, deps);
      expect(result.outcome).toBe('applied');
    });
  },
);
