// The policy editor page (/ui/policies): load the live version, edit its files, validate as you
// type, see who gains and loses what, dry-run a decision, deploy, roll back.
//
// Deploy is enabled only when the bundle as it is now has passed the gate (a validation
// answered for an older text does not count) and differs from the live version.
import { ApiError, RateLimited, adminKey, call } from './api.js';
import { Editor } from './editor.js';
import {
  $, clearDiff, h, renderDiff, renderEval, renderEvalError, renderHistory, renderProblems,
  renderTests, replace, status,
} from './render.js';

const DEBOUNCE_MS = 500;

const S = {
  live: null, // {meta (GET /policies), files: {name: text}}
  editor: null,
  edits: 0, // bumps on every change of any file's text
  check: { edits: -1, state: 'none' }, // the last validation and the edit count it answered for
  timer: null,
  busy: false,
  identities: [],
};

function explain(e) {
  if (e instanceof RateLimited) return `Rate limited (${e.route}): retry in ${e.retryAfter} s.`;
  if (e instanceof ApiError) {
    if (e.status === 401 || e.status === 403) return `The key was refused (${e.error}): ${e.message}`;
    return `${e.error}: ${e.message}`;
  }
  return `The sidecar could not be reached: ${e.message}`;
}

function changed() {
  if (!S.live) return false;
  const now = S.editor.files();
  const names = Object.keys(S.live.files);
  return names.length !== Object.keys(now).length || names.some((n) => now[n] !== S.live.files[n]);
}

function updateDeploy() {
  const fresh = S.check.edits === S.edits;
  let reason;
  if (!S.live) reason = 'Not connected.';
  else if (S.busy) reason = 'Working…';
  else if (!fresh || S.check.state === 'pending') reason = 'Validating…';
  else if (S.check.state === 'invalid') reason = 'The bundle does not pass the gate: fix the problems first.';
  else if (S.check.state !== 'valid') reason = 'Not validated yet (see the status above).';
  else if (!changed()) reason = 'No changes against the live version.';
  const ok = reason === undefined;
  $('#deploy').disabled = !ok;
  $('#deploy-reason').textContent = ok ? `Passes the gate: ready to deploy on version ${S.live.meta.version}.` : reason;
}

// --- files and editing ------------------------------------------------------------------------

function renderTabs() {
  const tabs = S.editor.names().map((name) => {
    const active = name === S.editor.active;
    const modified = S.live && S.editor.text(name) !== S.live.files[name];
    return h(
      'button',
      { type: 'button', role: 'tab', 'aria-selected': String(active), class: modified ? 'tab modified' : 'tab',
        data: { file: name }, onclick: () => openFile(name) },
      name,
      modified ? h('span', { class: 'dot', title: 'edited' }, ' •') : null,
    );
  });
  replace($('#files'), tabs);
}

function openFile(name) {
  S.editor.show(name);
  renderTabs();
}

function onEdit() {
  S.edits += 1;
  renderTabs();
  updateDeploy();
  clearTimeout(S.timer);
  S.timer = setTimeout(validate, DEBOUNCE_MS);
}

// --- validation and the access diff ---------------------------------------------------------

function problemsByFile(problems) {
  const m = new Map();
  for (const p of problems) {
    if (!p.file) continue;
    if (!m.has(p.file)) m.set(p.file, []);
    m.get(p.file).push(p);
  }
  return m;
}

function showProblems(problems) {
  S.editor.mark(problemsByFile(problems));
  renderProblems(problems, (p) => {
    openFile(p.file);
    S.editor.reveal(p.line);
  });
}

async function validate() {
  const edits = S.edits;
  const files = S.editor.files();
  S.check = { edits, state: 'pending' };
  updateDeploy();
  status('Validating…');
  try {
    const { body } = await call('POST', '/policies/validate', { files });
    if (edits !== S.edits) return; // a newer edit has its own validation coming
    S.check = { edits, state: 'valid' };
    showProblems([]);
    renderTests(body.tests);
    const warn = (body.warnings || []).length ? ` Warnings: ${body.warnings.join('; ')}` : '';
    status(`The bundle passes the gate (${body.evaluator}).${warn}`, 'ok');
    updateDeploy();
    await diff(edits, files);
  } catch (e) {
    if (edits !== S.edits) return;
    validationFailed(edits, e);
  }
}

