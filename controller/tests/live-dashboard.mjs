// The live tier's dashboard check (controller/tests/live.rs): loads the dashboard that the
// controller serves (--static-dir) in Debian's headless Chromium, waits until it shows the
// controller's live state, saves a screenshot and prints what the page shows as one JSON
// line, which the Rust test compares with the controller's /api/v1/state.
// Usage: node live-dashboard.mjs URL SCREENSHOT.png
// playwright-core comes from dashboard/tests (installed by scripts/setup.sh).
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '..', '..', 'dashboard', 'tests', 'package.json'));
const { chromium } = require('playwright-core');

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  console.error('usage: node live-dashboard.mjs URL SCREENSHOT.png');
  process.exit(2);
}
// Playwright gives every launch a fresh, empty user-data-dir of its own (it refuses a
// --user-data-dir argument), so no profile carries over between runs.
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let rc = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  await page.goto(url);
  // The page falls back to a demo when it cannot read api/v1/state: wait for the source
  // line to settle, then insist on the live one.
  await page.waitForFunction(() => {
    const s = document.querySelector('.source');
    return s && !s.textContent.startsWith('loading');
  }, null, { timeout: 60000 });
  const source = await page.locator('.source').innerText();
  if (!source.startsWith('live')) {
    // What the page's own request would have got, to tell a server fault from a page fault.
    const api = await page.evaluate(async () => {
      const r = await fetch('api/v1/state');
      return `${r.status} ${r.headers.get('content-type')} ${(await r.text()).slice(0, 500)}`;
    });
    throw new Error(`the page shows "${source}", not the live state; api/v1/state: ${api}; console: ${consoleLines.join(' | ')}`);
  }
  await page.waitForSelector('.lb-card', { timeout: 30000 });
  const cards = await page.locator('.lb-card').evaluateAll((els) => els.map((el) => ({
    title: el.querySelector('h3')?.textContent ?? '',
    text: el.textContent,
    chips: [...el.querySelectorAll('.chip')].map((c) => ({ label: c.textContent.trim(), claim: c.title })),
  })));
  const total = Number(await page.locator('.total-lbs').innerText());
  await page.screenshot({ path: resolve(shot), fullPage: true });
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log(JSON.stringify({ source, total, cards }));
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  rc = 1;
} finally {
  await browser.close();
}
process.exit(rc);
