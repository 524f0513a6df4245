/** Every `traceable-nat` command, in the order `--help` lists them. */
import { applyCommand } from './apply.js';
import type { Command } from './command.js';
import { checkCommand } from './check.js';
import { daemonCommand } from './daemon.js';
import { lookupCommand } from './lookup.js';
import { planCommand } from './plan.js';
import { profilesCommand } from './profiles.js';
import { statusCommand } from './status.js';
import { traceCommand } from './trace.js';

export const commands: readonly Command[] = [
  profilesCommand,
  planCommand,
  lookupCommand,
  traceCommand,
  applyCommand,
  statusCommand,
  checkCommand,
  daemonCommand,
];
