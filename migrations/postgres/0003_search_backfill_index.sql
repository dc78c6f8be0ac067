-- Rows whose search columns are not filled in yet: empty once the start-up fill is done,
-- so every later start finds that out from this index instead of scanning the table.
CREATE INDEX tasks_search_unfilled_idx ON tasks (id) WHERE search_title IS NULL;
