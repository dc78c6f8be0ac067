-- Writes pay for every index a changed row touches, and an update that changes any indexed
-- column is never HOT (heap-only: no index entry written at all). Toggling `completed`
-- changes `completed`, `updated_at` and `version`, so the two indexes that hold `completed`
-- or `updated_at` made every toggle, and every edit, write an entry into each of the nine
-- indexes. They go: a toggle is now HOT and writes no index entry.
--
-- What they served is still read through the user's other indexes, in order where the
-- order is `created_at`: `completed=` filters walk (user_id, created_at DESC, id DESC) and
-- skip the rows of the other state; `sort=updated_at` and the dashboard's recently
-- completed list sort the user's rows (a top-N sort of a few hundred rows costs less than
-- the index did on every write; at 10,000 tasks it costs a few milliseconds: see README,
-- "Performance").
DROP INDEX tasks_user_completed_created_idx;
DROP INDEX tasks_user_updated_idx;
-- Room on each page for the new version of an updated row, so updates stay HOT (the
-- default, 100, leaves none until a page is pruned).
ALTER TABLE tasks SET (fillfactor = 85);
