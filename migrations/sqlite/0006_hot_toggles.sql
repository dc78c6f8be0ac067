-- Writes pay for every index whose columns they change. Toggling `completed` changes
-- `completed`, `updated_at` and `version`; the two indexes that hold `completed` or
-- `updated_at` made every toggle and every edit rewrite entries in them. They go (as on
-- PostgreSQL, where this makes toggles HOT): `completed=` filters walk the
-- (user_id, created_at DESC, id DESC) index and skip the other state's rows;
-- `sort=updated_at` and the dashboard's recently completed list sort the user's rows.
DROP INDEX tasks_user_completed_created_idx;
DROP INDEX tasks_user_updated_idx;
