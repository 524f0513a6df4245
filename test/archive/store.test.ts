import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { archiveBody, parseArchiveHeader, sha256 } from '../../src/archive/header.js';
import {
  findArchiveAt,
  ipv6SiblingNames,
  parseArchiveName,
  sortArchiveNames,
} from '../../src/archive/names.js';
import { gunzipSync } from 'node:zlib';
import {
  findPending,
  findPendingArchives,
  listArchives,
  newestArchive,
  prepareArchive,
  prepareArchiveAsync,
  readArchiveHeader,
} from '../../src/archive/store.js';

const header = {
  tool: 'traceable-nat test',
  backend: 'iptables' as const,
  applyStarted: '2026-11-25T00:00:00.000Z',
  reason: 'first',
  clients: 2,
  settings: { blockSize: 256 },
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tnat-archive-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('archive names', () => {
  test.each([
    ['rules.v4.1608946501', { backend: 'iptables', activatedAt: 1608946501 }],
    ['traceable-nat.nft.1795574899', { backend: 'nftables', activatedAt: 1795574899 }],
    ['rules.v4', undefined],
    ['rules.v4.1608946501.bak', undefined],
    ['.rules.v4.0.abc.tmp', undefined],
  ])('%s', (name, expected) => {
    const parsed = parseArchiveName(name);
    expect(
      parsed === undefined
        ? undefined
        : { backend: parsed.backend, activatedAt: parsed.activatedAt },
    ).toEqual(expected);
  });

  test('the archive active at a moment is the newest activated at or before it', () => {
    const sorted = sortArchiveNames([
      'rules.v4.300',
      'rules.v4.100000000',
      'rules.v4.200000000',
      'x',
    ]);
    expect(findArchiveAt(sorted, 99999999)).toBeUndefined();
    expect(findArchiveAt(sorted, 100000000)?.name).toBe('rules.v4.100000000');
    expect(findArchiveAt(sorted, 199999999)?.name).toBe('rules.v4.100000000');
    expect(findArchiveAt(sorted, 250000000)?.name).toBe('rules.v4.200000000');
  });
});

function pendingArchiveFixture() {
  return prepareArchive(dir, header, '*nat\n# pending\nCOMMIT\n', undefined, false);
}

describe('compressed archives (the default)', () => {
  test('named .gz, gzip on disk, read back as text, hashed as stored, header readable alone', () => {
    const body = Array.from(
      { length: 2000 },
      (_, i) => `-A TNAT -s 10.0.${i >> 8}.${i & 255}/32 -j SNAT\n`,
    ).join('');
    const { path, sha256: digest } = prepareArchive(
      dir,
      header,
      `*nat\n${body}COMMIT\n`,
      undefined,
    ).commit(1700000000);
    expect(path).toBe(join(dir, 'rules.v4.1700000000.gz'));
    const bytes = readFileSync(path);
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]);
    expect(bytes.length * 5).toBeLessThan(body.length);
    expect(digest).toBe(sha256(bytes));
    const stored = newestArchive(dir);
    expect(stored?.entry).toMatchObject({ name: 'rules.v4.1700000000.gz', compressed: true });
    expect(stored?.sha256).toBe(digest);
    expect(archiveBody(stored?.text ?? '')).toBe(`*nat\n${body}COMMIT\n`);
    expect(
      parseArchiveHeader(
        readArchiveHeader(dir, stored?.entry ?? { name: '', backend: 'iptables', activatedAt: 0 }),
      )?.clients,
    ).toBe(header.clients);
    // The next archive chains to the bytes as stored (what sha256sum shows).
    const next = prepareArchive(dir, header, '*nat\nCOMMIT\n', {
      name: 'rules.v4.1700000000.gz',
      sha256: digest,
    }).commit(1700000001);
    expect(parseArchiveHeader(gunzipSync(readFileSync(next.path)).toString())?.previous).toEqual({
      name: 'rules.v4.1700000000.gz',
      sha256: digest,
    });
  });

  test('a cut gzip archive is one clear sentence, not a crash', () => {
    const { path } = prepareArchive(dir, header, '*nat\nCOMMIT\n'.repeat(500), undefined).commit(
      1700000000,
    );
    const bytes = readFileSync(path);
    writeFileSync(join(dir, 'rules.v4.1700000001.gz'), bytes.subarray(0, bytes.length - 20));
    expect(() => newestArchive(dir)).toThrow(
      /rules\.v4\.1700000001\.gz is not a complete gzip file .*: it was cut or damaged/,
    );
  });
});

