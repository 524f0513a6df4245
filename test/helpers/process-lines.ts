/** Collects the lines a child process prints, and waits for one that matches. */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface LineLog {
  readonly lines: string[];
  /** Resolves with the first line (from index `from` on) that matches, or rejects after timeoutMs. */
  waitFor(predicate: (line: string) => boolean, timeoutMs: number, from?: number): Promise<string>;
}

export function collectLines(child: ChildProcess, stream: 'stdout' | 'stderr' = 'stdout'): LineLog {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const input = child[stream];
  if (!input) throw new Error(`child has no ${stream}`);
  createInterface({ input }).on('line', (line) => {
    lines.push(line);
    for (const wake of waiters) wake();
  });
  return {
    lines,
    waitFor(predicate, timeoutMs, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.slice(from).find(predicate);
          if (found === undefined) return false;
          cleanup();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(
            new Error(
              `no matching line within ${timeoutMs} ms; saw:\n${lines.slice(from).join('\n')}`,
            ),
          );
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(wake);
        };
        const wake = () => {
          check();
        };
        if (!check()) waiters.add(wake);
      });
    },
  };
}
