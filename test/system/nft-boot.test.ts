/**
 * Whether nftables.service's file loads our rules file, as nft(8) reads includes: real files in
 * a temporary directory stand for /etc/nftables.conf and the files it includes.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { includeLineFor, nftBootLoad } from '../../src/system/nft-boot.js';

let dir: string;
let boot: string;
let rules: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-nftboot-'));
  boot = join(dir, 'nftables.conf');
  rules = join(dir, 'traceable-nat.nft');
  writeFileSync(rules, 'table ip traceable_nat {\n}\n');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** eduVPN's nftables.conf, its nat part shortened, with `tail` after its table. */
const eduvpn = (tail: string) =>
  `#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr 10.0.0.0/8 oifname "eth0" masquerade\n\t}\n}\n${tail}`;

test("eduVPN's file as installed does not include it", () => {
  writeFileSync(boot, eduvpn(''));
  expect(nftBootLoad(rules, [boot])).toEqual({ kind: 'not-included', bootFile: boot });
});

test('an include after the flush, by its path, through a link, or by a wildcard: included', () => {
  writeFileSync(boot, eduvpn(`include "${rules}"\n`));
  expect(nftBootLoad(rules, [boot])).toEqual({
    kind: 'included',
    bootFile: boot,
    by: boot,
    wildcard: false,
  });

  symlinkSync(rules, join(dir, 'linked.nft'));
  writeFileSync(boot, eduvpn(`include "${join(dir, 'linked.nft')}"\n`));
  expect(nftBootLoad(rules, [boot]).kind).toBe('included');

  writeFileSync(boot, eduvpn(`include "${dir}/*.nft"\n`));
  expect(nftBootLoad(rules, [boot])).toMatchObject({ kind: 'included', wildcard: true });
  writeFileSync(boot, eduvpn(`include "${dir}/traceable-na[st].nf?"\n`));
  expect(nftBootLoad(rules, [boot]).kind).toBe('included');
});

test('an include in a commented line, or of another file, is none', () => {
  writeFileSync(boot, eduvpn(`# include "${rules}"\ninclude "${dir}/other.nft"\n`));
  writeFileSync(join(dir, 'other.nft'), 'table ip other {\n}\n');
  expect(nftBootLoad(rules, [boot]).kind).toBe('not-included');
});

test('an include before the flush ruleset is flushed again', () => {
  writeFileSync(boot, `include "${rules}"\n${eduvpn('')}`);
  expect(nftBootLoad(rules, [boot])).toEqual({ kind: 'flushed-after', bootFile: boot, by: boot });
});

test('included before the flush and again after it: the second include loads it', () => {
  writeFileSync(boot, `include "${rules}"\n${eduvpn(`include "${rules}"\n`)}`);
  expect(nftBootLoad(rules, [boot]).kind).toBe('included');
});

test('followed through a file the boot file includes (a drop-in directory)', () => {
  const dropIns = join(dir, 'nftables.d');
  mkdirSync(dropIns);
  const dropIn = join(dropIns, 'tnat.conf');
  writeFileSync(dropIn, `include "${rules}"\n`);
  writeFileSync(boot, eduvpn(`include "${dropIns}/*.conf"\n`));
  expect(nftBootLoad(rules, [boot])).toEqual({
    kind: 'included',
    bootFile: boot,
    by: dropIn,
    wildcard: false,
  });
});

test('no boot file at all; the first boot file that exists is the one read', () => {
  const missing = join(dir, 'sysconfig', 'nftables.conf');
  expect(nftBootLoad(rules, [missing])).toEqual({ kind: 'no-boot-file' });
  writeFileSync(boot, eduvpn(`include "${rules}"\n`));
  expect(nftBootLoad(rules, [missing, boot]).kind).toBe('included');
});

test('includes that loop end (nft refuses them itself)', () => {
  const a = join(dir, 'a.nft');
  writeFileSync(a, `include "${boot}"\n`);
  writeFileSync(boot, eduvpn(`include "${a}"\n`));
  expect(nftBootLoad(rules, [boot]).kind).toBe('not-included');
});

test('the include check suggests names the file alone, as a wildcard, and is found whether the file exists or not', () => {
  const line = includeLineFor(rules);
  expect(line).toBe(`include "${dir}/traceable-nat.nf[t]"`);
  writeFileSync(join(dir, 'traceable-nat.nfs'), 'table ip other {\n}\n');
  writeFileSync(boot, eduvpn(`${line}\n`));
  expect(nftBootLoad(rules, [boot])).toMatchObject({ kind: 'included', wildcard: true });
  rmSync(rules);
  // A wildcard matches nothing now: no error for nft, and no table of ours either.
  expect(nftBootLoad(rules, [boot]).kind).toBe('not-included');
  // A plain include of the missing file names it still (and nft stops there).
  writeFileSync(boot, eduvpn(`include "${rules}"\n`));
  expect(nftBootLoad(rules, [boot])).toMatchObject({ kind: 'included', wildcard: false });
});
