// One CodeMirror view, one EditorState per file of the bundle (each keeps its own undo history
// and its own diagnostics); switching files swaps the state shown.
//
// The page's CSP (`style-src 'self'`, no 'unsafe-inline', no nonce) blocks <style> elements.
// CodeMirror's themes go through style-mod, which writes a <style> element into a document but
// a constructed stylesheet (adoptedStyleSheets, not subject to style-src) into a shadow root: so
// the editor lives in an open shadow root, and its look is a theme here rather than rules in
// policies.css (which does not reach into the shadow root). Inline styles CodeMirror sets go
// through the CSSOM (`style.cssText`), which the CSP allows. Nothing here needs eval.
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import {
  bracketMatching,
  defaultHighlightStyle,
  indentUnit,
  syntaxHighlighting,
} from '@codemirror/language';
import { lintGutter, setDiagnostics } from '@codemirror/lint';
import { EditorState } from '@codemirror/state';
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from '@codemirror/view';

import { rego } from './rego.js';

/** The gate's problems of one file as CodeMirror diagnostics (from the column to the line's end). */
export function diagnosticsFor(doc, problems) {
  return problems.map((p) => {
    const line = doc.line(Math.min(Math.max(1, p.line || 1), doc.lines));
    const col = Math.min(Math.max(0, (p.col || 1) - 1), line.length);
    return { from: line.from + col, to: line.to, severity: 'error', source: 'gate', message: p.message };
  });
}

// Colours come from the page's custom properties, which do cross into the shadow root.
const look = EditorView.theme({
  '&': {
    height: '62vh',
    minHeight: '18rem',
    border: '1px solid var(--line, #d8dce3)',
    borderRadius: '4px',
    fontSize: '13px',
    background: '#fff',
  },
  '&.cm-focused': { outline: '2px solid var(--accent, #1f5fbf)' },
  '.cm-scroller': {
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    lineHeight: '1.45',
  },
});

function extensionsFor(name, onChange) {
  return [
    look,
    lineNumbers(),
    highlightActiveLineGutter(),
    lintGutter(),
    history(),
    drawSelection(),
    highlightActiveLine(),
    bracketMatching(),
    rego,
    syntaxHighlighting(defaultHighlightStyle),
    indentUnit.of('\t'),
    EditorState.tabSize.of(4),
    // Tab indents; Escape then Tab leaves the editor (CodeMirror's tab-focus escape).
    keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
    EditorView.contentAttributes.of({ 'aria-label': `Rego source of ${name}` }),
    EditorView.updateListener.of((u) => {
      if (u.docChanged) onChange(name);
    }),
  ];
}

export class Editor {
  constructor(parent, onChange) {
    this.onChange = onChange;
    this.states = new Map();
    this.active = null;
    const root = parent.attachShadow({ mode: 'open' });
    this.view = new EditorView({ root, parent: root, state: EditorState.create({ doc: '', extensions: look }) });
  }

  /** Replace every file (a new live version was loaded). */
  load(files) {
    this.states.clear();
    for (const [name, text] of Object.entries(files)) {
      this.states.set(name, EditorState.create({ doc: text, extensions: extensionsFor(name, this.onChange) }));
    }
    this.active = null;
  }

  names() {
    return [...this.states.keys()];
  }

  show(name) {
    if (this.active) this.states.set(this.active, this.view.state);
    this.active = name;
    this.view.setState(this.states.get(name));
    // The scroller keeps the previous file's offsets: show this file where its cursor is.
    const head = this.view.state.selection.main.head;
    this.view.dispatch({ effects: EditorView.scrollIntoView(head, { y: 'center', x: 'nearest' }) });
  }

  text(name) {
    const s = name === this.active ? this.view.state : this.states.get(name);
    return s.doc.toString();
  }

  files() {
    return Object.fromEntries(this.names().map((n) => [n, this.text(n)]));
  }

  /** Mark `byFile[name]` (the gate's problems) in every file; files not named get none. */
  mark(byFile) {
    for (const name of this.names()) {
      const problems = byFile.get(name) || [];
      if (name === this.active) {
        const diags = diagnosticsFor(this.view.state.doc, problems);
        this.view.dispatch(setDiagnostics(this.view.state, diags));
      } else {
        const s = this.states.get(name);
        this.states.set(name, s.update(setDiagnostics(s, diagnosticsFor(s.doc, problems))).state);
      }
    }
  }

  /** Put the cursor at `line` of the shown file and scroll it into view. */
  reveal(line) {
    const doc = this.view.state.doc;
    const pos = doc.line(Math.min(Math.max(1, line), doc.lines)).from;
    this.view.dispatch({ selection: { anchor: pos }, effects: EditorView.scrollIntoView(pos, { y: 'center' }) });
    this.view.focus();
  }
}
