-- Live task events. SQLite has one writer, so the event bus is in-process; its event ids
-- still come from the database (drawn in the write's own transaction), so they survive a
-- restart and never repeat.
CREATE TABLE task_event_seq (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO task_event_seq (id, last_id) VALUES (1, 0);
