// The README's screenshots of the Dagster UI (after `make demo` and a single-day run of
// daily_report 2026-11-10, with `make ui` serving on 127.0.0.1:3000):
//   npm install --prefix scripts/screenshots playwright-core@1.64.1
//   node scripts/screenshots/take.js docs/images
// Uses Debian's Chromium (apt-get install chromium); nothing is downloaded.
const { chromium } = require('playwright-core');
const path = require('path');

const base = process.env.DAGSTER_UI || 'http://127.0.0.1:3000';
const outDir = process.argv[2] || 'docs/images';
// Without these flags Chromium keeps trying to reach Google on a closed network.
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function open(browser, url, viewport) {
  const page = await browser.newPage({ viewport });
  await page.goto(base + url);
  await page.waitForTimeout(4000);
  const skip = page.getByRole('button', { name: 'Skip' }); // the community sign-up dialog
  if (await skip.count()) await skip.click();
  await page.waitForTimeout(500);
  return page;
}

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args });
  const graph = await open(browser, '/asset-groups', { width: 1900, height: 1250 });
  await graph.locator('[aria-label="settings"]').last().click();
  await graph.getByRole('menuitem', { name: /Expand all groups/ }).click();
  await graph.waitForTimeout(1500);
  await graph.locator('button:left-of(:text("Search and filter assets"))').first().click();
  await graph.locator('[aria-label="zoom_out"]').last().click();
  await graph.getByText('Hide navigation').click();
  await graph.waitForTimeout(1500);
  await graph.screenshot({ path: path.join(outDir, 'asset-graph.png') });

  const report = await open(
    browser, '/assets/daily_report?partition=2026-11-10&view=partitions',
    { width: 1600, height: 1300 });
  await report.getByText(/Show Markdown/).first().click();
  await report.waitForTimeout(1500);
  await report.screenshot({ path: path.join(outDir, 'daily-report.png') });
  await browser.close();
})();
