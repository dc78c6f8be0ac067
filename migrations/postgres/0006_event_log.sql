-- The event log: every write appends its events here, in its own transaction, so an event
-- exists exactly when its write committed. Streams resume and instances deliver by reading
-- it; nothing is announced inside a write's transaction any more.
--
-- Ids are per user: each write takes the user's counter row (a row lock held to its
-- commit), so one user's ids increase in commit order with no gap, and a rolled-back write
-- gives its ids back. Reading `id > n` for a user therefore never misses a later commit.
CREATE TABLE task_events (
    user_id    TEXT        NOT NULL,
    id         BIGINT      NOT NULL,
    kind       TEXT        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    task_id    BIGINT      NOT NULL,
    -- The event's data exactly as a stream sends it (the task's JSON, or {"id":n}).
    data       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
-- The retention delete finds old rows by block range: rows arrive in time order, and a
-- BRIN index costs a write almost nothing (a btree would add an index entry to each).
CREATE INDEX task_events_created_idx ON task_events USING brin (created_at);

-- Each user's last event id; never deleted, so ids keep increasing after the retention
-- deleted a user's events.
CREATE TABLE task_event_counters (
    user_id TEXT   PRIMARY KEY,
    last_id BIGINT NOT NULL
);

-- Every id issued before the log existed came from one global sequence. A user's first id
-- is above all of them, so an old Last-Event-ID can only be "unknown" (reset), never alias
-- a new event.
CREATE TABLE task_event_floor (
    id      INT    PRIMARY KEY CHECK (id = 1),
    last_id BIGINT NOT NULL
);
INSERT INTO task_event_floor (id, last_id) SELECT 1, last_value FROM task_event_ids;

DROP TABLE task_event_bodies;
DROP SEQUENCE task_event_ids;
