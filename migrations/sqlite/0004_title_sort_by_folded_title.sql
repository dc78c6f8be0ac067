-- sort=title orders by the folded title (the search column) in code point order, then id,
-- so the order is the same on SQLite and on PostgreSQL whatever the database's collation
-- (SQLite's default collation, BINARY, compares UTF-8 bytes).
DROP INDEX tasks_user_title_idx;
CREATE INDEX tasks_user_title_idx ON tasks (user_id, search_title, id);
