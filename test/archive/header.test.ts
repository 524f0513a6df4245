import { rulesetLooksComplete } from '../../src/archive/header.js';

/** The check as a regular expression over the whole text, as it was written first. */
function byPattern(body: string): boolean {
  const end = body.replace(/(?:\n[ \t]*(?:#[^\n]*)?)+\s*$/, '').trimEnd();
  return end.endsWith('COMMIT') || end.endsWith('}');
}

describe('rulesetLooksComplete (read from the end)', () => {
  const bodies: [string, boolean][] = [
    ['*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n', true],
    ['*nat\nCOMMIT\n# Completed on Sat Dec  5 12:00:00 2026\n', true],
    ['*nat\r\nCOMMIT\r\n# Completed on Sat Dec  5 12:00:00 2026\r\n\r\n', true],
    ['*nat\nCOMMIT\n  \t# indented comment\n\n\n', true],
    ['table ip traceable_nat {\n\tmap clients {\n\t}\n}\n', true],
    ['*nat\n-A TNAT -s 10.42.0.2/32 -j SNAT --to-source 192.0.2.1:65472-655', false],
    ['*nat\n-A TNAT -s 10.42.0.2/32 -j SNAT\n# COMMIT\n', false],
    [
      'table ip traceable_nat {\n\tmap clients {\n\t\telements = { 10.42.0.2 : 192.0.2.1 . 6',
      false,
    ],
    ['# only a comment', false],
    ['', false],
    ['\n\n', false],
    ['COMMIT', true],
  ];
  test.each(bodies)('%j: %s', (body, complete) => {
    expect(rulesetLooksComplete(body)).toBe(complete);
    expect(byPattern(body)).toBe(complete);
  });
});
