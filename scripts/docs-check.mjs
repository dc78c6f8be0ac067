// Drives Swagger UI at /docs in a real (headless) Chromium: "Authorize" with a token, then
// "Try it out" on createTask, and fails unless the service answers 201. Run by scripts/docs-check.
import { chromium } from 'playwright-core';
const base = process.argv[2];
const token = process.argv[3];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
await page.goto(`${base}/docs/`);
await page.waitForSelector('.opblock', { timeout: 15000 });
const ops = await page.$$eval('.opblock-summary-path', els => els.map(e => e.textContent.trim()));
console.log('operations shown:', ops.length, ops.slice(0, 5).join(' | '));
await page.click('button.authorize');
await page.fill('.modal-ux input[type=text]', token);
await page.click('.modal-ux button.authorize');
await page.click('.modal-ux button.btn-done');
const op = page.locator('#operations-tasks-createTask');
await op.locator('.opblock-summary').click();
// tryItOutEnabled: the form is already editable.
await op.locator('input[placeholder="user_id"]').fill('alice');
await op.locator('textarea.body-param__text').fill('{"title": "from Swagger UI", "priority": "high"}');
await op.locator('button.execute').click();
await op.locator('.live-responses-table tbody .response-col_status').first().waitFor({ timeout: 10000 });
const status = await op.locator('.live-responses-table tbody .response-col_status').first().textContent();
const body = await op.locator('.live-responses-table .microlight').first().textContent();
console.log('createTask status:', status.trim());
console.log('body:', body.slice(0, 200));
await browser.close();
if (status.trim() !== '201' || !body.includes('from Swagger UI')) {
  console.error('docs-check: Try it out did not create the task');
  process.exit(1);
}
