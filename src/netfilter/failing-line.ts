/**
 * iptables-restore says "Error occurred at line: N" (legacy), "line N failed" or "line N: X failed"
 * (nf_tables, when the kernel refuses the commit); nft
 * says "<file>:N:C-D: Error: ..." (the transaction file, or /dev/stdin). The error then shows that payload line with two lines of
 * context, which is what an operator needs to see what was refused.
 */
import { CommandError } from '../errors.js';

export function failingLineOf(stderr: string): number | undefined {
  const match =
    /Error occurred at line: (\d+)/.exec(stderr) ??
    /line (\d+) failed/.exec(stderr) ??
    /^line (\d+): /m.exec(stderr) ??
    /^[^:\n]*:(\d+):\d+(?:-\d+)?: Error/m.exec(stderr);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

export function withFailingLine(error: CommandError, payload: string, what: string): CommandError {
  const line = failingLineOf(error.stderr);
  if (line === undefined) return error;
  const lines = payload.split('\n');
  const context = lines
    .slice(Math.max(0, line - 3), line + 2)
    .map((text, index) => {
      const number = Math.max(1, line - 2) + index;
      return `${number === line ? '>' : ' '} ${String(number).padStart(6)}  ${text}`;
    })
    .join('\n');
  // The most telling line: the one naming the failure, else the last one with words in it.
  const said = error.stderr
    .split('\n')
    .filter((text) => /\w/.test(text) && !text.startsWith('Try `'));
  const reason = said.find((text) => /^line \d+: |Error|failed/.test(text)) ?? said.at(-1) ?? '';
  return new CommandError(
    `${error.command[0] ?? 'command'} refused line ${line} of the ${what} (${reason.trim()}); the previous rules stay active:\n${context}`,
    { command: error.command, exitCode: error.exitCode, stderr: error.stderr, cause: error },
  );
}
