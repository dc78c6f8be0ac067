-- The columns' checks move from the tables onto domains. PostgreSQL re-reads a table's
-- CHECK expressions from the catalog text for every statement that writes a row (five on
-- tasks, so every toggle paid for all five), while a domain's checks are read once per
-- connection and run only for the columns a statement assigns. Same rules, same refusal
-- (23514, naming the domain and so the column).
--
-- No table rewrite: the domains are created without their checks, so changing a column's
-- type is a catalog change (same base type, same index operator classes), and every index
-- keeps its storage but the due-date index, whose expression PostgreSQL re-plans and so
-- rebuilds (about 1.4 s per million tasks on a small machine, with the table locked). The
-- checks are then added NOT VALID, which skips a scan of rows that the table's own checks
-- held to the same rules until this migration dropped them, in this same transaction.
-- Every value written from now on is checked.
CREATE DOMAIN task_user_id AS TEXT;
CREATE DOMAIN task_title AS TEXT;
CREATE DOMAIN task_description AS TEXT;
CREATE DOMAIN task_priority AS SMALLINT;
CREATE DOMAIN task_category AS TEXT;
CREATE DOMAIN task_event_kind AS TEXT;

ALTER TABLE tasks
    DROP CONSTRAINT tasks_user_id_check,
    DROP CONSTRAINT tasks_title_check,
    DROP CONSTRAINT tasks_description_check,
    DROP CONSTRAINT tasks_priority_check,
    DROP CONSTRAINT tasks_category_check,
    ALTER COLUMN user_id TYPE task_user_id,
    ALTER COLUMN title TYPE task_title,
    ALTER COLUMN description TYPE task_description,
    ALTER COLUMN priority TYPE task_priority,
    ALTER COLUMN category TYPE task_category;
ALTER TABLE task_events
    DROP CONSTRAINT task_events_kind_check,
    ALTER COLUMN kind TYPE task_event_kind;

ALTER DOMAIN task_user_id ADD CONSTRAINT task_user_id_length
    CHECK (char_length(VALUE) BETWEEN 1 AND 255) NOT VALID;
ALTER DOMAIN task_title ADD CONSTRAINT task_title_length
    CHECK (char_length(VALUE) BETWEEN 1 AND 200) NOT VALID;
ALTER DOMAIN task_description ADD CONSTRAINT task_description_length
    CHECK (char_length(VALUE) <= 1000) NOT VALID;
-- 1 = low, 2 = medium, 3 = high.
ALTER DOMAIN task_priority ADD CONSTRAINT task_priority_rank
    CHECK (VALUE BETWEEN 1 AND 3) NOT VALID;
ALTER DOMAIN task_category ADD CONSTRAINT task_category_length
    CHECK (char_length(VALUE) BETWEEN 1 AND 100) NOT VALID;
ALTER DOMAIN task_event_kind ADD CONSTRAINT task_event_kind_known
    CHECK (VALUE IN ('created', 'updated', 'deleted')) NOT VALID;
