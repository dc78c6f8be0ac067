-- Title and description folded for search (NFKC, lower case), written by the service on
-- every change; rows older than these columns are filled in at start-up.
ALTER TABLE tasks ADD COLUMN search_title TEXT;
ALTER TABLE tasks ADD COLUMN search_description TEXT;

-- One index per list shape that 0001 does not serve: each starts with user_id, so one
-- user's page never reads another user's rows, and ends with id, the tie-breaker.
CREATE INDEX tasks_user_updated_idx ON tasks (user_id, updated_at DESC, id DESC);
CREATE INDEX tasks_user_title_idx ON tasks (user_id, title, id);
CREATE INDEX tasks_user_priority_idx ON tasks (user_id, priority, id);
CREATE INDEX tasks_user_category_created_idx ON tasks (user_id, category, created_at DESC, id DESC);
-- Due-date sort (no due date last) and the due_before / due_after / overdue ranges.
CREATE INDEX tasks_user_due_idx ON tasks (user_id, (due_at IS NULL), due_at, id);
