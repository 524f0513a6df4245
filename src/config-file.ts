/** Reading the configuration file from disk (the I/O half of config.ts). */
import { readFileSync } from 'node:fs';
import { TnatError } from './errors.js';
import { parseConfig, type Config } from './config.js';

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be read';
    throw new TnatError(
      'E_CONFIG',
      `${file} ${reason}: pass --config FILE or create it from config.example.yaml`,
      { cause: error },
    );
  }
  return parseConfig(text, file);
}
