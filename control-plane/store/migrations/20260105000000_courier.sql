-- The courier's durable e-mail queue (Kratos's `courier_messages`). Portable across SQLite and
-- PostgreSQL: TEXT and BIGINT only, JSON as TEXT, timestamps as unix seconds.

CREATE TABLE courier_messages (
    id              TEXT PRIMARY KEY,
    -- `email` (the only channel so far).
    type            TEXT NOT NULL,
    -- queued | processing | sent | abandoned
    status          TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    -- The one-time code in it is replaced by `******` once the message is sent or abandoned.
    body            TEXT NOT NULL,
    template_type   TEXT NOT NULL,
    -- The code to redact from `body`; NULL once redacted (or when there is none).
    secret          TEXT,
    -- Delivery attempts so far.
    send_count      BIGINT NOT NULL,
    last_error      TEXT,
    -- A queued message is not tried before this (retry backoff), so one failing message never
    -- holds up the others.
    next_attempt_at BIGINT NOT NULL,
    -- One JSON object per attempt: `{id, status, error, created_at}`.
    dispatches      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- For `processing` rows, when the claim was made: a claim older than any send can take
    -- belongs to a worker that died and is put back in the queue.
    updated_at      BIGINT NOT NULL
);

CREATE INDEX courier_messages_status ON courier_messages (status, created_at);
CREATE INDEX courier_messages_recipient ON courier_messages (recipient);
