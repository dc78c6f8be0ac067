// A real browser's EventSource on the event stream, from another (allowed) origin: a page
// served from the frontend origin opens the stream with ?access_token=, creates a task
// with fetch (a CORS preflight with Authorization), and must see `ready`, then the
// task.created event carrying that task. Run by scripts/events-check.
import { chromium } from 'playwright-core';
import http from 'node:http';

const [api, token, frontendPort] = process.argv.slice(2);
const page = `<!doctype html><meta charset="utf-8"><title>events</title><script>
window.seen = [];
const source = new EventSource('${api}/api/alice/events?access_token=${token}');
for (const name of ['ready', 'task.created', 'reset']) {
  source.addEventListener(name, (e) => window.seen.push({ name, data: e.data, id: e.lastEventId }));
}
window.create = async (title) => {
  const r = await fetch('${api}/api/alice/tasks', { method: 'POST',
    headers: { 'Authorization': 'Bearer ${token}', 'Content-Type': 'application/json' },
    body: JSON.stringify({ title }) });
  return { status: r.status, task: await r.json() };
};
</script>`;
const server = http.createServer((_, res) => { res.setHeader('Content-Type', 'text/html'); res.end(page); });
await new Promise((resolve) => server.listen(Number(frontendPort), '127.0.0.1', resolve));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
let failed = false;
try {
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${frontendPort}/`);
  await tab.waitForFunction(() => window.seen.some((e) => e.name === 'ready'), null, { timeout: 10000 });
  const created = await tab.evaluate(() => window.create('from a browser'));
  console.log('create:', created.status);
  await tab.waitForFunction(() => window.seen.some((e) => e.name === 'task.created'), null, { timeout: 10000 });
  const seen = await tab.evaluate(() => window.seen);
  console.log('events seen:', JSON.stringify(seen.map((e) => [e.name, e.id])));
  const event = seen.find((e) => e.name === 'task.created');
  if (created.status !== 201 || JSON.stringify(JSON.parse(event.data)) !== JSON.stringify(created.task) || !event.id) {
    console.error('events-check: the event does not carry the created task');
    failed = true;
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
