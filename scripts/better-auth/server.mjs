// A real Better Auth server for the tests: email and password sign-in, the bearer plugin,
// on the database named by DATABASE_URL (the service's own, as in production). Its tables
// are created at start with Better Auth's own migrations. Prints its URL once it listens.
//
// Environment: DATABASE_URL (postgres://… or sqlite://PATH), BETTER_AUTH_SECRET, and
// FIELDS=snake_case to map the session's columns to user_id / expires_at, as some
// adapters do. PAGE_FILE: an HTML file served at `/`, so a browser page can share Better
// Auth's origin (scripts/cookie-check).
import http from "node:http";
import { betterAuth } from "better-auth";
import { bearer } from "better-auth/plugins";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";

const url = process.env.DATABASE_URL ?? "";
const secret = process.env.BETTER_AUTH_SECRET ?? "";
if (!url || secret.length < 32) {
  console.error("DATABASE_URL and BETTER_AUTH_SECRET (32+ characters) must be set");
  process.exit(2);
}

let database;
if (url.startsWith("postgres")) {
  const pg = (await import("pg")).default;
  database = new pg.Pool({ connectionString: url, max: 4 });
} else if (url.startsWith("sqlite://")) {
  const Database = (await import("better-sqlite3")).default;
  const file = url.slice("sqlite://".length).split("?")[0];
  database = new Database(file);
  database.pragma("journal_mode = WAL");
  database.pragma("busy_timeout = 5000");
} else {
  console.error("DATABASE_URL must be postgres:// or sqlite://");
  process.exit(2);
}

const snake = process.env.FIELDS === "snake_case";
const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const baseURL = `http://127.0.0.1:${server.address().port}`;

const auth = betterAuth({
  baseURL,
  secret,
  database,
  emailAndPassword: { enabled: true },
  session: snake ? { fields: { userId: "user_id", expiresAt: "expires_at" } } : undefined,
  plugins: [bearer()],
  logger: { level: "error" },
  telemetry: { enabled: false },
});
const { runMigrations } = await getMigrations(auth.options);
await runMigrations();

const handler = toNodeHandler(auth);
const page = process.env.PAGE_FILE ? (await import("node:fs")).readFileSync(process.env.PAGE_FILE) : null;
server.on("request", (req, res) => {
  if (page && req.method === "GET" && req.url === "/") {
    res.setHeader("Content-Type", "text/html; charset=utf-8");
    res.end(page);
    return;
  }
  handler(req, res);
});
console.log(baseURL);

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// Ends with the test that started it, even if that test panicked before stopping it.
process.stdin.on("end", stop);
process.stdin.resume();
