/**
 * The process runner with real child processes: output of any size comes back whole, through
 * an unlinked temporary file, or through a pipe where no such file can be made or its file
 * system is short of space (a file there would cut the output, and the tool would still exit
 * 0); no file and no descriptor is left behind, whatever the child does.
 */
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../../src/errors.js';
import { createProcessRunner, OUTPUT_PLACES, processRunner } from '../../src/netfilter/runner.js';
import type { CommandRunner } from '../../src/netfilter/runner.js';
import { isRoot, sh } from '../helpers/netns.js';

const leftovers = (dir: string) =>
  readdirSync(dir).filter((name) => name.startsWith(`traceable-nat-out-${process.pid}-`));

/** Descriptors still open on an output file (unlinked: `.../traceable-nat-out-... (deleted)`). */
const openOutputFiles = () =>
  readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((target) => target.includes('traceable-nat-out-'));

/** 20 MB of lines, each naming its number: what a /16's iptables-save is, and more. */
const BIG = 'seq 1 2500000 | sed "s/^/-A TNAT-10.0.0.0 rule /"';

function expectBigOutput(stdout: string): void {
  const lines = stdout.split('\n');
  expect(lines[0]).toBe('first');
  expect(lines[1]).toBe('-A TNAT-10.0.0.0 rule 1');
  expect(lines[2500000]).toBe('-A TNAT-10.0.0.0 rule 2500000');
  expect(lines).toHaveLength(2500002);
}

describe.each([
  ['a temporary file', tmpdir()],
  ['a pipe (no temporary file can be made)', '/nonexistent/traceable-nat-test'],
])('output through %s', (_how, dir) => {
  const runner = createProcessRunner({ dirs: [dir], minFreeBytes: 0 });
  const noLeftovers = () => (dir === tmpdir() ? leftovers(dir) : []);

  test('20 MB of output comes back whole and in order, stdin passed on, nothing left behind', async () => {
    const result = await runner.run('sh', ['-c', `cat; ${BIG}`], { input: 'first\n' });
    expect(result.exitCode).toBe(0);
    expectBigOutput(result.stdout);
    expect(noLeftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });

  test('a failing command: its stderr in the error, nothing left behind; allowFailure returns it', async () => {
    const script = 'echo partial; echo "bad line 3" >&2; exit 2';
    await expect(runner.run('sh', ['-c', script])).rejects.toThrow(
      new CommandError('sh exited with status 2: bad line 3', {
        command: ['sh', '-c', script],
        exitCode: 2,
        stderr: 'bad line 3\n',
      }),
    );
    const allowed = await runner.run('sh', ['-c', script], { allowFailure: true });
    expect(allowed).toEqual({ stdout: 'partial\n', stderr: 'bad line 3\n', exitCode: 2 });
    expect(noLeftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });

  test('a command that is not installed: says which package, nothing left behind', async () => {
    await expect(runner.run('iptables-nonexistent-tool', [])).rejects.toThrow(
      'iptables-nonexistent-tool is not installed: install it (apt-get install iptables)',
    );
    expect(noLeftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });
});

/** Where a child's standard output goes, as the child sees it (node's pipes are socket pairs). */
async function whereOutputGoes(runner: CommandRunner): Promise<string> {
  return (await runner.run('readlink', ['/proc/self/fd/1'])).stdout.trim();
}

test('the output goes to the first directory that takes a file, else to a pipe', async () => {
  const noDir = '/nonexistent/traceable-nat-test';
  expect(await whereOutputGoes(createProcessRunner({ dirs: [noDir], minFreeBytes: 0 }))).toMatch(
    /^socket:\[\d+\]$/,
  );
  const second = createProcessRunner({ dirs: [noDir, tmpdir()], minFreeBytes: 0 });
  expect(await whereOutputGoes(second)).toMatch(
    new RegExp(`^${tmpdir()}/traceable-nat-out-${process.pid}-[0-9a-f]{12} \\(deleted\\)$`),
  );
  // On this machine (and CI's), /dev/shm has room: the default runner writes there.
  expect(await whereOutputGoes(processRunner)).toMatch(/^\/dev\/shm\/traceable-nat-out-/);
});

// Mounting a tmpfs needs root; CI runs as root.
const testAsRoot = isRoot() ? test : test.skip;

testAsRoot(
  'a nearly full file system is passed over: the output comes whole through a pipe, where a file there would be cut',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tnat-runner-'));
    const small = join(dir, 'small');
    mkdirSync(small);
    sh(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small]);
    try {
      const guarded = createProcessRunner({
        dirs: [small],
        minFreeBytes: OUTPUT_PLACES.minFreeBytes,
      });
      expect(await whereOutputGoes(guarded)).toMatch(/^socket:\[\d+\]$/);
      const result = await guarded.run('sh', ['-c', `cat; ${BIG}`], { input: 'first\n' });
      expectBigOutput(result.stdout);
      // What the guard prevents: the output cut at 64 KiB (sed says so and exits 4; a tool that
      // does not check its writes would exit 0 with it).
      const unguarded = createProcessRunner({ dirs: [small], minFreeBytes: 0 });
      const cut = await unguarded.run('sh', ['-c', `cat; ${BIG}`], {
        input: 'first\n',
        allowFailure: true,
      });
      expect(cut.stdout.length).toBeGreaterThan(0);
      expect(cut.stdout.length).toBeLessThanOrEqual(64 * 1024);
      expect(leftovers(small)).toEqual([]);
      expect(openOutputFiles()).toEqual([]);
    } finally {
      sh(['umount', small]);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
