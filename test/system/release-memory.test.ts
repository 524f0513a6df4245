import { releaseMemory } from '../../src/system/release-memory.js';

/**
 * Some 200 000 rule-like strings, as a big ruleset leaves behind; alive while made, so they
 * reach the old generation, which only a full collection empties.
 */
function makeRules(): string[] {
  return Array.from({ length: 200_000 }, (_, i) =>
    `-A TNAT-10.42.0.0/24 -s 10.42.${i % 256}.${i % 251}/32 -p tcp -j SNAT`.repeat(2),
  );
}

/** Garbage once it returns. */
function leaveGarbage(): number {
  return makeRules().length;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('frees the garbage an apply leaves at once, instead of when V8 next needs room', () => {
  expect(leaveGarbage()).toBe(200_000);
  const before = process.memoryUsage().heapUsed;
  releaseMemory();
  releaseMemory(); // a second call reuses the collector
  const freed = before - process.memoryUsage().heapUsed;
  expect(freed).toBeGreaterThan(10 * 2 ** 20);
});

test('collects once more a moment later: what was still referenced when it was called goes too', async () => {
  // Held until a later turn of the loop, as a finished child's stdin buffer is after an apply.
  let held: string[] | undefined = makeRules();
  setTimeout(() => {
    held = undefined;
  }, 20);
  releaseMemory(200);
  expect(held).toHaveLength(200_000);
  const before = process.memoryUsage().heapUsed;
  await sleep(600);
  expect(held).toBeUndefined();
  const freed = before - process.memoryUsage().heapUsed;
  expect(freed).toBeGreaterThan(10 * 2 ** 20);
});
