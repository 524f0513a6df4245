/**
 * CSV as RFC 4180 has it: fields separated by commas, records by line breaks (CRLF, LF or a lone
 * CR), a field in double quotes may hold commas, line breaks and doubled quotes, and a byte
 * order mark before the header is not part of it. Our own small reader rather than csv-parse:
 * an abuse desk must be told the line of a row it cannot read, and csv-parse 7.0.3 counts a
 * CRLF inside a quoted field as two lines (its `info.lines`), which misnames every later line of
 * a CRLF feed. A record with a quote out of place is reported and reading goes on after it.
 */

export interface CsvRecord {
  /** The line the record starts on, from 1. */
  readonly line: number;
  readonly fields: readonly string[];
  /** Why the record is not valid CSV; its fields then hold what could be read. */
  readonly problem: string | undefined;
}

const QUOTE = '"';

function isLineBreak(char: string | undefined): boolean {
  return char === '\n' || char === '\r';
}

/** Reads the whole text; blank lines are skipped. */
export function parseCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let at = text.startsWith('\ufeff') ? 1 : 0;
  let line = 1;
  /** Steps over one line break at `at` (CRLF counts once). */
  const lineBreak = () => {
    at += text.startsWith('\r\n', at) ? 2 : 1;
    line++;
  };
  while (at < text.length) {
    const start = line;
    const fields: string[] = [];
    let problem: string | undefined;
    for (;;) {
      let value = '';
      if (text[at] === QUOTE) {
        const opened = line;
        let closed = false;
        at++;
        while (at < text.length) {
          const char = text[at] ?? '';
          if (char === QUOTE) {
            if (text[at + 1] === QUOTE) {
              value += QUOTE;
              at += 2;
              continue;
            }
            at++;
            closed = true;
            break;
          }
          if (char === '\n' || (char === '\r' && text[at + 1] !== '\n')) line++;
          value += char;
          at++;
        }
        if (!closed) {
          problem ??= `the quoted field that starts on line ${opened} is never closed`;
        } else if (at < text.length && text[at] !== ',' && !isLineBreak(text[at])) {
          problem ??= `line ${line} has text after the closing quote of a field: a quote inside a quoted field is written twice ("")`;
          while (at < text.length && text[at] !== ',' && !isLineBreak(text[at])) at++;
        }
      } else {
        const from = at;
        while (at < text.length && text[at] !== ',' && !isLineBreak(text[at])) at++;
        value = text.slice(from, at);
        if (value.includes(QUOTE)) {
          problem ??= `line ${line} has a quote inside a field that does not start with one: put the field in quotes and write the quote twice ("")`;
        }
      }
      fields.push(value);
      if (text[at] === ',') {
        at++;
        continue;
      }
      if (at < text.length) lineBreak();
      break;
    }
    const blank = fields.length === 1 && (fields[0] ?? '').trim() === '';
    if (!blank || problem !== undefined) records.push({ line: start, fields, problem });
  }
  return records;
}

/** One field, quoted when it holds a comma, quote or line break, or starts or ends in a space. */
export function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replaceAll(QUOTE, '""')}"` : value;
}

export function csvRecord(values: readonly string[], lineEnd: string): string {
  return values.map(csvField).join(',') + lineEnd;
}
