/** Time as a dependency, so tests can apply "at" chosen moments without waiting for them. */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The boot clock (CLOCK_BOOTTIME, as /proc/uptime gives it) at a moment, with the boot it
 * counts from (proc(5): /proc/sys/kernel/random/boot_id). NTP slews it as it slews the wall
 * clock, but a step of the wall clock (settimeofday, an NTP step at boot, an operator's `date
 * -s`) does not move it: two readings of the same boot tell how far the wall clock was stepped
 * between them.
 */
export interface BootTime {
  readonly boot: string;
  readonly seconds: number;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
  /** The boot clock now; undefined where it cannot be read. */
  boot?(): BootTime | undefined;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => sleep(ms),
  boot: () => {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const seconds = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      return boot !== '' && Number.isFinite(seconds) ? { boot, seconds } : undefined;
    } catch {
      return undefined;
    }
  },
};
