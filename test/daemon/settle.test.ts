import { Settler, type Timers } from '../../src/daemon/settle.js';

/** Timers under the test's control: `advance` fires what is due. */
function manualTimers(): Timers & { advance(ms: number): void; readonly now: number } {
  let now = 0;
  let next = 1;
  const due = new Map<number, { at: number; callback: () => void }>();
  return {
    get now() {
      return now;
    },
    setTimeout(callback, ms) {
      const id = next++;
      due.set(id, { at: now + ms, callback });
      return id;
    },
    clearTimeout(handle) {
      due.delete(handle as number);
    },
    advance(ms) {
      now += ms;
      for (const [id, timer] of [...due].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at <= now) {
          due.delete(id);
          timer.callback();
        }
      }
    },
  };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A settler whose runs end at once, counted. */
function countingSettler(timers: Timers, settleMs: number, maxWaitMs?: number) {
  let runs = 0;
  const settler = new Settler(
    () => settleMs,
    () => {
      runs++;
      return Promise.resolve();
    },
    timers,
    maxWaitMs === undefined ? undefined : () => maxWaitMs,
  );
  return { settler, runs: () => runs };
}

describe('Settler', () => {
  test('a burst of a hundred changes gives one run, after the quiet time', async () => {
    const timers = manualTimers();
    const { settler, runs } = countingSettler(timers, 2000);
    for (let i = 0; i < 100; i++) {
      if (i > 0) timers.advance(10); // each change well within the quiet time of the one before
      settler.poke();
    }
    expect(settler.settling).toBe(true);
    timers.advance(1999);
    await flush();
    expect(runs()).toBe(0);
    timers.advance(1);
    await flush();
    expect(runs()).toBe(1);
    expect(settler.settling).toBe(false);
  });

  test('changes during a run lead to exactly one more run, never an overlapping one', async () => {
    const timers = manualTimers();
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let finish: () => void = () => undefined;
    const settler = new Settler(
      () => 100,
      () =>
        new Promise<void>((resolve) => {
          running++;
          runs++;
          maxRunning = Math.max(maxRunning, running);
          finish = () => {
            running--;
            resolve();
          };
        }),
      timers,
    );
    settler.poke();
    timers.advance(100);
    await flush();
    expect(runs).toBe(1);
    settler.poke();
    settler.poke();
    finish();
    await flush();
    timers.advance(100);
    await flush();
    expect(runs).toBe(2);
    finish();
    await flush();
    timers.advance(1000);
    await flush();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
  });

  test('stop waits for the run in progress and allows no more', async () => {
    const timers = manualTimers();
    let done = false;
    let runs = 0;
    const settler = new Settler(
      () => 10,
      () =>
        new Promise<void>((resolve) => {
          runs++;
          setTimeout(() => {
            done = true;
            resolve();
          }, 20);
        }),
      timers,
    );
    const first = settler.runNow();
    await settler.stop();
    expect(done).toBe(true);
    await first;
    settler.poke();
    timers.advance(100);
    await flush();
    expect(runs).toBe(1);
  });
});

test('runNow during a run runs right after it, not after another quiet time', async () => {
  const timers = manualTimers();
  let runs = 0;
  let finish: () => void = () => undefined;
  const settler = new Settler(
    () => 1000,
    () =>
      new Promise<void>((resolve) => {
        runs++;
        finish = resolve;
      }),
    timers,
  );
  void settler.runNow();
  await flush();
  const second = settler.runNow();
  finish();
  await flush();
  expect(runs).toBe(2);
  finish();
  await second;
  expect(settler.settling).toBe(false);
});

test('runNow during a settle does not end it: the settle still gets its own run, never an overlapping one', async () => {
  const timers = manualTimers();
  let runs = 0;
  let running = 0;
  let maxRunning = 0;
  let finish: () => void = () => undefined;
  const settler = new Settler(
    () => 1000,
    () =>
      new Promise<void>((resolve) => {
        runs++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        finish = () => {
          running--;
          resolve();
        };
      }),
    timers,
  );
  // A file is being rewritten (the settle started), then a run is asked for now (the daemon's
  // start, after a change heard before it): that run may read a half-written file, so the
  // settle must still end with a run of its own.
  settler.poke();
  timers.advance(500);
  const now = settler.runNow();
  await flush();
  expect(runs).toBe(1);
  // The quiet time ends while the runNow run is still going: one more run, after it.
  timers.advance(500);
  await flush();
  expect(runs).toBe(1);
  finish();
  await now;
  await flush();
  timers.advance(1000);
  await flush();
  expect(runs).toBe(2);
  finish();
  await flush();
  timers.advance(5000);
  await flush();
  expect(runs).toBe(2);
  expect(maxRunning).toBe(1);
  expect(settler.settling).toBe(false);
});

test('idle waits for the run in progress; a change during it waits in its quiet time, not in idle', async () => {
  const timers = manualTimers();
  const finishes: (() => void)[] = [];
  const settler = new Settler(
    () => 1000,
    () =>
      new Promise<void>((resolve) => {
        finishes.push(resolve);
      }),
    timers,
  );
  await settler.idle();
  void settler.runNow();
  await flush();
  let idle = false;
  const waiting = settler.idle().then(() => {
    idle = true;
  });
  settler.poke();
  await flush();
  expect(idle).toBe(false);
  finishes[0]?.();
  await waiting;
  expect(settler.settling).toBe(true);
  timers.advance(1000);
  await flush();
  expect(finishes).toHaveLength(2);
  idle = false;
  const again = settler.idle().then(() => {
    idle = true;
  });
  await flush();
  expect(idle).toBe(false);
  finishes[1]?.();
  await again;
  expect(idle).toBe(true);
});

test('changes that never leave the quiet time run at maxWaitMs after the first; a settle that ends in quiet leaves no deadline behind', async () => {
  const timers = manualTimers();
  const { settler, runs } = countingSettler(timers, 1000, 5000);
  for (let at = 0; at < 5000; at += 500) {
    settler.poke();
    timers.advance(499);
    await flush();
    expect(runs()).toBe(0);
    timers.advance(1);
  }
  await flush();
  expect(runs()).toBe(1);
  expect(settler.settling).toBe(false);

  // Quiet at last: one run after the quiet time, and the deadline of that settle goes with it.
  settler.poke();
  timers.advance(1000);
  await flush();
  expect(runs()).toBe(2);
  timers.advance(10_000);
  await flush();
  expect(runs()).toBe(2);
});
