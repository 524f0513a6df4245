/**
 * The file-system side of eduVPN discovery: read a file or list a directory, or say it is absent.
 *
 * Only regular files are read. A FIFO in place of config.php once hung every apply (issue 11):
 * open(2) of a FIFO for reading blocks until a writer comes, and a read of a device may never
 * end. So the path is stat'ed first (a device or FIFO is never even opened), then opened with
 * O_NONBLOCK (a FIFO swapped in after the stat does not block the open) and the open file
 * fstat'ed, which is the file actually read, before reading it.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
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

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO (named pipe)';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function notRegular(path: string, stats: Stats): TnatError {
  return new TnatError(
    'E_SOURCE',
    `${path} is ${kindOf(stats)}, not a regular file, so it was not read: put eduVPN's file there or point the eduvpn setting at it`,
  );
}

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

export const fsSourceReader: SourceReader = {
  readText(path) {
    let fd: number | undefined;
    try {
      const before = statSync(path);
      if (!before.isFile()) throw notRegular(path, before);
      fd = openSync(path, OPEN_FLAGS);
      const opened = fstatSync(fd);
      if (!opened.isFile()) throw notRegular(path, opened);
      return readFileSync(fd, 'utf8');
    } catch (error) {
      if (error instanceof TnatError) throw error;
      if (absent(error)) return undefined;
      throw unreadable(path, error);
    } finally {
      if (fd !== undefined) closeSync(fd);
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
