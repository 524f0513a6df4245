/**
 * A clock for the apply's tests: sleeps return at once and move its time on by what they
 * asked, so an apply that waits for the next archive second never waits.
 */
import type { Clock } from '../../src/system/clock.js';

export class SteppingClock implements Clock {
  constructor(public ms: number) {}

  now(): number {
    return this.ms;
  }

  sleep(ms: number): Promise<void> {
    this.ms += ms;
    return Promise.resolve();
  }
}
