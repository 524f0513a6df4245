/** Reading a batch's rows: columns and keys that name the same query field twice. */
import { TnatError } from '../../src/errors.js';
import { parseBatchInput } from '../../src/trace/batch-input.js';
import { caught } from '../helpers/caught.js';

describe('parseBatchInput', () => {
  // Query fields are matched without regard to case or blanks, so `port` and `Port` are the
  // same column: each row took the first non-empty one, and rows were traced by different ones.
  test.each([
    ['time,address,port,Port\n', '"port" and "Port"'],
    ['Time,address,port, time \n', '"Time" and " time "'],
    ['time,address,port,PROTO,proto\n', '"PROTO" and "proto"'],
  ])('refuses a header naming a query column twice in different case: %j', (text, names) => {
    const error = caught(() => parseBatchInput(text, 'feed.csv'));
    expect(error).toBeInstanceOf(TnatError);
    expect(error).toMatchObject({
      code: 'E_USAGE',
      message: `feed.csv:1: the header row names ${names}, the same column: rename or remove one`,
    });
  });

  test('other columns may differ in case only', () => {
    const input = parseBatchInput('time,address,port,Note,note\n1,2,3,a,b\n', 'feed.csv');
    expect(input.columns).toEqual(['time', 'address', 'port', 'Note', 'note']);
  });

  test('a JSON line whose keys name a query field twice is a row that cannot be read', () => {
    const input = parseBatchInput(
      [
        '{"Time":"1999-01-01T00:00:00Z","time":"1780001800","address":"192.0.2.1","port":65500}',
        '{"time":"1780001800","address":"192.0.2.1","port":65500,"Port":""}',
        '{"time":"1780001800","address":"192.0.2.1","port":65500,"Note":1,"note":2}',
        '',
      ].join('\n'),
      'feed.jsonl',
    );
    expect(input.rows.map((row) => row.problem)).toEqual([
      'its keys "Time" and "time" name the same field: keep one',
      'its keys "port" and "Port" name the same field: keep one',
      undefined,
    ]);
  });
});
