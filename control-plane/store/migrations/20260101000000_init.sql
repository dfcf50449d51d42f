-- One portable schema for SQLite and PostgreSQL: TEXT and BIGINT only, hashes as hex TEXT,
-- JSON as TEXT, timestamps as unix seconds.

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    -- `sha256$<hex>` for generated secrets, an argon2id PHC string for operator-chosen ones,
    -- NULL for public clients (`token_endpoint_auth_method: none`).
    secret_hash TEXT,
    -- Copies of two body fields so the list endpoint can filter without JSON functions.
    client_name TEXT NOT NULL,
    owner       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE access_tokens (
    -- sha256 hex of the token; the token itself is never stored.
    signature  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    audience   TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX access_tokens_client_id ON access_tokens (client_id);

CREATE TABLE rule_set (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL,
    body    TEXT NOT NULL
);

INSERT INTO rule_set (id, version, body) VALUES (1, 0, '[]');
