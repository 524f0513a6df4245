/**
 * Everything the benchmark creates (namespaces, temporary directories, child processes) is
 * registered here as it is made and undone in reverse order: at the end, on an error, and on
 * SIGINT/SIGTERM, so an interrupted run leaves nothing behind.
 */
export class Cleanup {
  private readonly steps: { readonly label: string; readonly undo: () => void }[] = [];

  /** Registers `undo`; the returned function runs it now (once) and forgets it. */
  add(label: string, undo: () => void): () => void {
    const step = { label, undo };
    this.steps.push(step);
    return () => {
      const index = this.steps.indexOf(step);
      if (index < 0) return;
      this.steps.splice(index, 1);
      undoQuietly(step);
    };
  }

  runAll(): void {
    for (let step = this.steps.pop(); step !== undefined; step = this.steps.pop()) {
      undoQuietly(step);
    }
  }

  /** On SIGINT/SIGTERM: undo everything, then exit with the shell's status for that signal. */
  exitOnSignals(): void {
    const onSignal = (signal: NodeJS.Signals, status: number) => {
      process.stderr.write(`\nbench: ${signal}, cleaning up\n`);
      this.runAll();
      process.exit(status);
    };
    process.once('SIGINT', () => {
      onSignal('SIGINT', 130);
    });
    process.once('SIGTERM', () => {
      onSignal('SIGTERM', 143);
    });
  }
}

function undoQuietly(step: { readonly label: string; readonly undo: () => void }): void {
  try {
    step.undo();
  } catch (error) {
    process.stderr.write(`bench: cleanup of ${step.label} failed: ${String(error)}\n`);
  }
}
