// Rendering: plain DOM, text only (file contents, ids and messages are never parsed as HTML), no
// style attributes (the CSP forbids them; state shows as classes and data attributes).

export const $ = (sel) => document.querySelector(sel);

/** An element: `attrs` are attributes (`on*` listeners, `class`, `data` for data-*). */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'data') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  e.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return e;
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
}

export function status(text, kind = 'info') {
  const el = $('#status');
  el.textContent = text;
  el.dataset.kind = kind;
}

/** The gate's problems, each a link to its line. */
export function renderProblems(problems, onPick) {
  const items = problems.map((p) => {
    const where = p.file ? `${p.file}:${p.line}:${p.col}` : 'bundle';
    const attrs = { class: 'problem', data: { file: p.file || '', line: p.line || 0, col: p.col || 0 } };
    const label = p.file
      ? h('button', { type: 'button', class: 'link', onclick: () => onPick(p) }, where)
      : h('span', {}, where);
    return h('li', attrs, label, ' ', h('span', { class: 'msg' }, p.message));
  });
  replace($('#problems'), items.length ? items : h('li', { class: 'muted' }, 'None.'));
}

export function renderTests(tests, note) {
  const passed = tests.filter((t) => t.passed).length;
  $('#tests-summary').textContent = note || (tests.length ? `${passed} passed, ${tests.length - passed} failed` : '');
  const items = tests.map((t) =>
    h(
      'li',
      { class: t.passed ? 'pass' : 'fail', data: { passed: String(t.passed), name: t.name } },
      h('span', { class: 'badge' }, t.passed ? 'pass' : 'FAIL'),
      ' ',
      h('code', {}, t.name),
      ' ',
      h('span', { class: 'muted' }, t.location),
      t.error ? h('div', { class: 'msg' }, t.error) : null,
    ),
  );
  replace($('#tests'), items);
}

const KINDS = [
  ['publish', 'publish'],
  ['subscribe', 'subscribe'],
  ['nats_publish', 'NATS publish'],
  ['nats_subscribe', 'NATS subscribe'],
];

/** What one principal gains and loses, as [kind, what] pairs. */
function changesOf(c) {
  const gains = [];
  const losses = [];
  for (const [key, label] of KINDS) {
    for (const p of c[key]?.added || []) gains.push([label, p]);
    for (const p of c[key]?.removed || []) losses.push([label, p]);
  }
  const flag = (ch, label) => {
    if (!ch || ch.from === ch.to) return;
    (ch.to ? gains : losses).push([label, '']);
  };
  flag(c.superuser, 'superuser');
  flag(c.nats_allow_responses, 'NATS responses');
  if (c.client_ids) {
    const any = (v) => (v == null ? 'any client id' : v.join(', ') || 'no client id');
    gains.push(['client ids', any(c.client_ids.to)]);
    losses.push(['client ids', any(c.client_ids.from)]);
  }
  if (c.errors?.to) losses.push(['policy error', c.errors.to]);
  if (c.errors?.from) gains.push(['no more policy error', c.errors.from]);
  return { gains, losses };
}

function changeList(pairs) {
  return h(
    'ul',
    { class: 'changes' },
    pairs.map(([kind, what]) =>
      h('li', { data: { kind, pattern: what } }, h('span', { class: 'kind' }, kind), what ? ' ' : '', what ? h('code', {}, what) : null),
    ),
  );
}

export function renderDiff(report) {
  const rows = report.changed.map((c) => {
    const p = c.principal || {};
    const { gains, losses } = changesOf(c);
    return h(
      'tr',
      { data: { principal: p.id || '' } },
      h('td', {}, h('code', {}, p.id || '?')),
      h('td', {}, p.type || ''),
      h('td', {}, p.tenant || '—'),
      h('td', {}, (p.roles || []).join(', ') || '—'),
      h('td', { class: 'gain' }, changeList(gains)),
      h('td', { class: 'loss' }, changeList(losses)),
    );
  });
  replace($('#diff-table tbody'), rows);
  const n = report.changed.length;
  const more = report.truncated ? ' (not all principals were examined: the list is truncated)' : '';
  $('#diff-summary').textContent =
    `${report.principals_examined} ${report.principals_examined === 1 ? 'principal' : 'principals'} examined; ${n} ${n === 1 ? 'principal changes' : 'principals change'} access${more}.`;
}

export function clearDiff(note) {
  replace($('#diff-table tbody'));
  $('#diff-summary').textContent = note;
}

export function renderHistory(versions, liveVersion, onRollback) {
  const rows = versions.map((v) =>
    h(
      'tr',
      { data: { version: v.version }, class: v.version === liveVersion ? 'live' : null },
      h('td', {}, String(v.version), v.version === liveVersion ? h('span', { class: 'badge' }, 'live') : null,
        h('span', { class: 'sub' }, v.source)),
      h('td', {}, h('time', { datetime: v.created_at }, v.created_at.replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC')),
        h('span', { class: 'sub' }, h('code', {}, v.author))),
      h('td', {}, v.message),
      h('td', {}, h('code', { title: v.hash }, v.hash.slice(0, 8))),
      h(
        'td',
        {},
        v.version === liveVersion
          ? null
          : h('button', { type: 'button', class: 'rollback', 'aria-label': `Roll back to version ${v.version}`, onclick: () => onRollback(v) }, 'Roll back'),
      ),
    ),
  );
  replace($('#history tbody'), rows);
}

/** The answer of POST /policies/eval: the decision (or the grants) and the rules that fired. */
export function renderEval(out, perRequest) {
  const fired = (out.fired || []).map((f) =>
    h('li', {}, h('code', {}, f.rule), ' ', h('span', { class: 'muted' }, f.location), ' = ', h('code', {}, JSON.stringify(f.value))),
  );
  const decision = perRequest
    ? h('p', { class: `decision ${out.result === true ? 'allow' : 'deny'}`, data: { decision: out.result === true ? 'allow' : 'deny' } },
      out.result === true ? 'Allowed' : 'Denied')
    : h('pre', { class: 'grants', data: { decision: 'grants' } }, JSON.stringify(out.result, null, 2));
  replace(
    $('#dryrun-result'),
    decision,
    h('p', { class: 'muted' }, `Entry point ${out.entrypoint}; ${(out.lines || []).length} policy lines evaluated.`),
    h('h3', {}, 'Rules that fired'),
    h('ul', { class: 'list fired' }, fired.length ? fired : h('li', { class: 'muted' }, 'None.')),
  );
}

export function renderEvalError(text) {
  replace($('#dryrun-result'), h('p', { class: 'decision error', data: { decision: 'error' } }, text));
}
