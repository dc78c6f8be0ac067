// The official Better Auth client against the service in headless Chromium. Run by
// scripts/accounts-check: node accounts-check.mjs API PAGE_PORT EVIL_PORT CLIENT_JS
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';

const [api, pagePort, evilPort, clientFile] = process.argv.slice(2);
const client = fs.readFileSync(clientFile);
const serve = (port) => {
  const server = http.createServer((req, res) => {
    if (req.url === '/client.js') {
      res.setHeader('Content-Type', 'text/javascript');
      res.end(client);
      return;
    }
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end('<!doctype html><meta charset="utf-8"><title>app</title><p>app</p>');
  });
  return new Promise((resolve) => server.listen(Number(port), '127.0.0.1', () => resolve(server)));
};
const servers = [await serve(pagePort), await serve(evilPort)];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
const failures = [];
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) failures.push(what); };
const email = 'browser@example.com';
const password = 'correct horse battery';
try {
  const context = await browser.newContext();
  const app = await context.newPage();
  await app.goto(`http://127.0.0.1:${pagePort}/`);
  const flow = await app.evaluate(async ({ api, email, password }) => {
    const { createAuthClient } = await import('/client.js');
    const auth = createAuthClient({ baseURL: api });
    const out = {};
    const up = await auth.signUp.email({ email, password, name: 'Browser' });
    out.signUp = { error: up.error, user: up.data && up.data.user && up.data.user.email };
    const signedIn = await auth.signIn.email({ email, password });
    out.signIn = { error: signedIn.error, token: Boolean(signedIn.data && signedIn.data.token) };
    const session = await auth.getSession();
    out.session = session.data && session.data.user && session.data.user.email;
    out.sessionUser = session.data && session.data.user && session.data.user.id;
    const call = async (method, path, body) => {
      const r = await fetch(api + path, { method, credentials: 'include',
        headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    };
    out.emptyList = await call('GET', '/api/tasks');
    const events = [];
    const source = new EventSource(api + '/api/events', { withCredentials: true });
    for (const name of ['ready', 'task.created']) {
      source.addEventListener(name, (e) => events.push({ name, data: e.data }));
    }
    const until = async (test) => { for (let i = 0; i < 100 && !test(); i++) await new Promise((r) => setTimeout(r, 100)); return test(); };
    out.ready = await until(() => events.some((e) => e.name === 'ready'));
    out.created = await call('POST', '/api/tasks', { title: 'signed in by the service itself' });
    out.event = await until(() => events.some((e) => e.name === 'task.created'));
    out.eventData = (events.find((e) => e.name === 'task.created') || {}).data;
    source.close();
    out.listed = await call('GET', '/api/tasks');
    return out;
  }, { api, email, password });
  check(!flow.signUp.error && flow.signUp.user === email, `signUp.email: ${JSON.stringify(flow.signUp)}`);
  check(!flow.signIn.error && flow.signIn.token, `signIn.email: ${JSON.stringify(flow.signIn)}`);
  check(flow.session === email, `getSession: ${flow.session}`);
  const cookies = await context.cookies(api);
  check(cookies.some((c) => c.name === 'better-auth.session_token' && c.httpOnly && c.sameSite === 'Lax'),
    'the service set its HttpOnly SameSite=Lax session cookie');
  check(flow.emptyList.status === 200 && Array.isArray(flow.emptyList.body) && flow.emptyList.body.length === 0,
    `list with credentials: ${flow.emptyList.status}`);
  check(flow.ready, 'EventSource with withCredentials opened (ready)');
  check(flow.created.status === 201 && flow.created.body.user_id === flow.sessionUser,
    `create with credentials: ${flow.created.status}, for the session's user`);
  check(flow.event && JSON.parse(flow.eventData || '{}').title === 'signed in by the service itself',
    'the create came as task.created on the EventSource');
  check(flow.listed.status === 200 && flow.listed.body.length === 1, `list after the create: ${flow.listed.status}`);

  // Another origin (the same site, so the browser has the cookie): no sign-in, no write.
  const evil = await context.newPage();
  await evil.goto(`http://127.0.0.1:${evilPort}/`);
  const attempt = await evil.evaluate(async ({ api, email, password }) => {
    const { createAuthClient } = await import('/client.js');
    const auth = createAuthClient({ baseURL: api });
    let signIn;
    try {
      const r = await auth.signIn.email({ email, password });
      signIn = { data: Boolean(r.data), error: r.error ? r.error.status : null };
    } catch (e) {
      signIn = { data: false, threw: String(e) };
    }
    // A simple request (no preflight): sent, so the service itself must refuse it.
    await fetch(api + '/api/auth/sign-in/email', { method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email, password }).toString() });
    let write;
    try {
      const r = await fetch(api + '/api/tasks', { method: 'POST', credentials: 'include',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ title: 'from elsewhere' }) });
      write = r.status;
    } catch (e) {
      write = 'blocked';
    }
    return { signIn, write };
  }, { api, email, password });
  check(!attempt.signIn.data, `an unlisted origin cannot sign in: ${JSON.stringify(attempt.signIn)}`);
  check(attempt.write !== 201, `an unlisted origin cannot write: ${attempt.write}`);

  const after = await app.evaluate(async ({ api }) => {
    const { createAuthClient } = await import('/client.js');
    const auth = createAuthClient({ baseURL: api });
    const sessions = await auth.listSessions();
    const tasks = await (await fetch(api + '/api/tasks', { credentials: 'include' })).json();
    const out = await auth.signOut();
    const refused = await fetch(api + '/api/tasks', { credentials: 'include' });
    const session = await auth.getSession();
    return { sessions: sessions.data && sessions.data.length, tasks: tasks.length, signOut: out.data,
      refused: refused.status, session: session.data };
  }, { api });
  check(after.sessions === 2, `the sessions are the sign-up's and the sign-in's only (the form post from elsewhere made none): ${after.sessions}`);
  check(after.tasks === 1, `nothing was written from elsewhere: ${after.tasks} task(s)`);
  check(after.signOut && after.signOut.success === true, `signOut: ${JSON.stringify(after.signOut)}`);
  check(after.refused === 401, `after sign-out, the task route answers ${after.refused}`);
  check(after.session === null, 'getSession after sign-out is null');
} finally {
  await browser.close();
  for (const server of servers) server.close();
}
if (failures.length) {
  console.error(`accounts-check: ${failures.length} check(s) failed`);
  process.exit(1);
}
console.log('accounts-check: every check passed');
