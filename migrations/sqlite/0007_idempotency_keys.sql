-- Idempotency-Key: the first answer to a keyed write, kept 24 hours per user, so a retry
-- with the same key gets it again and writes nothing. `status` is NULL while the first
-- request runs (a repeat then is 409).
CREATE TABLE idempotency_keys (
    user_id     TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    -- SHA-256 of the request (method, path and query, body): the same key with another
    -- request is refused.
    fingerprint TEXT    NOT NULL,
    status      INTEGER,
    location    TEXT,
    etag        TEXT,
    body        TEXT,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
