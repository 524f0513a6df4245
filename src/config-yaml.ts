/**
 * The YAML half of reading a configuration: one document of plain values (mappings, lists,
 * strings, numbers, booleans) or one E_CONFIG sentence with the file, line and column. What the
 * yaml library only warns about (an unknown tag, a list as a key) is refused here too, and
 * nothing goes to stderr as a Node warning.
 */
import {
  isAlias,
  isCollection,
  isNode,
  isPair,
  LineCounter,
  parseDocument,
  visit,
  type Document,
  type YAMLError,
} from 'yaml';
import { TnatError } from './errors.js';

export interface ConfigYaml {
  readonly doc: Document;
  readonly lines: LineCounter;
  /** The document as plain JavaScript, for the schema. */
  readonly value: unknown;
}

function describeYamlError(error: YAMLError, text: string): string {
  switch (error.code) {
    case 'MULTIPLE_DOCS':
      return 'a second YAML document starts here: the configuration file must hold one document, so remove this --- line or what follows it';
    case 'TAG_RESOLVE_FAILED':
      // `!!binary`, `!!set`, `!foo` as written, not the library's tag:yaml.org,2002:binary.
      return `unknown tag ${text.slice(error.pos[0], error.pos[1])}: remove it, the configuration takes plain YAML values (mappings, lists, strings, numbers, true or false)`;
    default:
      return `${error.message.split('\n')[0] ?? 'YAML syntax error'}; fix the YAML syntax`;
  }
}

/**
 * The first alias with no anchor of its name before it, or a key that is a list or mapping:
 * toJS() throws a ReferenceError with no position for the first, and turns the second into a
 * string key with a process warning. Walked in the order the yaml library resolves aliases in
 * (Alias.resolve: the last anchor before the alias in visit order).
 */
function findUnplainNode(
  doc: Document,
): { readonly offset: number; readonly sentence: string } | undefined {
  const anchors = new Set<string>();
  let found: { offset: number; sentence: string } | undefined;
  visit(doc, (_key, node) => {
    if (isAlias(node) && !anchors.has(node.source)) {
      found = {
        offset: node.range?.[0] ?? -1,
        sentence: `unresolved alias *${node.source}: define the anchor &${node.source} before it`,
      };
    } else if (isPair(node) && isCollection(node.key)) {
      found = {
        offset: node.key.range?.[0] ?? -1,
        sentence:
          'a list or mapping is used as a key: write each key as a plain name, as config.example.yaml does',
      };
    } else if (isNode(node) && node.anchor !== undefined) {
      anchors.add(node.anchor);
    }
    return found ? visit.BREAK : undefined;
  });
  return found;
}

/** Parses the YAML text of a config file; `file` is only used in messages. */
export function readConfigYaml(text: string, file: string): ConfigYaml {
  const lines = new LineCounter();
  // The core schema without the YAML 1.1 types (!!binary, !!set, ...) even under %YAML 1.1,
  // and no console: warnings are read from doc.warnings below.
  const doc = parseDocument(text, {
    lineCounter: lines,
    prettyErrors: false,
    logLevel: 'error',
    schema: 'core',
    resolveKnownTags: false,
  });
  const at = (offset: number) => {
    if (offset < 0) return { file };
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };
  const yamlError = doc.errors[0] ?? doc.warnings[0];
  if (yamlError) {
    throw new TnatError('E_CONFIG', describeYamlError(yamlError, text), {
      where: at(yamlError.pos[0]),
    });
  }
  const unplain = findUnplainNode(doc);
  if (unplain) throw new TnatError('E_CONFIG', unplain.sentence, { where: at(unplain.offset) });
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (error) {
    // What is left of the yaml library's alias errors: its limit against alias bombs
    // (maxAliasCount), which names no place.
    if (!(error instanceof ReferenceError)) throw error;
    throw new TnatError(
      'E_CONFIG',
      'its aliases expand to too many values (the yaml library stops there, against alias bombs): write the values out instead of through aliases',
      { where: { file }, cause: error },
    );
  }
  return { doc, lines, value };
}
