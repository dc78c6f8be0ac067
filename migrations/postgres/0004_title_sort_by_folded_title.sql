-- sort=title orders by the folded title (the search column) in code point order, then id,
-- so the order is the same on SQLite and on PostgreSQL whatever the database's collation:
-- the column's own collation is "C", which compares UTF-8 bytes as SQLite's BINARY does.
ALTER TABLE tasks ALTER COLUMN search_title TYPE TEXT COLLATE "C";
DROP INDEX tasks_user_title_idx;
CREATE INDEX tasks_user_title_idx ON tasks (user_id, search_title, id);
