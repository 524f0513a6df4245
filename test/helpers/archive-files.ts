/** Reading archive files in tests as an operator would with zcat: gzip or plain text. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export function readArchiveText(path: string): string {
  const bytes = readFileSync(path);
  return (bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes).toString('utf8');
}

/** `rules.v4.<seconds>` or `traceable-nat.nft.<seconds>`, with `.gz` when compressed. */
export const ARCHIVE_FILE = /^(?:rules\.v4|traceable-nat\.nft)\.(\d+)(?:\.gz)?$/;

export function activationOf(name: string): number {
  return Number(ARCHIVE_FILE.exec(name)?.[1]);
}
