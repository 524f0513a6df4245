/**
 * Portal 3.9.7+ profiles as JSON files (`/etc/vpn-user-portal/profiles/*.json`): one profile
 * object per file with the keys of a `ProfileList` entry. The exact schema is not confirmed, so
 * each file goes through the same reader as a config.php profile.
 */
import { posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { LineCounter, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Where } from '../errors.js';
import type { PhpArrayEntry, PhpValue, Position } from './php-value.js';
import type { ClientPool } from './pool.js';
import { parsePortalProfile, type PortalProfile } from './portal.js';
import { collectPools } from './profile-checks.js';
import { sourceError } from './ranges.js';

export interface ProfileFile {
  readonly file: string;
  readonly text: string;
}

const FIRST_LINE: Position = { line: 1, column: 1 };

/** A plain JSON value as a PhpValue, every position at `pos` (used when positions are unknown). */
function fromJson(value: unknown, pos: Position): PhpValue {
  if (typeof value === 'string') return { kind: 'string', value, pos };
  if (typeof value === 'boolean') return { kind: 'bool', value, pos };
  if (typeof value === 'number') {
    return { kind: Number.isInteger(value) ? 'int' : 'float', value, pos };
  }
  if (Array.isArray(value)) {
    const entries = value.map((item, key): PhpArrayEntry => ({
      key,
      value: fromJson(item, pos),
      pos,
    }));
    return { kind: 'array', entries, pos };
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).map(([key, item]): PhpArrayEntry => ({
      key,
      value: fromJson(item, pos),
      pos,
    }));
    return { kind: 'array', entries, pos };
  }
  return { kind: 'null', pos };
}

/** YAML reads JSON (it is a superset) and, unlike JSON.parse, keeps where every value sits. */
function fromYamlNode(node: unknown, lines: LineCounter): PhpValue {
  const start = (isMap(node) || isSeq(node) || isScalar(node)) && node.range ? node.range[0] : 0;
  const { line, col } = lines.linePos(start);
  const pos: Position = { line, column: col };
  if (isMap(node)) {
    const entries = node.items.map((pair): PhpArrayEntry => {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      const keyStart = isScalar(pair.key) && pair.key.range ? pair.key.range[0] : start;
      const keyPos = lines.linePos(keyStart);
      return {
        key,
        value: fromYamlNode(pair.value, lines),
        pos: { line: keyPos.line, column: keyPos.col },
      };
    });
    return { kind: 'array', entries, pos };
  }
  if (isSeq(node)) {
    const entries = node.items.map((item, key): PhpArrayEntry => ({
      key,
      value: fromYamlNode(item, lines),
      pos,
    }));
    return { kind: 'array', entries, pos };
  }
  return fromJson(isScalar(node) ? node.value : null, pos);
}

function startsWithUnexpectedToken(text: string): boolean {
  try {
    JSON.parse(text);
    return false;
  } catch (error) {
    return error instanceof Error && error.message.startsWith('Unexpected token');
  }
}

/**
 * Where JSON.parse stopped. Node 20 names no position for an unexpected token, so that one is
 * found as the shortest prefix that already fails the same way (a prefix that stops before the
 * bad token fails only for ending early).
 */
function jsonErrorOffset(text: string, message: string): number | undefined {
  const position = /at position (\d+)/.exec(message)?.[1];
  if (position !== undefined) return Number(position);
  if (!message.startsWith('Unexpected token')) return undefined;
  let low = 0;
  let high = text.length;
  while (low + 1 < high) {
    const middle = (low + high) >>> 1;
    if (startsWithUnexpectedToken(text.slice(0, middle))) high = middle;
    else low = middle;
  }
  return high - 1;
}

function syntaxErrorWhere(error: unknown, text: string, file: string): Where {
  const offset = jsonErrorOffset(text, error instanceof Error ? error.message : '');
  if (offset === undefined) return { file };
  const before = text.slice(0, offset).split('\n');
  return { file, line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

/**
 * The JSON text as a PhpValue with the line of every key. JSON.parse decides what the file
 * means; the YAML reading only lends its positions, and only when it reads the same value.
 */
export function parseJsonValue(text: string, file: string): PhpValue {
  let plain: unknown;
  try {
    plain = JSON.parse(text);
  } catch (error) {
    throw sourceError(
      'is not valid JSON: fix its syntax (a profile file holds one JSON object)',
      syntaxErrorWhere(error, text, file),
    );
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length === 0 && isDeepStrictEqual(doc.toJS(), plain)) {
    return fromYamlNode(doc.contents, lines);
  }
  return fromJson(plain, FIRST_LINE);
}

/** One profile file; a file without `profileId` is named after the file (`office.json`). */
export function parseProfileJson(text: string, file: string, nodeNumber: number): PortalProfile {
  const value = parseJsonValue(text, file);
  if (!text.trimStart().startsWith('{')) {
    throw sourceError(
      "holds no JSON object: a profile file holds one object with the profile's keys, like " +
        '{"profileId": "office", ...}',
      { file, line: value.pos.line, column: value.pos.column },
    );
  }
  return parsePortalProfile(value, file, nodeNumber, posix.basename(file, '.json'));
}

/** The pools of all profile files, checked together (unique ids, no overlapping ranges). */
export function parseProfilesDir(files: readonly ProfileFile[], nodeNumber: number): ClientPool[] {
  return collectPools(files.map(({ file, text }) => parseProfileJson(text, file, nodeNumber)));
}
