/**
 * Turns a burst of change events into one apply: after the last event, wait for `settleMs` of
 * quiet, then run. Runs never overlap; events that arrive during a run lead to exactly one more
 * run after it (after its own quiet time). The run reads the files when it starts, so the last
 * run of a burst sees its last version. A run asked for now (start, reload, periodic check)
 * does not end a settle in progress: the files may be half rewritten, the settle's own run
 * follows. Changes that never leave `settleMs` of quiet run at `maxWaitMs` after the first of
 * them all the same (lodash's debounce `maxWait`): a writer that never stops would otherwise
 * hold off every apply, and the periodic check that waits for the settle, for ever.
 */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export class Settler {
  private timer: unknown;
  /** When the settle in progress runs even if the changes go on (maxWaitMs after its first). */
  private deadline: unknown;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;

  /** `settleMs` is read at each change, `maxWaitMs` at a settle's first: a reload may change them. */
  constructor(
    private readonly settleMs: () => number,
    private readonly run: () => Promise<void>,
    private readonly timers: Timers,
    private readonly maxWaitMs?: () => number,
  ) {}

  /** Something changed. */
  poke(): void {
    if (this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    else if (this.maxWaitMs && this.deadline === undefined)
      this.deadline = this.timers.setTimeout(() => {
        this.settled();
      }, this.maxWaitMs());
    this.timer = this.timers.setTimeout(() => {
      this.settled();
    }, this.settleMs());
  }

  private settled(): void {
    this.clearTimers();
    // A run asked for now started during the quiet time: this one comes after it.
    if (this.running) this.dirty = true;
    else void this.start();
  }

  private clearTimers(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    if (this.deadline !== undefined) this.timers.clearTimeout(this.deadline);
    this.timer = undefined;
    this.deadline = undefined;
  }

  /** Changes are waiting for their quiet time to pass. */
  get settling(): boolean {
    return this.timer !== undefined;
  }

  /** Runs now, or right after the run in progress; a settle in progress still ends in a run. */
  async runNow(): Promise<void> {
    while (this.running) await this.running;
    if (this.stopped) return;
    await this.start();
  }

  /** Resolves when no run is in progress (the one now, and any it queued, have finished). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** No more runs; resolves when the one in progress (if any) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    await this.running;
  }

  private async start(): Promise<void> {
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (this.dirty && !this.stopped) {
        this.dirty = false;
        this.poke();
      }
    });
    await this.running;
  }
}
