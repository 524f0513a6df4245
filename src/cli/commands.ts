/** Every `traceable-nat` command, in the order `--help` lists them. */
import type { Command } from './command.js';
import { checkCommand } from './check.js';
import { profilesCommand } from './profiles.js';

export const commands: readonly Command[] = [profilesCommand, checkCommand];
