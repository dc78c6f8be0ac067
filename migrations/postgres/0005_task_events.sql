-- Live task events. Every write draws its event ids from this sequence in the write's own
-- statement and announces them with pg_notify('task_events', …) there too, so an event
-- exists exactly when its write committed, and its id is the same on every instance.
CREATE SEQUENCE task_event_ids;

-- A notification carries at most 8,000 bytes. An event whose task does not fit is stored
-- here (by the same statement) and the notification names it; listeners read it from here.
-- Rows older than the resume window are deleted by the listeners.
CREATE TABLE task_event_bodies (
    event_id   BIGINT PRIMARY KEY,
    body       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX task_event_bodies_created_idx ON task_event_bodies (created_at);
