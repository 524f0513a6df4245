/**
 * What the PHP literal reader returns: the value tree of a config file's `return` expression,
 * with the position of every value so errors can name file, line and column.
 */

export interface Position {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters. */
  readonly column: number;
}

export type PhpValue =
  | { readonly kind: 'string'; readonly value: string; readonly pos: Position }
  | { readonly kind: 'int'; readonly value: number; readonly pos: Position }
  | { readonly kind: 'float'; readonly value: number; readonly pos: Position }
  | { readonly kind: 'bool'; readonly value: boolean; readonly pos: Position }
  | { readonly kind: 'null'; readonly pos: Position }
  | { readonly kind: 'array'; readonly entries: readonly PhpArrayEntry[]; readonly pos: Position }
  /**
   * An expression the reader does not evaluate (a constant, concatenation, `__DIR__`, a call):
   * harmless where nobody needs the value, an error where somebody does.
   */
  | { readonly kind: 'opaque'; readonly text: string; readonly pos: Position };

export interface PhpArrayEntry {
  /** Explicit or implicit key, as PHP would assign it (implicit keys count up from 0). */
  readonly key: string | number;
  readonly value: PhpValue;
  readonly pos: Position;
}
