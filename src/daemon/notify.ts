/**
 * systemd notifications (sd_notify(3)) through the sd-notify addon. Without NOTIFY_SOCKET
 * (tests, a shell) every call does nothing. The watchdog interval comes from WATCHDOG_USEC, and
 * counts only when WATCHDOG_PID is unset or names this process (sd_watchdog_enabled(3)).
 */
import { createRequire } from 'node:module';

interface SdNotify {
  sendState(state: string): void;
  watchdog(): void;
}

export interface Notifier {
  ready(status: string): void;
  reloading(): void;
  stopping(): void;
  status(text: string): void;
  watchdog(): void;
  /** Half the watchdog timeout in ms, or undefined when no watchdog is asked for. */
  readonly watchdogIntervalMs: number | undefined;
}

function watchdogInterval(env: Readonly<Record<string, string | undefined>>): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  const pid = env.WATCHDOG_PID;
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (pid !== undefined && Number(pid) !== process.pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it (libuv's hrtime reads that clock). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

export function createNotifier(env: Readonly<Record<string, string | undefined>>): Notifier {
  const intervalMs = watchdogInterval(env);
  if (!env.NOTIFY_SOCKET) {
    return {
      ready: () => undefined,
      reloading: () => undefined,
      stopping: () => undefined,
      status: () => undefined,
      watchdog: () => undefined,
      watchdogIntervalMs: intervalMs,
    };
  }
  // The addon is loaded only when systemd asked for notifications.
  const sd = createRequire(import.meta.url)('sd-notify') as SdNotify;
  const send = (...lines: string[]) => {
    sd.sendState(lines.join('\n'));
  };
  return {
    ready: (status) => {
      send('READY=1', `STATUS=${status}`);
    },
    reloading: () => {
      send('RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`);
    },
    stopping: () => {
      send('STOPPING=1');
    },
    status: (text) => {
      send(`STATUS=${text}`);
    },
    watchdog: () => {
      sd.watchdog();
    },
    watchdogIntervalMs: intervalMs,
  };
}
