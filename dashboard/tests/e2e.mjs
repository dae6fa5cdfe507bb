// End-to-end tests of the built dashboard (dist/) in a real headless Chromium.
// Serves dist/ on 127.0.0.1, drives /usr/bin/chromium with playwright-core, saves
// screenshots to target/e2e/. Prints "N passed, N failed" and exits non-zero on failure.
import { createServer } from 'node:http';
import { readFile, mkdir } from 'node:fs/promises';
import { join, extname, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';

const root = resolve(process.argv[2] ?? 'dist');
const shots = resolve(process.argv[3] ?? 'target/e2e');
await mkdir(shots, { recursive: true });
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = join(root, path === '/' ? 'index.html' : path);
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end('not found');
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  // playwright gives every launch a fresh, empty user-data-dir of its own.
});
let passed = 0, failed = 0;
async function test(name, fn) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  try {
    await fn(page);
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAILED - ${name}: ${e.message}`);
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, '-')}.png`) }).catch(() => {});
  } finally {
    await page.close();
  }
}

await test('overview shows LB cards from the demo state', async (page) => {
  await page.goto(`${base}/`);
  await page.waitForSelector('.lb-card', { timeout: 60000 });
  const cards = await page.locator('.lb-card').count();
  const total = Number(await page.locator('.total-lbs').innerText());
  if (cards < 2 || cards !== total) throw new Error(`${cards} cards, total says ${total}`);
  const chips = await page.locator('.lb-card .chip').count();
  if (chips < cards) throw new Error(`only ${chips} listener chips`);
  if (!(await page.locator('.source').innerText()).startsWith('demo')) throw new Error('not the demo source');
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: false });
  await page.getByRole('button', { name: 'Port map' }).click();
  await page.waitForSelector('table.portmap td.on');
  await page.screenshot({ path: join(shots, 'portmap.png') });
});

// The CLI's answer for the default scenario (best-fit, seed 1), to compare with the page:
// the binary in $SHAREDLB_SIM (the test command passes the one `cargo test` built), else
// `cargo run --release`.
const simArgs = ['run', '--policy', 'best-fit', '--format', 'json', '--quiet'];
const cli = JSON.parse(process.env.SHAREDLB_SIM
  ? execFileSync(process.env.SHAREDLB_SIM, simArgs, { encoding: 'utf8', maxBuffer: 1 << 24 })
  : execFileSync('cargo', ['run', '--quiet', '--release', '-p', 'sharedlb-simulator', '--bin', 'sharedlb-sim', '--', ...simArgs],
    { encoding: 'utf8', maxBuffer: 1 << 24 }));

await test('the simulate form runs the default scenario in the page like the CLI and draws a chart', async (page) => {
  await page.goto(`${base}/`);
  await page.getByRole('button', { name: 'Simulate' }).click();
  await page.fill('#policies', 'best-fit,seed');
  const started = Date.now();
  await page.click('#run');
  await Promise.race([
    page.waitForSelector('table.summary tr:nth-child(3)', { timeout: 300000 }),
    page.waitForSelector('.banner', { timeout: 300000 }).then(async () => {
      throw new Error(`the form says: ${await page.locator('.banner').innerText()}`);
    }),
  ]);
  console.log(`  in-page simulation of the default scenario (30 days), 2 policies: ${Date.now() - started} ms`);
  const served = await page.locator('table.summary tr:nth-child(2) td:nth-child(2)').innerText();
  if (served !== `${(100 * cli.served_fraction).toFixed(1)}%`) throw new Error(`page says ${served} served, the CLI ${cli.served_fraction}`);
  const lbs = await page.locator('table.summary tr:nth-child(2) td:nth-child(3)').innerText();
  if (lbs !== cli.lbs_mean.toFixed(1)) throw new Error(`page says ${lbs} LBs, the CLI ${cli.lbs_mean.toFixed(1)}`);
  const paths = await page.locator('svg.lbs path').count();
  if (paths !== 3) throw new Error(`${paths} chart lines, expected 2 policies + the lower bound`);
  for (const c of ['cost', 'waits']) {
    if ((await page.locator(`svg.${c} path`).count()) !== 2) throw new Error(`the ${c} chart lacks its lines`);
  }
  const d = await page.locator('svg.lbs path').first().getAttribute('d');
  if (!d || d.split('L').length < 10) throw new Error(`chart line too short: ${d}`);
  await page.screenshot({ path: join(shots, 'simulate.png'), fullPage: true });
  await page.fill('#days', 'many');
  await page.click('#run');
  await page.waitForSelector('.banner:has-text("days")');
  await page.fill('#days', '30');
  await page.fill('#profile', 'oracle-lb');
  await page.click('#run');
  await page.waitForSelector('.banner:has-text("unknown profile")');
});

await test('an unreachable ?api= shows the error banner', async (page) => {
  await page.goto(`${base}/?api=http://127.0.0.1:9`);
  await page.waitForSelector('.banner', { timeout: 30000 });
  const text = await page.locator('.banner').innerText();
  if (!text.includes('cannot read')) throw new Error(`banner says ${text}`);
  await page.screenshot({ path: join(shots, 'api-error.png') });
});

await browser.close();
server.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
