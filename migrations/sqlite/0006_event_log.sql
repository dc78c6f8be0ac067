-- The event log: every write appends its events here, in its own transaction, so an event
-- exists exactly when its write committed. Streams resume by reading it, after any restart.
--
-- Ids are per user, taken in the write's transaction: one writer appends, so a user's next
-- id is one above the log's highest for that user (the retention keeps each user's newest
-- event), and one user's ids increase in commit order with no gap.
CREATE TABLE task_events (
    user_id    TEXT    NOT NULL,
    id         INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    task_id    INTEGER NOT NULL,
    -- The event's data exactly as a stream sends it (the task's JSON, or {"id":n}).
    data       TEXT    NOT NULL,
    -- UTC text that orders as text (to the second): the write's own time, or this default.
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, id)
);
-- No index on created_at: one writer appends, so rowid order is time order, and the
-- retention delete looks at the oldest rows by rowid.

-- Every id issued before the log existed came from one global counter (drawn ahead in
-- blocks). A user's first id is above all of them, so an old Last-Event-ID can only be
-- "unknown" (reset), never alias a new event.
CREATE TABLE task_event_floor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO task_event_floor (id, last_id) SELECT 1, last_id FROM task_event_seq;

DROP TABLE task_event_seq;
