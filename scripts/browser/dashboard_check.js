// Drives the dashboard page in Debian's headless Chromium and prints what it saw as JSON, for
// analytics_assets_tests/test_dashboard_browser.py to assert on:
//   DASHBOARD_URL=http://127.0.0.1:PORT API_KEY=aak_… MODEL=gpt-4o TO_DAY=2026-11-04 \
//     NODE_PATH=~/.cache/analytics-assets/browser-test/node_modules \
//     node scripts/browser/dashboard_check.js
// It enters the key, waits for every chart to draw, reads the totals, then chooses MODEL,
// then moves the range's end to TO_DAY, reading the totals after each. The key comes in by
// environment, never on a command line or in a URL.
const { chromium } = require('playwright-core');

const base = process.env.DASHBOARD_URL;
const apiKey = process.env.API_KEY;
// Without these flags Chromium keeps trying to reach Google on a closed network.
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TIMEOUT_MS = 30000;

// The data marks (bars, lines, points) each chart drew: Vega's SVG renderer puts them in
// `g.role-mark` groups, one element a mark; axes and legends are other roles.
function countMarks() {
  return Object.fromEntries([...document.querySelectorAll('.chart')].map((chart) => [
    chart.id, chart.querySelectorAll('svg g.role-mark > path, svg g.role-mark > rect').length]));
}

// Each change to a filter starts a new load: wait until one later than `after` has drawn.
async function drawnAfter(page, after) {
  await page.waitForFunction((previous) => Number(document.body.dataset.drawn || 0) > previous
    || document.body.dataset.state === 'error', after, { timeout: TIMEOUT_MS });
  return page.evaluate(() => ({
    drawn: Number(document.body.dataset.drawn || 0),
    state: document.body.dataset.state,
    totals: (() => {
      const number = (id) => Number(document.getElementById(id).textContent.replace(/,/g, ''));
      return { conversations: number('total-conversations'), messages: number('total-messages') };
    })(),
    status: document.getElementById('status').textContent,
  }));
}

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args });
  const result = { requests: [], consoleErrors: [], cspViolations: [] };
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    page.on('request', (request) => result.requests.push(request.url()));
    page.on('console', (message) => {
      if (message.type() === 'error') result.consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => result.consoleErrors.push(String(error)));
    await page.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => window.cspViolations.push(
        `${event.violatedDirective} ${event.blockedURI}`));
    });
    await page.goto(`${base}/dashboard`);
    await page.fill('#api-key', apiKey);
    await page.click('#key-form button[type=submit]');
    result.first = await drawnAfter(page, 0);
    result.marks = await page.evaluate(countMarks);
    await page.selectOption('#filter-model', process.env.MODEL);
    result.model = await drawnAfter(page, result.first.drawn);
    result.marksWithModel = await page.evaluate(countMarks);
    await page.fill('#filter-to', process.env.TO_DAY);
    result.shorter = await drawnAfter(page, result.model.drawn);
    result.filters = await page.evaluate(() => Object.fromEntries(
      [...document.querySelectorAll('#filters input, #filters select')].map((e) => [e.id, e.value])));
    result.storage = await page.evaluate(() => ({
      session: Object.keys(sessionStorage), local: Object.keys(localStorage) }));
    result.pageUrl = page.url();
    result.cspViolations = await page.evaluate(() => window.cspViolations);
  } catch (error) {
    result.error = String(error);
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
})();
