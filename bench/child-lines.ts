/** Line-by-line conversation with a child process, every wait bounded in time. */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export class ChildLines {
  readonly lines: string[] = [];
  private readonly waiters = new Set<() => void>();
  private stderrTail = '';
  private exited = false;

  constructor(private readonly child: ChildProcess) {
    if (!child.stdout) throw new Error('the child has no stdout pipe');
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.lines.push(line);
      this.wake();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-2000);
    });
    child.once('exit', () => {
      this.exited = true;
      this.wake();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get stderr(): string {
    return this.stderrTail;
  }

  send(line: string): void {
    this.child.stdin?.write(line + '\n');
  }

  /** The first line at index `from` or later that `accept` takes, with its index. */
  async waitFor(
    accept: (line: string) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<{ line: string; index: number }> {
    const deadline = Date.now() + timeoutMs;
    for (let index = from; ;) {
      for (; index < this.lines.length; index++) {
        const line = this.lines[index] ?? '';
        if (accept(line)) return { line, index };
      }
      if (this.exited) throw new Error(`the child exited: ${this.stderrTail.trim()}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no expected line within ${timeoutMs} ms: ${this.stderrTail.trim()}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  /** Sends a request and waits for the next line that arrives after it. */
  async ask(line: string, timeoutMs: number): Promise<string> {
    const from = this.lines.length;
    this.send(line);
    return (await this.waitFor(() => true, timeoutMs, from)).line;
  }

  /** Closes stdin (or sends `signal`) and waits, bounded, for the exit; then kills it. */
  async stop(timeoutMs = 5000, signal?: NodeJS.Signals): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<'gone'>((resolve) => {
      this.child.once('exit', () => {
        resolve('gone');
      });
    });
    if (signal) this.child.kill(signal);
    else this.child.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => {
        resolve('late');
      }, timeoutMs);
    });
    const outcome = await Promise.race([gone, late]);
    clearTimeout(timer);
    if (outcome === 'late') this.child.kill('SIGKILL');
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const done of waiting) done();
  }
}
