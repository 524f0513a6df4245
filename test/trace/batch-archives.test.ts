/**
 * The batch's cache of parsed archives: traces through it answer as traces without it, and
 * traces in time order parse each archive once however many rows there are, while only a few
 * parsed archives are kept.
 */
import fc from 'fast-check';
import { parseIpv4 } from '../../src/net/ipv4.js';
import { withArchiveCache } from '../../src/trace/batch-archives.js';
import { traceArchives, type TraceQuery } from '../../src/trace/trace.js';
import { archiveFiles, memoryDir, type ArchiveSpec } from './archive-fixtures.js';

const A = '192.0.2.1';
const T0 = 1600000000;
const SPECS: ArchiveSpec[] = Array.from({ length: 12 }, (_, k) => ({
  at: T0 + k * 300,
  form: k % 3 === 2 ? 'nft' : 'iptables',
  took: 1 + (k % 2),
  rows: Array.from(
    { length: 6 },
    (__, i) => [`10.0.0.${2 + ((i + k) % 9)}`, A, 65024 + i * 64, 65087 + i * 64] as const,
  ),
}));

const nameOf = (k: number) => `${k % 3 === 2 ? 'traceable-nat.nft' : 'rules.v4'}.${T0 + k * 300}`;

const query = fc.record({
  at: fc.oneof(
    fc.integer({ min: T0 - 100, max: T0 + 12 * 300 + 100 }),
    fc
      .tuple(fc.integer({ min: 0, max: 11 }), fc.integer({ min: -8, max: 8 }))
      .map(([k, d]) => T0 + k * 300 + d),
  ),
  port: fc.integer({ min: 65000, max: 65500 }),
  address: fc.constantFrom(parseIpv4(A), undefined),
});

/** What a trace says, without the object identity of its archives. */
const plain = (result: ReturnType<typeof traceArchives>) =>
  JSON.parse(JSON.stringify(result)) as unknown;

describe('withArchiveCache', () => {
  test('answers as the directories themselves do, in any order', () => {
    fc.assert(
      fc.property(fc.array(query, { minLength: 1, maxLength: 40 }), (queries: TraceQuery[]) => {
        const files = archiveFiles(SPECS);
        const cached = withArchiveCache([memoryDir('/n', files)]);
        for (const q of queries) {
          expect(plain(traceArchives(cached, q))).toEqual(
            plain(traceArchives([memoryDir('/n', files)], q)),
          );
        }
      }),
      { numRuns: 40 },
    );
  });

  test('in time order every archive is parsed at most once, with three kept', () => {
    fc.assert(
      fc.property(fc.array(query, { minLength: 50, maxLength: 200 }), (queries: TraceQuery[]) => {
        const dir = memoryDir('/n', archiveFiles(SPECS));
        const [cached] = withArchiveCache([dir]);
        if (!cached) throw new Error('no dir');
        for (const q of [...queries].sort((a, b) => a.at - b.at)) traceArchives([cached], q);
        expect(dir.reads.length).toBe(new Set(dir.reads).size);
      }),
      { numRuns: 40 },
    );
  });

  test('keeps no more than its capacity: out of order, archives are parsed again', () => {
    const dir = memoryDir('/n', archiveFiles(SPECS));
    const cached = withArchiveCache([dir], 2);
    const late = { at: T0 + 11 * 300 + 100, port: 65100 };
    const early = { at: T0 + 100, port: 65100 };
    for (const q of [early, early, late, late, early]) traceArchives(cached, q);
    // early reads two archives (the active one, and the next to see when its apply began), late
    // one; repeats hit the cache until late's archive pushed early's first one out.
    expect(dir.reads).toEqual([0, 1, 11, 0, 1].map(nameOf));
  });
});

describe('what vouches for the archives survives the cache', () => {
  test('an interrupted apply and the anchor are seen through the cache as without it', () => {
    const files = archiveFiles(SPECS);
    const pendingText =
      archiveFiles([
        { at: T0 + 12 * 300, form: 'iptables', rows: [['10.0.0.99', A, 65024, 65087]] },
      ]).get(`rules.v4.${T0 + 12 * 300}`) ?? '';
    const dir = {
      ...memoryDir('/archive', files),
      anchor: { name: nameOf(11), sha256: '0'.repeat(64) },
      pending: {
        entry: { name: 'rules.v4.pending', backend: 'iptables' as const, activatedAt: Infinity },
        text: pendingText,
      },
    };
    const at = { at: T0 + 12 * 300 + 60, port: 65030, address: parseIpv4(A) };
    const direct = traceArchives([dir], at);
    const [cached] = withArchiveCache([dir]);
    if (!cached) throw new Error('no cached directory');
    expect(plain(traceArchives([cached], at))).toEqual(plain(direct));
    expect(direct.notes.map((note) => note.code)).toEqual(
      expect.arrayContaining(['apply-interrupted', 'archive-damaged']),
    );
  });
});
