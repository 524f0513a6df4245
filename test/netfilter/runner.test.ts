/**
 * The process runner with real child processes: output of any size comes back whole, through
 * an unlinked temporary file, or through a pipe where no such file can be made; no file and no
 * descriptor is left behind, whatever the child does.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CommandError } from '../../src/errors.js';
import { processRunner } from '../../src/netfilter/runner.js';

const leftovers = () =>
  readdirSync(tmpdir()).filter((name) => name.startsWith(`traceable-nat-out-${process.pid}-`));
/** Descriptors still open on an output file (unlinked: `/tmp/traceable-nat-out-... (deleted)`). */
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

describe.each([
  ['a temporary file', undefined],
  ['a pipe (no temporary file can be made)', '/nonexistent/traceable-nat-test'],
])('output through %s', (_how, tmp) => {
  const saved = process.env.TMPDIR;
  beforeEach(() => {
    if (tmp !== undefined) process.env.TMPDIR = tmp;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });

  test('20 MB of output comes back whole and in order, stdin passed on, nothing left behind', async () => {
    const result = await processRunner.run('sh', ['-c', `cat; ${BIG}`], { input: 'first\n' });
    expect(result.exitCode).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines[0]).toBe('first');
    expect(lines[1]).toBe('-A TNAT-10.0.0.0 rule 1');
    expect(lines[2500000]).toBe('-A TNAT-10.0.0.0 rule 2500000');
    expect(lines).toHaveLength(2500002);
    expect(leftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });

  test('a failing command: its stderr in the error, nothing left behind; allowFailure returns it', async () => {
    const script = 'echo partial; echo "bad line 3" >&2; exit 2';
    await expect(processRunner.run('sh', ['-c', script])).rejects.toThrow(
      new CommandError('sh exited with status 2: bad line 3', {
        command: ['sh', '-c', script],
        exitCode: 2,
        stderr: 'bad line 3\n',
      }),
    );
    const allowed = await processRunner.run('sh', ['-c', script], { allowFailure: true });
    expect(allowed).toEqual({ stdout: 'partial\n', stderr: 'bad line 3\n', exitCode: 2 });
    expect(leftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });

  test('a command that is not installed: says which package, nothing left behind', async () => {
    await expect(processRunner.run('iptables-nonexistent-tool', [])).rejects.toThrow(
      'iptables-nonexistent-tool is not installed: install it (apt-get install iptables)',
    );
    expect(leftovers()).toEqual([]);
    expect(openOutputFiles()).toEqual([]);
  });
});
