/** The shape every command file exports: its options and a run function over a context. */
import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../config.js';
import type { CliIo } from './io.js';

export interface CommandContext {
  readonly io: CliIo;
  readonly configFile: string;
  /** Reads and validates the configuration (once; later calls return the same frozen value). */
  readonly config: () => Config;
}

export type OptionValues = Readonly<
  Record<string, string | boolean | (string | boolean)[] | undefined>
>;

/** What a command's module exports; its name's help text is in commands.ts. */
export interface Command {
  readonly name: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  /** How many positional arguments it takes. */
  readonly positionals?: { readonly min: number; readonly max: number };
  run(
    context: CommandContext,
    options: OptionValues,
    positionals: readonly string[],
  ): Promise<number>;
}