function validationFailed(edits, e) {
  if (e instanceof RateLimited) {
    S.check = { edits, state: 'limited' };
    status(`${explain(e)} Validation resumes by itself.`, 'error');
    clearTimeout(S.timer);
    S.timer = setTimeout(validate, e.retryAfter * 1000 + 100);
  } else if (e instanceof ApiError && (e.status === 422 || e.status === 400)) {
    S.check = { edits, state: 'invalid' };
    const problems = e.body.problems || [{ file: '', line: 0, col: 0, message: e.message }];
    showProblems(problems);
    renderTests(e.body.tests || [], e.body.tests ? null : 'Not run: the bundle did not compile.');
    status(`The bundle does not pass the gate: ${problems.length} problem(s).`, 'error');
    clearDiff('The access diff needs a bundle that passes the gate.');
  } else {
    S.check = { edits, state: 'error' };
    status(explain(e), 'error');
  }
  updateDeploy();
}

async function diff(edits, files) {
  if (!changed()) {
    clearDiff('No changes against the live version.');
    return;
  }
  $('#diff-summary').textContent = 'Computing who gains and who loses what…';
  try {
    const { body } = await call('POST', '/policies/diff', { to: { files } });
    if (edits === S.edits) renderDiff(body);
  } catch (e) {
    if (edits === S.edits) clearDiff(`No access diff: ${explain(e)}`);
  }
}

// --- the live version, deploy, history, rollback -----------------------------------------------

async function loadLive() {
  const { body: meta } = await call('GET', '/policies');
  const { body: v } = await call('GET', `/policies/versions/${meta.version}`, undefined, 'GET /policies/versions/{n}');
  S.live = { meta, files: v.files };
  const previous = S.editor.active;
  S.editor.load(v.files);
  const names = S.editor.names();
  openFile(names.includes(previous) ? previous : names.find((n) => !n.endsWith('_test.rego')) || names[0]);
  $('#live-version').textContent =
    `Live: version ${meta.version} (${meta.source}, by ${meta.author}, ${meta.created_at}) · ` +
    `evaluator ${meta.evaluator} · packages ${meta.packages.join(', ')} · ${meta.files.length} files`;
  S.edits += 1;
  clearDiff('No changes yet.');
  await Promise.all([loadHistory(), validate()]);
}

async function loadHistory() {
  try {
    const { body } = await call('GET', '/policies/versions?limit=50');
    renderHistory(body.versions, S.live.meta.version, rollback);
  } catch (e) {
    replace($('#history tbody'), h('tr', {}, h('td', { colspan: 5 }, `History unavailable: ${explain(e)}`)));
  }
}

async function busy(what, fn) {
  S.busy = true;
  updateDeploy();
  try {
    await fn();
  } catch (e) {
    status(`${what} failed: ${explain(e)}`, 'error');
  } finally {
    S.busy = false;
    updateDeploy();
  }
}

function deploy() {
  const files = S.editor.files();
  const message = $('#message').value.trim();
  return busy('Deploy', async () => {
    status('Deploying…');
    let body;
    try {
      ({ body } = await call('POST', '/policies', { files, message, base_version: S.live.meta.version }));
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        status(`Someone deployed meanwhile: version ${S.live.meta.version} is no longer live. ` +
          'Reload (your edit is discarded), merge it onto the new version and deploy again.', 'error');
        return;
      }
      if (e instanceof ApiError && e.status === 422) showProblems(e.body.problems || []);
      throw e;
    }
    $('#message').value = '';
    status(`Deployed version ${body.version}; loading it…`, 'ok');
    await loadLive();
    status(`Deployed version ${body.version}.`, 'ok');
  });
}

function rollback(v) {
  const lost = changed() ? ' Your unsaved edits are discarded.' : '';
  if (!window.confirm(`Roll back to version ${v.version}? This deploys its files as a new version.${lost}`)) return null;
  return busy('Rollback', async () => {
    status(`Rolling back to version ${v.version}…`);
    const { body } = await call('POST', '/policies/rollback', { version: v.version, message: `rollback to version ${v.version} (policy editor)` });
    status(`Rolled back: version ${body.version} has the files of version ${v.version}; loading it…`, 'ok');
    await loadLive();
    status(`Rolled back: version ${body.version} has the files of version ${v.version}.`, 'ok');
  });
}