describe('prepare and commit', () => {
  test('the first archive has no predecessor; the next links to it by SHA-256', () => {
    prepareArchive(dir, header, '*nat\nCOMMIT\n', undefined, false).commit(1700000000);
    const first = newestArchive(dir);
    expect(first?.entry.name).toBe('rules.v4.1700000000');
    expect(parseArchiveHeader(first?.text ?? '')?.previous).toBeUndefined();
    expect(archiveBody(first?.text ?? '')).toBe('*nat\nCOMMIT\n');

    const { path, sha256: digest } = prepareArchive(
      dir,
      header,
      '*nat\n# 2\nCOMMIT\n',
      first && { name: first.entry.name, sha256: first.sha256 },
      false,
    ).commit(1700000001);
    const second = readFileSync(path, 'utf8');
    expect(digest).toBe(sha256(second));
    expect(parseArchiveHeader(second)?.previous).toEqual({
      name: 'rules.v4.1700000000',
      sha256: sha256(first?.text ?? ''),
    });
    expect(statSync(path).mode & 0o777).toBe(0o440);
    expect(listArchives(dir).map((entry) => entry.name)).toEqual([
      'rules.v4.1700000000',
      'rules.v4.1700000001',
    ]);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  test('an existing archive is never replaced', () => {
    writeFileSync(join(dir, 'rules.v4.1700000000'), 'evidence');
    const pending = prepareArchive(dir, header, 'new', undefined, false);
    expect(() => pending.commit(1700000000)).toThrow(/EEXIST/);
    pending.discard();
    expect(readFileSync(join(dir, 'rules.v4.1700000000'), 'utf8')).toBe('evidence');
    expect(readdirSync(dir)).toEqual(['rules.v4.1700000000']);
  });

  test('before the kernel is touched the archive is already complete on disk, as rules.v4.pending', () => {
    const pending = pendingArchiveFixture();
    expect(readdirSync(dir)).toEqual(['rules.v4.pending']);
    expect(readFileSync(join(dir, 'rules.v4.pending'), 'utf8')).toBe(pending.content);
    expect(sha256(pending.content)).toBe(pending.sha256);
    pending.recordChild(4242);
    const [found] = findPendingArchives(dir);
    expect(found).toMatchObject({ backend: 'iptables', childPid: 4242, sha256: pending.sha256 });
    pending.commit(1700000000);
    // With its binding index beside it, hidden (src/archive/binding-index.ts).
    expect(readdirSync(dir)).toEqual(['.rules.v4.1700000000.idx', 'rules.v4.1700000000']);
    expect(findPendingArchives(dir)).toEqual([]);
  });

  test('prepared in the thread pool, an archive is byte for byte the one prepared here, body given as text or as bytes', async () => {
    // Hard to compress (a pseudo-random comment on each rule), so the gzip comes out in more
    // than one of the stream's 1 MiB chunks.
    let seed = 12345;
    const noise = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed.toString(16).padStart(8, '0');
    };
    const text = Array.from(
      { length: 60_000 },
      (_, i) =>
        `-A TNAT-10.42.0.0/24 -s 10.42.${i % 256}.${i % 251}/32 -m comment --comment ${noise()}${noise()}${noise()}${noise()}${noise()} -j SNAT\n`,
    ).join('');
    const bytesOf = (pending: { sha256: string; discard(): void }) => {
      const stored = readFileSync(join(dir, 'rules.v4.pending'));
      pending.discard();
      return { stored, sha256: pending.sha256 };
    };
    const here = bytesOf(prepareArchive(dir, header, text, undefined));
    const fromText = bytesOf(await prepareArchiveAsync(dir, header, text, undefined));
    const fromBytes = bytesOf(
      await prepareArchiveAsync(dir, header, { text, bytes: Buffer.from(text, 'utf8') }, undefined),
    );
    expect(here.stored.length).toBeGreaterThan(1 << 20);
    expect(archiveBody(gunzipSync(here.stored).toString('utf8'))).toBe(text);
    expect(fromText.stored.equals(here.stored)).toBe(true);
    expect(fromBytes.stored.equals(here.stored)).toBe(true);
    expect([fromText.sha256, fromBytes.sha256]).toEqual([here.sha256, here.sha256]);
  });

  test('a discarded archive leaves nothing behind', () => {
    prepareArchive(dir, header, 'x', undefined).discard();
    expect(readdirSync(dir)).toEqual([]);
  });

  test('a directory that cannot be created is one clear sentence', () => {
    writeFileSync(join(dir, 'file'), '');
    expect(() => prepareArchive(join(dir, 'file', 'sub'), header, 'x', undefined)).toThrow(
      /archive directory .* cannot be created \(ENOTDIR\): .*nothing was applied/,
    );
  });
});

describe('the IPv6 half of an iptables activation (rules.v6.<s>)', () => {
  test('written and committed beside rules.v4 at the same seconds, outside the chain', () => {
    const half = prepareArchive(
      dir,
      { ...header, family: 'ipv6' },
      '*nat\nCOMMIT\n',
      undefined,
      true,
      'ip6tables',
    );
    expect(readdirSync(dir)).toContain('rules.v6.pending');
    expect(findPending(dir, 'ip6tables')?.sha256).toBe(half.sha256);
    // rules.v6.pending is not a pending link of the chain: only rules.v4.pending is.
    expect(findPendingArchives(dir)).toEqual([]);
    const v4 = prepareArchive(
      dir,
      { ...header, ipv6: { sha256: half.sha256 } },
      '*nat\nCOMMIT\n',
      undefined,
    );
    const committed6 = half.commit(1800000000);
    v4.commit(1800000000);
    expect(committed6.path).toBe(join(dir, ipv6SiblingNames(1800000000)[0] ?? ''));
    // rules.v6.<s> is never listed as a link of the chain; rules.v4.<s> vouches for it.
    expect(listArchives(dir).map((entry) => entry.name)).toEqual(['rules.v4.1800000000.gz']);
    const v4Header = parseArchiveHeader(
      gunzipSync(readFileSync(join(dir, 'rules.v4.1800000000.gz'))).toString(),
    );
    expect(v4Header?.ipv6).toEqual({ sha256: sha256(readFileSync(committed6.path)) });
    const v6Header = parseArchiveHeader(gunzipSync(readFileSync(committed6.path)).toString());
    expect(v6Header?.family).toBe('ipv6');
    expect(v6Header?.ipv6).toBeUndefined();
  });

  test('an IPv4-only archive keeps its old header, line for line', () => {
    prepareArchive(dir, header, '*nat\nCOMMIT\n', undefined, false).commit(1800000001);
    const text = readFileSync(join(dir, 'rules.v4.1800000001'), 'utf8');
    expect(text).not.toMatch(/^# (ipv6|family):/m);
    expect(text.split('\n').indexOf('# end of traceable-nat header')).toBe(8);
  });
});
