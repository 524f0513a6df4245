/**
 * A CommandRunner that runs every command inside a network namespace, so in-process code (an
 * apply with an injected clock, say) changes only the test's own namespace, never the host.
 */
import { processRunner, type CommandRunner } from '../../src/netfilter/runner.js';

export function netnsRunner(ns: string): CommandRunner {
  return {
    run: (command, args, options) =>
      processRunner.run('ip', ['netns', 'exec', ns, command, ...args], options),
  };
}
