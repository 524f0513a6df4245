import { posix } from 'node:path';
import {
  parseJsonValue,
  parseProfileJson,
  parseProfilesDir,
} from '../../src/eduvpn/profiles-dir.js';
import { FIXTURES, fixture, poolRow, sourceErrorOf } from './pool-helpers.js';

const files = ['internet.json', 'office.json'].map((name) => ({
  file: posix.join(FIXTURES, 'profiles', name),
  text: fixture(`profiles/${name}`),
}));

describe('parseProfilesDir', () => {
  it.each([
    [
      0,
      [
        'internet openvpn/0 profiles/internet.json:6 10.42.42.0/26 10.42.42.2-10.42.42.62 fd42:4242:4242:4242::/112',
        'internet openvpn/1 profiles/internet.json:6 10.42.42.64/26 10.42.42.66-10.42.42.126 fd42:4242:4242:4242::1:0/112',
        'internet openvpn/2 profiles/internet.json:6 10.42.42.128/26 10.42.42.130-10.42.42.190 fd42:4242:4242:4242::2:0/112',
        'internet openvpn/3 profiles/internet.json:6 10.42.42.192/26 10.42.42.194-10.42.42.254 fd42:4242:4242:4242::3:0/112',
        'internet wireguard profiles/internet.json:10 10.43.43.0/24 10.43.43.2-10.43.43.254 fd43::/64',
        'office wireguard profiles/office.json:6 172.18.0.0/23 172.18.0.2-172.18.1.254 fd18::/64',
      ],
    ],
    [
      1,
      [
        'office wireguard profiles/office.json:6 172.18.2.0/23 172.18.2.2-172.18.3.254 fd18:0:0:2::/64',
      ],
    ],
  ])('reads one profile per JSON file for node %i, with the line of each range', (node, rows) => {
    expect(parseProfilesDir(files, node).map((pool) => poolRow(pool))).toEqual(rows);
  });

  it('names a profile without profileId after its file', () => {
    const text = '{\n  "wRangeFour": "10.5.0.0/24",\n  "wRangeSix": "fd05::/64"\n}\n';
    const profile = parseProfileJson(text, '/etc/vpn-user-portal/profiles/guest.json', 0);
    expect(profile.profileId).toBe('guest');
    expect(profile.pools.map((pool) => [pool.profileId, pool.origin.line])).toEqual([['guest', 2]]);
  });

  it('refuses the same profileId in two files, naming both', () => {
    const copy = {
      file: '/etc/vpn-user-portal/profiles/zz-copy.json',
      text: fixture('profiles/office.json'),
    };
    const error = sourceErrorOf(() => parseProfilesDir([...files, copy], 0));
    expect(error.where).toEqual({ file: copy.file, line: 2, column: 15 });
    expect(error.message).toContain(
      `profile id 'office' is also used at ${files[1]?.file ?? ''}:2:15`,
    );
  });

  it('refuses overlapping ranges in two files, naming both files and lines', () => {
    const other = {
      file: '/etc/vpn-user-portal/profiles/lab.json',
      text: '{\n  "profileId": "lab",\n  "wRangeFour": "10.42.42.64/28",\n  "wRangeSix": "fd99::/64"\n}\n',
    };
    const error = sourceErrorOf(() => parseProfilesDir([...files, other], 0));
    expect(error.where).toEqual({ file: other.file, line: 3 });
    expect(error.message).toContain(
      `client range 10.42.42.64/28 (WireGuard of profile 'lab', ${other.file}:3) overlaps ` +
        `10.42.42.64/26 (OpenVPN process 1 of profile 'internet', ${files[0]?.file ?? ''}:6)`,
    );
  });

  it.each([
    ['a missing value', '{\n  "profileId": "a",\n  "wRangeFour": ,\n}', 3, 17],
    ['a trailing comma', '{\n  "profileId": "a",\n}', 3, 1],
    ['text after the object', '{"profileId": "a"}\n}', 2, 1],
    ['a misspelt literal', '{\n  "defaultGateway": tru\n}', 2, 24],
  ])('reports invalid JSON (%s) at its line', (_, text, line, column) => {
    const error = sourceErrorOf(() => parseProfileJson(text, 'p.json', 0));
    expect(error.where).toEqual({ file: 'p.json', line, column });
    expect(error.message).toBe(
      `p.json:${line}:${column}: is not valid JSON: fix its syntax (a profile file holds one JSON object)`,
    );
  });

  it('refuses a file that holds a list instead of a profile object', () => {
    const error = sourceErrorOf(() => parseProfileJson('[\n  {"profileId": "a"}\n]', 'p.json', 0));
    expect(error.where).toEqual({ file: 'p.json', line: 1, column: 1 });
    expect(error.message).toMatch(/holds no JSON object: a profile file holds one object/);
  });

  it('checks a profile from JSON like one from config.php (host bits, at the key line)', () => {
    const text =
      '{\n  "profileId": "a",\n  "oRangeFour": "10.0.0.1/24",\n  "oRangeSix": "fd00::/64"\n}';
    const error = sourceErrorOf(() => parseProfileJson(text, 'a.json', 0));
    expect(error.where).toEqual({ file: 'a.json', line: 3, column: 17 });
    expect(error.message).toMatch(/has host bits set: write the network form 10\.0\.0\.0\/24/);
  });
});

describe('parseJsonValue', () => {
  it('keeps the line and column of keys and values', () => {
    const value = parseJsonValue('{\n\t"a": [1, 2.5, true, null],\n\t"b": "x"\n}', 'f.json');
    expect(value).toEqual({
      kind: 'array',
      pos: { line: 1, column: 1 },
      entries: [
        {
          key: 'a',
          pos: { line: 2, column: 2 },
          value: {
            kind: 'array',
            pos: { line: 2, column: 7 },
            entries: [
              {
                key: 0,
                pos: { line: 2, column: 7 },
                value: { kind: 'int', value: 1, pos: { line: 2, column: 8 } },
              },
              {
                key: 1,
                pos: { line: 2, column: 7 },
                value: { kind: 'float', value: 2.5, pos: { line: 2, column: 11 } },
              },
              {
                key: 2,
                pos: { line: 2, column: 7 },
                value: { kind: 'bool', value: true, pos: { line: 2, column: 16 } },
              },
              {
                key: 3,
                pos: { line: 2, column: 7 },
                value: { kind: 'null', pos: { line: 2, column: 22 } },
              },
            ],
          },
        },
        {
          key: 'b',
          pos: { line: 3, column: 2 },
          value: { kind: 'string', value: 'x', pos: { line: 3, column: 7 } },
        },
      ],
    });
  });

  it('goes by JSON.parse, with line 1 everywhere, where YAML reads the text differently', () => {
    // Duplicate keys: JSON keeps the last one, YAML refuses them.
    const value = parseJsonValue('{\n"a": "first",\n"a": "second"\n}', 'f.json');
    expect(value).toEqual({
      kind: 'array',
      pos: { line: 1, column: 1 },
      entries: [
        {
          key: 'a',
          pos: { line: 1, column: 1 },
          value: { kind: 'string', value: 'second', pos: { line: 1, column: 1 } },
        },
      ],
    });
  });
});
