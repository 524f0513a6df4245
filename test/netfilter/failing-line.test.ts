import { CommandError } from '../../src/errors.js';
import { failingLineOf, withFailingLine } from '../../src/netfilter/failing-line.js';

const payload = ['*nat', ':TNAT-a - [0:0]', '-X TNAT-a', 'COMMIT', ''].join('\n');

describe('failing payload lines', () => {
  test.each([
    [
      'iptables-legacy-restore',
      "Couldn't load target `SNATT'\n\nError occurred at line: 4\nTry `iptables-restore -h'",
      4,
    ],
    [
      'nf_tables, parse time',
      'iptables-restore v1.8.9 (nf_tables): Bad IP address "1.2.3"\nError occurred at line: 4\n',
      4,
    ],
    [
      'nf_tables, commit time',
      'iptables-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed (Device or resource busy): chain TNAT-a\n',
      3,
    ],
    ['nft', '/dev/stdin:5:1-10: Error: Could not process rule: No such file or directory\n', 5],
    ['nothing to go by', 'Killed\n', undefined],
  ])('%s', (_name, stderr, line) => {
    expect(failingLineOf(stderr)).toBe(line);
  });

  test('the error shows the line with context and the reason', () => {
    const error = new CommandError('iptables-restore exited with status 4', {
      command: ['iptables-restore', '--noflush'],
      exitCode: 4,
      stderr:
        'iptables-restore v1.8.9 (nf_tables): \nline 3: CHAIN_DEL failed (Device or resource busy): chain TNAT-a\n',
    });
    const shown = withFailingLine(error, payload, 'iptables-restore payload');
    expect(shown.message).toContain(
      'refused line 3 of the iptables-restore payload (line 3: CHAIN_DEL failed',
    );
    expect(shown.message).toContain('>      3  -X TNAT-a');
    expect(shown.message).toContain('       2  :TNAT-a - [0:0]');
    expect(shown.stderr).toBe(error.stderr);
  });
});
