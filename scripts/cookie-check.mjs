// Better Auth's session cookie in a real browser (headless Chromium). A page on Better
// Auth's own origin (allowed by the service) signs up through Better Auth, which sets its
// cookie; then, with nothing but that cookie, it lists, creates, toggles and deletes with
// fetch(…, { credentials: "include" }) and receives the create's event on an EventSource
// with withCredentials. A page on another port of the same host (same site, so the browser
// sends the cookie; an origin the service does not list) tries a cookie fetch POST (with
// and without a preflight) and a form POST: nothing may be written. Run by
// scripts/cookie-check: node cookie-check.mjs API PAGE_URL EVIL_PORT
import { chromium } from 'playwright-core';
import http from 'node:http';

const [api, pageUrl, evilPort] = process.argv.slice(2);
const evilPage = `<!doctype html><meta charset="utf-8"><title>elsewhere</title>
<form id="f" method="POST" action="${api}/api/tasks" enctype="text/plain">
<input name='{"title":"forged by a form","x":"' value='"}'></form>`;
const evil = http.createServer((_, res) => { res.setHeader('Content-Type', 'text/html'); res.end(evilPage); });
await new Promise((resolve) => evil.listen(Number(evilPort), '127.0.0.1', resolve));

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
const failures = [];
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) failures.push(what); };
try {
  const context = await browser.newContext();
  const app = await context.newPage();
  await app.goto(pageUrl);
  const signedUp = await app.evaluate(async () => {
    const r = await fetch('/api/auth/sign-up/email', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: 'browser@example.com', password: 'correct horse battery', name: 'Browser' }) });
    return r.status;
  });
  check(signedUp === 200, `sign-up through Better Auth: ${signedUp}`);
  const cookies = await context.cookies();
  check(cookies.some((c) => c.name === 'better-auth.session_token' && c.httpOnly),
    'Better Auth set its HttpOnly session cookie (the page cannot read it)');

  const result = await app.evaluate(async (api) => {
    const call = async (method, path, body) => {
      const r = await fetch(api + path, { method, credentials: 'include',
        headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    };
    const out = {};
    out.emptyList = await call('GET', '/api/tasks');
    const events = [];
    const source = new EventSource(api + '/api/events', { withCredentials: true });
    for (const name of ['ready', 'task.created', 'task.updated', 'task.deleted', 'reset']) {
      source.addEventListener(name, (e) => events.push({ name, data: e.data, id: e.lastEventId }));
    }
    const until = async (test) => { for (let i = 0; i < 100 && !test(); i++) await new Promise((r) => setTimeout(r, 100)); return test(); };
    out.ready = await until(() => events.some((e) => e.name === 'ready'));
    out.created = await call('POST', '/api/tasks', { title: 'from the browser, by cookie' });
    out.event = await until(() => events.some((e) => e.name === 'task.created'));
    out.events = events.map((e) => ({ name: e.name, id: e.id, data: e.data }));
    const id = out.created.body && out.created.body.id;
    out.toggled = await call('PATCH', `/api/tasks/${id}/complete`);
    out.listed = await call('GET', '/api/tasks');
    out.deleted = await call('DELETE', `/api/tasks/${id}`);
    out.after = await call('GET', '/api/tasks');
    out.kept = await call('POST', '/api/tasks', { title: 'kept' });
    source.close();
    return out;
  }, api);
  check(result.emptyList.status === 200 && Array.isArray(result.emptyList.body), `list by cookie: ${result.emptyList.status}`);
  check(result.ready, 'EventSource with withCredentials opened (ready)');
  check(result.created.status === 201, `create by cookie: ${result.created.status}`);
  const created = result.events.find((e) => e.name === 'task.created');
  check(result.event && created && JSON.parse(created.data).id === result.created.body.id,
    `the create's event arrived on the stream: ${JSON.stringify(result.events.map((e) => [e.name, e.id]))}`);
  check(result.toggled.status === 200 && result.toggled.body.completed === true, `toggle by cookie: ${result.toggled.status}`);
  check(result.listed.status === 200 && result.listed.body.length === 1, 'list shows the task');
  check(result.deleted.status === 200 || result.deleted.status === 204, `delete by cookie: ${result.deleted.status}`);
  check(result.after.body.length === 0, 'list is empty again');
  check(result.kept.status === 201, 'one more task, to watch');

  // Another origin of the same site: the browser sends the cookie, the service must refuse.
  const elsewhere = await context.newPage();
  await elsewhere.goto(`http://127.0.0.1:${evilPort}/`);
  const forged = await elsewhere.evaluate(async (api) => {
    const out = {};
    try {
      const r = await fetch(api + '/api/tasks', { method: 'POST', credentials: 'include',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title: 'forged with a preflight' }) });
      out.preflighted = r.status;
    } catch (e) { out.preflighted = 'blocked'; }
    try {
      await fetch(api + '/api/tasks', { method: 'POST', credentials: 'include', mode: 'no-cors',
        headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ title: 'forged without a preflight' }) });
      out.simple = 'sent';
    } catch (e) { out.simple = 'blocked'; }
    return out;
  }, api);
  check(forged.preflighted === 'blocked', `cookie fetch POST with a preflight from another origin: ${forged.preflighted}`);
  const formAnswer = elsewhere.waitForNavigation({ timeout: 10000 }).catch(() => null);
  await elsewhere.evaluate(() => document.getElementById('f').submit());
  const navigation = await formAnswer;
  const formStatus = navigation ? navigation.status() : 'none';
  check(formStatus === 403, `form POST from another origin refused by the forgery rule: ${formStatus}`);

  const final = await app.evaluate(async (api) => {
    const r = await fetch(api + '/api/tasks', { credentials: 'include' });
    return (await r.json()).map((t) => t.title);
  }, api);
  check(JSON.stringify(final) === JSON.stringify(['kept']), `nothing forged was written: ${JSON.stringify(final)}`);
} finally {
  await browser.close();
  evil.close();
}
if (failures.length) {
  console.error(`cookie-check: ${failures.length} failed`);
  process.exit(1);
}
console.log('cookie-check: ok');