function reload() {
  if (changed() && !window.confirm('Discard your edits and load the live version?')) return null;
  return busy('Reload', async () => {
    await loadLive();
    status(`Loaded the live version ${S.live.meta.version}.`, 'ok');
  });
}

// --- dry run --------------------------------------------------------------------------------

function principalOf(identity) {
  const p = { id: identity.identity_id, type: identity.type, roles: [], scopes: identity.scopes, groups: identity.groups };
  if (identity.tenant) p.tenant = identity.tenant;
  const devices = identity.metadata && identity.metadata.devices;
  if (Array.isArray(devices)) p.devices = devices;
  p.protocol = 'mqtt';
  return p;
}

async function loadIdentities() {
  try {
    const { body } = await call('GET', '/identity?limit=200');
    S.identities = body.identities.filter((i) => !i.disabled);
    const options = S.identities.map((i) =>
      h('option', { value: i.identity_id }, `${i.identity_id} · ${i.type}${i.tenant ? ` · ${i.tenant}` : ''}${i.name ? ` · ${i.name}` : ''}`));
    replace($('#dryrun-pick'), h('option', { value: '' }, 'Type a principal below'), options);
  } catch (e) {
    replace($('#dryrun-pick'), h('option', { value: '' }, `Identities unavailable: ${explain(e)}`));
  }
}

function pickIdentity() {
  const i = S.identities.find((x) => x.identity_id === $('#dryrun-pick').value);
  // Roles come from app memberships, which the identity list does not show: add them by hand.
  if (i) $('#dryrun-principal').value = JSON.stringify(principalOf(i), null, 2);
}

const ACC = { read: 1, publish: 2, subscribe: 4 };

function dryRunInput() {
  const principal = JSON.parse($('#dryrun-principal').value);
  if (!principal || typeof principal !== 'object' || Array.isArray(principal)) throw new Error('the principal must be a JSON object');
  const action = $('#dryrun-action').value;
  if (action === 'grants') return { principal };
  const topic = $('#dryrun-topic').value.trim();
  if (!topic) throw new Error('a topic is needed for a per-request decision');
  return { principal, clientid: principal.client_id || principal.id || '', topic, acc: ACC[action], action };
}

async function dryRun(ev) {
  ev.preventDefault();
  let input;
  try {
    input = dryRunInput();
  } catch (e) {
    renderEvalError(`Check the form: ${e.message}`);
    return;
  }
  const req = { input, explain: true };
  if ($('#dryrun-bundle').value === 'edited') req.files = S.editor.files();
  replace($('#dryrun-result'), h('p', { class: 'muted' }, 'Evaluating…'));
  try {
    const { body } = await call('POST', '/policies/eval', req);
    renderEval(body, input.action !== undefined);
  } catch (e) {
    const gate = e instanceof ApiError && e.status === 422 ? ' (the edited bundle does not pass the gate: dry-run on the live version, or fix it)' : '';
    renderEvalError(`${explain(e)}${gate}`);
  }
}

// --- the key and start-up -------------------------------------------------------------------

async function connect() {
  status('Loading the live version…');
  try {
    await loadLive();
  } catch (e) {
    S.live = null;
    $('#app').hidden = true;
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) adminKey.clear();
    status(explain(e), 'error');
    return;
  }
  $('#app').hidden = false;
  $('#key-panel').classList.add('connected');
  loadIdentities();
}

function wire() {
  S.editor = new Editor($('#editor'), onEdit);
  $('#key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    adminKey.set($('#api-key').value.trim());
    $('#api-key').value = '';
    connect();
  });
  $('#forget-key').addEventListener('click', () => {
    adminKey.clear();
    window.location.reload();
  });
  $('#deploy').addEventListener('click', deploy);
  $('#reload').addEventListener('click', reload);
  $('#dryrun-pick').addEventListener('change', pickIdentity);
  $('#dryrun-form').addEventListener('submit', dryRun);
}

wire();
if (adminKey.get()) connect();
else status('Paste an admin API key to start.');
