/** The file-system side of eduVPN discovery: read a file or list a directory, or say it is absent. */
import { readFileSync, readdirSync } from 'node:fs';
import { TnatError } from '../errors.js';
import type { SourceReader } from '../eduvpn/discover.js';

function absent(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function unreadable(path: string, error: unknown): TnatError {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return new TnatError(
    'E_SOURCE',
    `${path} cannot be read (${code}): check its permissions, traceable-nat runs as root and only reads it`,
    { cause: error },
  );
}

export const fsSourceReader: SourceReader = {
  readText(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      if (absent(error)) return undefined;
      throw unreadable(path, error);
    }
  },
  listDir(path) {
    try {
      return readdirSync(path).sort();
    } catch (error) {
      if (absent(error)) return undefined;
      throw unreadable(path, error);
    }
  },
};
