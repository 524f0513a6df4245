/**
 * A clock for the apply's tests: sleeps return at once and move its time on by what they
 * asked, so an apply that waits for the next archive second never waits. Its boot clock runs
 * with it (setting `ms` moves both), except through `step`, which moves the wall clock alone,
 * as settimeofday does.
 */
import type { BootTime, Clock } from '../../src/system/clock.js';

export class SteppingClock implements Clock {
  /** The wall clock's milliseconds when the boot clock read 0. */
  private bootedAtMs: number;

  constructor(public ms: number) {
    this.bootedAtMs = ms - 3_600_000;
  }

  now(): number {
    return this.ms;
  }

  sleep(ms: number): Promise<void> {
    this.ms += ms;
    return Promise.resolve();
  }

  boot(): BootTime {
    return { boot: 'a-test-boot', seconds: (this.ms - this.bootedAtMs) / 1000 };
  }

  /** Steps the wall clock by `ms`; the boot clock goes on as it was. */
  step(ms: number): void {
    this.ms += ms;
    this.bootedAtMs += ms;
  }
}
