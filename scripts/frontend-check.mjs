// A FastAPI-style frontend in a real browser, from another (allowed) origin, every call with
// `credentials: "include"` and a Bearer token, with cookie mode off. Run by
// scripts/frontend-check; exits 1 on any step that does not answer as the frontend expects.
import { chromium } from 'playwright-core';
import http from 'node:http';

const [api, token, frontendPort] = process.argv.slice(2);
const page = `<!doctype html><meta charset="utf-8"><title>todos</title><script>
const call = async (method, path, body) => {
  const init = { method, credentials: 'include',
    headers: { 'Authorization': 'Bearer ${token}' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch('${api}' + path, init);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, total: r.headers.get('x-total-count') };
};
window.run = async () => {
  const steps = [];
  const made = await call('POST', '/api/v1/todos', { title: 'Buy milk', dueDate: '2026-12-01', priority: 'URGENT', is_completed: false });
  steps.push(['create', made.status === 201 && made.body.due_date === '2026-12-01T00:00:00.000000Z'
    && made.body.priority === 'high' && made.body.is_completed === false, made]);
  await call('POST', '/api/v1/todos', { title: 'Walk dog' });
  const listed = await call('GET', '/api/v1/todos?search=MILK&sort_by=createdAt&sort_order=desc&page=1&limit=10');
  steps.push(['list', listed.status === 200 && listed.body.total === 1 && listed.body.tasks.length === 1
    && listed.body.tasks[0].title === 'Buy milk', listed]);
  const toggled = await call('PATCH', '/api/v1/todos/' + made.body.id + '/toggle');
  steps.push(['toggle', toggled.status === 200 && toggled.body.is_completed === true, toggled]);
  const done = await call('GET', '/api/v1/todos?status_filter=done');
  steps.push(['filter', done.status === 200 && done.body.tasks.length === 1, done]);
  const stats = await call('GET', '/api/tasks/stats');
  steps.push(['stats', stats.status === 200 && stats.body.total === 2 && stats.body.completed === 1, stats]);
  const removed = await call('DELETE', '/api/v1/todos/' + made.body.id);
  steps.push(['delete', removed.status === 204, removed]);
  return steps;
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
  let steps;
  try {
    steps = await tab.evaluate(() => window.run());
  } catch (error) {
    // A CORS refusal is a TypeError ("Failed to fetch") in the page.
    console.error('frontend-check: a call failed in the browser:', error.message);
    process.exit(1);
  }
  for (const [name, ok, answer] of steps) {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${answer.status}`);
    if (!ok) {
      console.error(JSON.stringify(answer));
      failed = true;
    }
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
