// A small Rego mode for CodeMirror 6: a stream tokenizer (no grammar to build), enough for
// highlighting: comments, strings (raw backtick strings may span lines), numbers, keywords,
// operators, and the names a rule or function head defines.
import { StreamLanguage } from '@codemirror/language';

const KEYWORDS = new Set([
  'package', 'import', 'default', 'not', 'with', 'as', 'some', 'every', 'in', 'if',
  'contains', 'else',
]);
const ATOMS = new Set(['true', 'false', 'null']);
// The two roots every reference starts from.
const ROOTS = new Set(['input', 'data']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*/;
const NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/;
const OPERATOR = /^(?::=|==|!=|<=|>=|[=<>|&+\-*/%:])/;

function stringBody(stream) {
  let escaped = false;
  let ch;
  while ((ch = stream.next()) != null) {
    if (ch === '"' && !escaped) return true;
    escaped = !escaped && ch === '\\';
  }
  return false; // unterminated: the rest of the line is the string (Rego has no multi-line "")
}

function rawBody(stream, state) {
  state.inRaw = !stream.skipTo('`');
  if (state.inRaw) stream.skipToEnd();
  else stream.next();
  return 'string';
}

function word(stream, state, sol) {
  const w = stream.match(IDENT)[0];
  const head = state.head;
  state.head = false;
  if (KEYWORDS.has(w)) {
    // `package a.b` and `import data.x` name a path; `default r := …` names a rule.
    state.path = w === 'package' || w === 'import';
    state.head = w === 'default';
    return 'keyword';
  }
  if (ATOMS.has(w)) return 'atom';
  if (state.path) return 'namespace';
  // A rule or function head: a name at the start of a line (Rego's rules are not indented).
  if (sol || head) return 'variableName.definition';
  if (ROOTS.has(w)) return 'variableName.special';
  if (stream.peek() === '(') return 'variableName.function';
  return 'variableName';
}

function token(stream, state) {
  if (state.inRaw) return rawBody(stream, state);
  const sol = stream.sol();
  if (sol) state.path = false;
  if (stream.eatSpace()) return null;
  const ch = stream.peek();
  if (ch === '#') {
    stream.skipToEnd();
    return 'comment';
  }
  if (ch === '"') {
    stream.next();
    stringBody(stream);
    return 'string';
  }
  if (ch === '`') {
    stream.next();
    return rawBody(stream, state);
  }
  if (stream.match(NUMBER)) return 'number';
  if (IDENT.test(stream.string.slice(stream.pos))) return word(stream, state, sol);
  if (stream.match(OPERATOR)) return 'operator';
  if (stream.match(/^[{}[\]()]/)) return 'bracket';
  stream.next();
  return null;
}

export const rego = StreamLanguage.define({
  name: 'rego',
  startState: () => ({ inRaw: false, path: false, head: false }),
  copyState: (s) => ({ ...s }),
  token,
  languageData: { commentTokens: { line: '#' } },
});
