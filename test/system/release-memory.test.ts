import { releaseMemory } from '../../src/system/release-memory.js';

/**
 * Some 200 000 rule-like strings, as a big ruleset leaves behind; alive while made, so they
 * reach the old generation, which only a full collection empties. Garbage once it returns.
 */
function leaveGarbage(): number {
  const rules = Array.from({ length: 200_000 }, (_, i) =>
    `-A TNAT-10.42.0.0/24 -s 10.42.${i % 256}.${i % 251}/32 -p tcp -j SNAT`.repeat(2),
  );
  return rules.length;
}

test('frees the garbage an apply leaves at once, instead of when V8 next needs room', () => {
  expect(leaveGarbage()).toBe(200_000);
  const before = process.memoryUsage().heapUsed;
  releaseMemory();
  releaseMemory(); // a second call reuses the collector
  const freed = before - process.memoryUsage().heapUsed;
  expect(freed).toBeGreaterThan(10 * 2 ** 20);
});
