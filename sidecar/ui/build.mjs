// Bundles the policy editor page for the binary: src/policies.js (with CodeMirror) and
// src/policies.css into dist/, minified, without source maps, the same bytes for the same
// sources and dependencies (a test in sidecar/tests/it/policy_editor.rs rebuilds and compares).
//
//   node build.mjs [OUT_DIR]        (default: dist; also OUT_DIR=… in the environment)
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(here, process.argv[2] || process.env.OUT_DIR || 'dist');

await build({
  absWorkingDir: here,
  entryPoints: ['src/policies.js', 'src/policies.css'],
  outdir,
  bundle: true,
  minify: true,
  format: 'esm',
  // What the page is tested in (Debian's Chromium) and what an admin's browser runs today.
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: false,
  // CodeMirror is MIT-licensed: its notices go at the end of the bundle, not dropped.
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});
