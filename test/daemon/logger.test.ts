/**
 * The daemon's log lines: under the journal (JOURNAL_STREAM set) each starts with the syslog
 * priority of its level, so `journalctl -p warning` shows the warnings and errors and nothing
 * else; elsewhere each is plain JSON, one object per line.
 */
import { createLogger } from '../../src/daemon/logger.js';

function capture(env: Record<string, string>, level?: string) {
  const lines: string[] = [];
  const logger = createLogger(env, (text) => lines.push(text), level);
  return { logger, lines };
}

test('under the journal: the priority prefix of each level, then the JSON event', () => {
  const { logger, lines } = capture({ JOURNAL_STREAM: '8:12345' }, 'trace');
  logger.fatal({ code: 'E_X' }, 'fatal');
  logger.error({ code: 'E_X' }, 'error');
  logger.warn({}, 'warn');
  logger.info({}, 'info');
  logger.debug({}, 'debug');
  logger.trace({}, 'trace');

  expect(lines.map((line) => line.slice(0, 3))).toEqual(['<2>', '<3>', '<4>', '<6>', '<7>', '<7>']);
  const event = JSON.parse(lines[1]?.slice(3) ?? '') as Record<string, unknown>;
  expect(event).toMatchObject({ name: 'traceable-nat', msg: 'error', code: 'E_X', level: 50 });
  expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT/);
  for (const line of lines) expect(line).toMatch(/^<\d>\{[^\n]*\}\n$/);
});

test('elsewhere: plain JSON lines, and the level from TRACEABLE_NAT_LOG_LEVEL', () => {
  const { logger, lines } = capture({ TRACEABLE_NAT_LOG_LEVEL: 'warn' });
  logger.info({}, 'not shown');
  logger.warn({ path: '/etc/x' }, 'shown');

  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0] ?? '')).toMatchObject({ msg: 'shown', path: '/etc/x', level: 40 });
});
