/** `traceable-nat daemon`: the long-running service systemd starts (Type=notify). */
import { loadConfig } from '../config-file.js';
import { Daemon } from '../daemon/daemon.js';
import { createLogger } from '../daemon/logger.js';
import { createNotifier } from '../daemon/notify.js';
import { isEnvironmentFailure } from '../daemon/start-failure.js';
import { watchSources } from '../daemon/watch.js';
import { processRunner } from '../netfilter/runner.js';
import { systemClock } from '../system/clock.js';
import type { Command } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { releaseMemory } from '../system/release-memory.js';
import { bootProblem } from '../system/boot-problem.js';

const timers = {
  setTimeout: (callback: () => void, ms: number): unknown => setTimeout(callback, ms),
  clearTimeout: (handle: unknown) => {
    clearTimeout(handle as NodeJS.Timeout);
  },
  setInterval: (callback: () => void, ms: number): unknown => setInterval(callback, ms),
  clearInterval: (handle: unknown) => {
    clearInterval(handle as NodeJS.Timeout);
  },
};

export const daemonCommand: Command = {
  name: 'daemon',
  options: {},
  async run(context) {
    const { env } = context.io;
    const logger = createLogger(env);
    const daemon = new Daemon({
      configFile: context.configFile,
      loadConfig,
      discover,
      watch: watchSources,
      runner: processRunner,
      clock: systemClock,
      timers,
      logger,
      notifier: createNotifier(env),
      releaseMemory,
      bootProblem: ({ firewall }) => bootProblem(firewall),
    });
    // Signals are queued behind whatever runs now: a reload never overlaps an apply.
    let queue = Promise.resolve();
    const stopped = new Promise<void>((resolve) => {
      const stop = () => {
        queue = queue.then(() => daemon.stop()).then(resolve);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    process.on('SIGHUP', () => {
      queue = queue.then(() => daemon.reload());
    });
    queue = daemon.start();
    try {
      await queue;
    } catch (error) {
      // The first apply failed on the environment (start() logged why, in the journal): exit
      // before READY=1 so that systemd reports the start as failed and Restart= tries again.
      if (!isEnvironmentFailure(error)) throw error;
      return EXIT.applyFailed;
    }
    await stopped;
    logger.info({}, 'daemon stopped');
    return EXIT.ok;
  },
};
