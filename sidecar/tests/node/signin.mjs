// The OAuth2 sign-in page in a real browser: Debian's Chromium, driven by playwright-core.
//
//   AUTHORIZE_URL=… REDIRECT_URI=… SEED=<base64url 32 bytes> PUBLIC_KEY=<base64url> node signin.mjs
//
// Opens the page, reads the challenge from it, signs it with the Ed25519 key (as a person would
// with the `sign` example), fills the form, submits it, and reports where the browser landed
// (a stand-in for the client listens on the redirect URI's port), whether the page's own style
// applied under its CSP, and any console errors (CSP violations show there).
import crypto from 'node:crypto';
import http from 'node:http';
import { chromium } from 'playwright-core';

const { AUTHORIZE_URL, REDIRECT_URI, SEED, PUBLIC_KEY } = process.env;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

// The client: whatever reaches its redirect URI is recorded.
let landed = null;
const redirect = new URL(REDIRECT_URI);
const client = http.createServer((req, res) => {
  if (req.url.startsWith(redirect.pathname)) landed = `${redirect.origin}${req.url}`;
  res.end('client reached');
});
await new Promise((ok) => client.listen(Number(redirect.port), '127.0.0.1', ok));

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(AUTHORIZE_URL);
  const title = await page.title();
  const maxWidth = await page.evaluate(() => getComputedStyle(document.body).maxWidth);
  const challenge = await page.inputValue('#challenge');
  const key = crypto.createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: SEED, x: PUBLIC_KEY },
    format: 'jwk',
  });
  const signature = crypto.sign(null, Buffer.from(challenge), key).toString('base64url');
  await page.fill('#public_key', PUBLIC_KEY);
  await page.fill('#signature', signature);
  await Promise.all([
    page.waitForURL((url) => url.href.startsWith(REDIRECT_URI), { timeout: 15000 }),
    page.click('button[type=submit]'),
  ]);
  console.log(JSON.stringify({ landed, title, maxWidth, consoleErrors }));
} finally {
  await browser.close();
  client.close();
}
