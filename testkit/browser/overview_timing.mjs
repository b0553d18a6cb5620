// Times the console's Overview page in headless Chromium: from navigation until the
// totals are on screen (data fetched, charts drawn). Used by bench/src/bin/ui_overview.rs.
//
//   URL=... USER=... PASSWORD=... RANGE=24h REPS=5 node overview_timing.mjs   → JSON on stdout
import { chromium } from 'playwright-core';

const { URL: BASE, USER, PASSWORD } = process.env;
const range = process.env.RANGE ?? '24h';
const reps = Number(process.env.REPS ?? 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking'],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
await page.goto(`${BASE}/`);
await page.fill('#login-user', USER);
await page.fill('#login-password', PASSWORD);
await page.click('#login-submit');
await page.waitForSelector('#nav');
const ms = [];
for (let i = 0; i < reps; i++) {
  await page.goto('about:blank');
  const t0 = Date.now();
  await page.goto(`${BASE}/#/overview?range=${range}`);
  await page.waitForSelector('[data-testid=total-bytes][data-value]', { timeout: 120000 });
  ms.push(Date.now() - t0);
}
await browser.close();
console.log(JSON.stringify({ range, ms }));
