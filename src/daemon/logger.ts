/**
 * The daemon's structured log: pino, one JSON object per event, a constant message and the data
 * in fields. When stdout is the journal (systemd sets JOURNAL_STREAM), each line starts with the
 * syslog priority prefix (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug; sd-daemon(3)) so
 * `journalctl -p warning` filters by level; elsewhere it is plain JSON.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

const PRIORITY_OF_LEVEL: Readonly<Record<number, number>> = {
  10: 7,
  20: 7,
  30: 6,
  40: 4,
  50: 3,
  60: 2,
};

function journalDestination(write: (text: string) => void): DestinationStream {
  return {
    write(line: string) {
      const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 30);
      write(`<${PRIORITY_OF_LEVEL[level] ?? 6}>${line}`);
    },
  };
}

export function createLogger(
  env: Readonly<Record<string, string | undefined>>,
  write: (text: string) => void = (text) => process.stdout.write(text),
  level = env.TRACEABLE_NAT_LOG_LEVEL ?? 'info',
): Logger {
  const destination: DestinationStream = env.JOURNAL_STREAM ? journalDestination(write) : { write };
  return pino(
    {
      name: 'traceable-nat',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
