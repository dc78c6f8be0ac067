-- PostgreSQL moves the tasks' column checks from the table onto domains, which it reads
-- once per connection instead of once per statement. SQLite has no domains, and its
-- table CHECKs are compiled into each prepared statement once, so they stay as they are.
SELECT 1;
