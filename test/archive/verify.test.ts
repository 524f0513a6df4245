/** The archive hash chain: intact, a gap, tampering, files slipped in; foreign archives as links. */
import { verifyArchiveChain, type ArchiveFile } from '../../src/archive/verify.js';
import { archiveFiles, type ArchiveSpec } from '../trace/archive-fixtures.js';

const A = '192.0.2.1';
const SPECS: ArchiveSpec[] = [
  { at: 1600000000, form: 'original', rows: [['10.0.0.2', A, 65280, 65535]] },
  { at: 1600003600, form: 'iptables', rows: [['10.0.0.2', A, 65280, 65535]] },
  { at: 1600007200, form: 'iptables', rows: [['10.0.0.3', A, 65280, 65535]] },
  { at: 1600010800, form: 'nft', rows: [['10.0.0.4', A, 65280, 65535]] },
];

function files(change: (map: Map<string, string>) => void = () => undefined): ArchiveFile[] {
  const map = archiveFiles(SPECS);
  change(map);
  return [...map].map(([name, text]) => ({ name, text }));
}

function problems(list: readonly ArchiveFile[]) {
  return verifyArchiveChain(list).problems.map(({ kind, file }) => ({ kind, file }));
}

describe('verifyArchiveChain', () => {
  test('an intact chain, starting at an original-script archive', () => {
    const report = verifyArchiveChain(files());
    expect(report).toEqual({ archives: 4, ours: 3, problems: [] });
  });

  test('files that are not archives are ignored', () => {
    const list = [...files(), { name: 'rules.v6', text: 'x' }, { name: 'notes.txt', text: 'y' }];
    expect(verifyArchiveChain(list)).toEqual({ archives: 4, ours: 3, problems: [] });
  });

  test('a deleted archive is a gap, named by its successor', () => {
    const list = files((map) => map.delete('rules.v4.1600007200'));
    const report = verifyArchiveChain(list);
    expect(problems(list)).toEqual([{ kind: 'gap', file: 'traceable-nat.nft.1600010800' }]);
    expect(report.problems[0]?.message).toBe(
      'traceable-nat.nft.1600010800 follows rules.v4.1600007200, which is missing (deleted or moved)',
    );
  });

  test('a deleted oldest archive is a gap too', () => {
    const list = files((map) => map.delete('rules.v4.1600000000'));
    expect(problems(list)).toEqual([{ kind: 'gap', file: 'rules.v4.1600003600' }]);
  });

  test('an edited archive of ours is tampering', () => {
    const list = files((map) => {
      const name = 'rules.v4.1600003600';
      map.set(name, (map.get(name) ?? '').replace('65280-65535', '65024-65279'));
    });
    const report = verifyArchiveChain(list);
    expect(problems(list)).toEqual([{ kind: 'tampered', file: 'rules.v4.1600007200' }]);
    expect(report.problems[0]?.message).toMatch(
      /^rules\.v4\.1600003600 was changed after rules\.v4\.1600007200 was written \(sha256 [0-9a-f]{64}, recorded [0-9a-f]{64}\)$/,
    );
  });

  test('an edited original-script archive is caught by our successor', () => {
    const list = files((map) => map.set('rules.v4.1600000000', '*nat\nCOMMIT\n'));
    expect(problems(list)).toEqual([{ kind: 'tampered', file: 'rules.v4.1600003600' }]);
  });

  test('an archive slipped in between two of ours breaks the chain', () => {
    const list = [...files(), { name: 'rules.v4.1600005000', text: '*nat\nCOMMIT\n' }];
    expect(problems(list)).toEqual([{ kind: 'unchained', file: 'rules.v4.1600007200' }]);
  });

  test('an archive of ours that claims to be first while an older one exists', () => {
    const list = files((map) => {
      const text = map.get('rules.v4.1600003600') ?? '';
      map.set('rules.v4.1600003600', text.replace(/^# previous: .*$/m, '# previous: none'));
    });
    // The edit itself also changes the file its successor vouched for.
    expect(problems(list)).toEqual([
      { kind: 'unchained', file: 'rules.v4.1600003600' },
      { kind: 'tampered', file: 'rules.v4.1600007200' },
    ]);
  });

  test('an empty directory', () => {
    expect(verifyArchiveChain([])).toEqual({ archives: 0, ours: 0, problems: [] });
  });
});

describe('the IPv6 halves (rules.v6.<s>) the rules.v4 headers vouch for', () => {
  const HALF = 'a'.repeat(64);
  /** The newest archive, rules.v4, with an `# ipv6:` line, and the half's digest as found. */
  function withHalf(found: string | undefined): ArchiveFile[] {
    const list = files((map) => map.delete('traceable-nat.nft.1600010800'));
    return list.map((file) =>
      file.name === 'rules.v4.1600007200'
        ? {
            ...file,
            text: file.text.replace(
              '# end of traceable-nat header',
              `# ipv6: sha256:${HALF}\n# end of traceable-nat header`,
            ),
            ipv6Sha256: found,
          }
        : file,
    );
  }

  test('intact: no problem', () => {
    expect(problems(withHalf(HALF))).toEqual([]);
  });

  test('missing: a gap, named by its rules.v4 archive', () => {
    const report = verifyArchiveChain(withHalf(undefined));
    expect(report.problems.map(({ kind, file }) => ({ kind, file }))).toContainEqual({
      kind: 'gap',
      file: 'rules.v4.1600007200',
    });
    expect(report.problems.map((problem) => problem.message)).toContain(
      'rules.v6.1600007200 (the IPv6 half of rules.v4.1600007200) is missing',
    );
  });

  test('changed: tampered', () => {
    expect(problems(withHalf('b'.repeat(64)))).toContainEqual({
      kind: 'tampered',
      file: 'rules.v4.1600007200',
    });
  });
});
