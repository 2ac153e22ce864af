// The policy editor page in a real browser: Debian's Chromium, driven by playwright-core, the
// way an admin uses it. Started by sidecar/tests/it/policy_editor.rs:
//
//   BASE_URL=http://127.0.0.1:PORT ADMIN_KEY=ak_… DEVICE_ID=dev-… node policy_editor.mjs
//
// It talks to the Rust side in lines: it prints `deployed {json}` and `rolled-back {json}` and
// waits for a line on stdin before going on (the Rust side checks a real MQTT client in
// between), then prints `report {json}` with what it saw and exits. Anything unexpected throws:
// the message goes to stderr and the exit code is 1.
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const { BASE_URL, ADMIN_KEY, DEVICE_ID } = process.env;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const DEVICE_SUBSCRIBE = 'device_subscribe(p) := {sprintf("devices/%s/cmd/#", [d]) | some d in acts_for(p)}';
const BREAK = ' |';
const FIX = ' | {"fleet/#" | p.type == "device"; not p.tenant}';
const T = { timeout: 20000 };

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function checkpoint(event, data) {
  console.log(`${event} ${JSON.stringify(data)}`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'continue') throw new Error(`the test runner said ${JSON.stringify(value)} after ${event}`);
}

/** Watch everything the page does: console errors, script errors, every request, the API's answers. */
function watch(page) {
  const seen = { consoleErrors: [], networkErrors: [], pageErrors: [], requests: [], validations: [] };
  // Chromium logs every 4xx answer as a console error of its own; those are told apart (the
  // test expects exactly the validation's 422) from what the page or the CSP reports.
  const network = /^Failed to load resource: the server responded with a status of (\d+)/;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const n = m.text().match(network);
    if (n) seen.networkErrors.push({ status: Number(n[1]), url: m.location().url });
    else seen.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => seen.pageErrors.push(String(e)));
  page.on('request', (r) => seen.requests.push(r.url()));
  page.on('response', async (r) => {
    if (!r.url().endsWith('/policies/validate')) return;
    seen.validations.push({ status: r.status(), body: await r.json().catch(() => null) });
  });
  // Rollback asks for a confirmation; the admin says yes.
  page.on('dialog', (d) => d.accept());
  return seen;
}

/** The number in the line-number gutter level with `box` (what the admin reads off the screen). */
async function lineNumberAt(page, box) {
  const y = box.y + box.height / 2;
  const gutters = page.locator('#editor .cm-lineNumbers .cm-gutterElement');
  for (const g of await gutters.all()) {
    const b = await g.boundingBox();
    if (b && b.height > 0 && y >= b.y && y < b.y + b.height) return Number(await g.textContent());
  }
  throw new Error(`no line number at y=${y}`);
}

/** With SCREENSHOT_DIR set, a full-page screenshot per stage (for a person to look at). */
async function shot(page, name) {
  if (process.env.SCREENSHOT_DIR) await page.screenshot({ path: `${process.env.SCREENSHOT_DIR}/${name}.png`, fullPage: true });
}

async function statusSays(page, text) {
  await page.locator('#status', { hasText: text }).waitFor(T);
}

async function signIn(page) {
  await page.goto(`${BASE_URL}/ui/policies`);
  await page.getByLabel('API key with the admin scope').fill(ADMIN_KEY);
  await page.click('#save-key');
  await page.locator('#tests li[data-passed="true"]').first().waitFor(T);
  await statusSays(page, 'passes the gate');
  return {
    keyInSession: await page.evaluate(() => sessionStorage.getItem('broker-auth.admin-key')) === ADMIN_KEY,
    keyFieldCleared: (await page.inputValue('#api-key')) === '',
    deployDisabledUnchanged: await page.isDisabled('#deploy'),
    files: await page.locator('#files [role="tab"]').allTextContents(),
  };
}

/** Scroll the editor with the mouse wheel until a line with `text` is well inside it (CodeMirror
 * draws only the lines near the viewport). Not locator.click's own scrolling: that scrolls the
 * full-width line element sideways under the sticky gutter, which no person's click does. */
async function scrollToLine(page, text) {
  const line = page.locator('#editor .cm-line', { hasText: text });
  const view = await page.locator('#editor .cm-scroller').boundingBox();
  await page.mouse.move(view.x + view.width / 2, view.y + view.height / 2);
  const inside = async () => {
    if ((await line.count()) === 0) return false;
    const b = await line.boundingBox();
    return b && b.y > view.y + 40 && b.y + b.height < view.y + view.height - 40;
  };
  for (let i = 0; i < 40 && !(await inside()); i++) {
    await page.mouse.wheel(0, 120);
    await page.waitForTimeout(50);
  }
  if (!(await inside())) throw new Error(`the editor never showed ${text}`);
  return line;
}

