-- Tasks of every user. Every query filters by user_id first; see the indexes below.
CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT     NOT NULL CHECK (length(user_id) BETWEEN 1 AND 255),
    title       TEXT     NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description TEXT              CHECK (description IS NULL OR length(description) <= 1000),
    completed   BOOLEAN  NOT NULL DEFAULT FALSE,
    -- 1 = low, 2 = medium, 3 = high: sorts in the contract's order.
    priority    SMALLINT NOT NULL DEFAULT 2 CHECK (priority BETWEEN 1 AND 3),
    category    TEXT              CHECK (category IS NULL OR length(category) BETWEEN 1 AND 100),
    due_at      DATETIME,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL,
    -- Bumped by every change: the ETag, which must differ even within one clock tick.
    version     INTEGER  NOT NULL DEFAULT 1
);

-- The default list: one user's tasks, newest first, ties by id.
CREATE INDEX tasks_user_created_idx ON tasks (user_id, created_at DESC, id DESC);
-- The completed / pending filter with the default order.
CREATE INDEX tasks_user_completed_created_idx ON tasks (user_id, completed, created_at DESC, id DESC);