/** Type the error at the end of the `device_subscribe` line; where the page shows the problem. */
async function breakIt(page, seen) {
  await page.getByRole('tab', { name: 'broker.rego' }).click();
  const line = await scrollToLine(page, DEVICE_SUBSCRIBE);
  const box = await line.boundingBox();
  await page.mouse.click(box.x + 40, box.y + box.height / 2);
  await page.keyboard.press('End');
  const editedLine = await lineNumberAt(page, await line.boundingBox());
  const before = seen.validations.length;
  await page.keyboard.type(BREAK);
  const problem = page.locator('#problems li.problem').first();
  await problem.waitFor(T);
  const range = page.locator('#editor .cm-lintRange-error').first();
  await range.waitFor(T);
  const marker = page.locator('#editor .cm-gutter-lint .cm-lint-marker-error').first();
  await marker.waitFor(T);
  await shot(page, 'broken');
  const answered = seen.validations.slice(before).filter((v) => v.status === 422);
  const p422 = answered.length ? answered[answered.length - 1].body.problems[0] : null;
  return {
    editedLine,
    listed: { file: await problem.getAttribute('data-file'), line: Number(await problem.getAttribute('data-line')), text: await problem.textContent() },
    markedLine: await lineNumberAt(page, await range.boundingBox()),
    gutterMarkerLine: await lineNumberAt(page, await marker.boundingBox()),
    problem422: p422,
    deployDisabled: await page.isDisabled('#deploy'),
    deployReason: await page.textContent('#deploy-reason'),
  };
}

/** Take the error back and type the grant; the tests, Deploy and the access diff. */
async function fixIt(page) {
  await page.keyboard.press('Backspace');
  await page.keyboard.type(FIX);
  await page.locator('#deploy:not([disabled])').waitFor(T);
  const row = page.locator(`#diff-table tbody tr[data-principal="${DEVICE_ID}"]`);
  await row.waitFor(T);
  await shot(page, 'fixed');
  const cells = row.locator('td');
  return {
    problemsLeft: await page.locator('#problems li.problem').count(),
    testsPassed: await page.locator('#tests li[data-passed="true"]').count(),
    testsFailed: await page.locator('#tests li[data-passed="false"]').count(),
    deployEnabled: !(await page.isDisabled('#deploy')),
    diffSummary: await page.textContent('#diff-summary'),
    device: {
      type: await cells.nth(1).textContent(),
      tenant: await cells.nth(2).textContent(),
      gains: await row.locator('td.gain li').evaluateAll((ls) => ls.map((l) => `${l.dataset.kind} ${l.dataset.pattern}`)),
      losses: await row.locator('td.loss li').evaluateAll((ls) => ls.map((l) => `${l.dataset.kind} ${l.dataset.pattern}`)),
    },
    changedPrincipals: await page.locator('#diff-table tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.principal)),
  };
}

async function deploy(page) {
  await page.getByLabel('Message').fill('devices without a tenant subscribe fleet/# (policy editor test)');
  await page.click('#deploy');
  await statusSays(page, 'Deployed version 2.');
  await page.locator('#history tr[data-version="2"].live').waitFor(T);
  await shot(page, 'deployed');
  return {
    version: 2,
    liveText: await page.textContent('#live-version'),
    deployDisabledAfter: await page.isDisabled('#deploy'),
    history: await page.locator('#history tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.version)),
  };
}

async function rollBack(page) {
  await page.locator('#history tr[data-version="1"] button.rollback').click();
  await statusSays(page, 'Rolled back: version 3 has the files of version 1.');
  await page.locator('#history tr[data-version="3"].live').waitFor(T);
  const text = await page.locator('#editor .cm-content').textContent();
  return { version: 3, editorHasTheFix: text.includes('fleet/#') };
}

async function dryRun(page, topic) {
  await page.selectOption('#dryrun-pick', DEVICE_ID);
  await page.selectOption('#dryrun-action', 'publish');
  await page.getByLabel('Topic (or filter for subscribe)').fill(topic);
  await page.locator('#dryrun-result').evaluate((e) => e.replaceChildren());
  await page.click('#dryrun-run');
  const decision = page.locator('#dryrun-result [data-decision]');
  await decision.waitFor(T);
  await shot(page, `dryrun-${await decision.getAttribute('data-decision')}`);
  return {
    topic,
    principal: JSON.parse(await page.inputValue('#dryrun-principal')),
    decision: await decision.getAttribute('data-decision'),
    fired: await page.locator('#dryrun-result ul.fired li code:first-child').allTextContents(),
  };
}

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const seen = watch(page);
  const report = {};
  report.signIn = await signIn(page);
  report.broken = await breakIt(page, seen);
  report.fixed = await fixIt(page);
  report.deployed = await deploy(page);
  await checkpoint('deployed', { version: report.deployed.version });
  report.rolledBack = await rollBack(page);
  await checkpoint('rolled-back', { version: report.rolledBack.version });
  report.allowed = await dryRun(page, `devices/${DEVICE_ID}/telemetry`);
  report.denied = await dryRun(page, 'devices/someone-else/telemetry');
  report.consoleErrors = seen.consoleErrors;
  report.networkErrors = seen.networkErrors;
  report.pageErrors = seen.pageErrors;
  report.requests = seen.requests;
  console.log(`report ${JSON.stringify(report)}`);
} finally {
  await browser.close();
  lines.return?.();
  process.stdin.destroy();
}
