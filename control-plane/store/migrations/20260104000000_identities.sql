-- Identities, their credentials, sessions and self-service flows (Kratos's data model).
-- Portable across SQLite and PostgreSQL: TEXT and BIGINT only, JSON as TEXT, unix seconds.

CREATE TABLE identities (
    id               TEXT PRIMARY KEY,
    schema_id        TEXT NOT NULL,
    -- `traits`, `metadata_public`, `metadata_admin`, addresses, `external_id` as one JSON object.
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    state_changed_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX identities_created ON identities (created_at, id);

-- One row per credential type an identity has (`password`, `code`, `passkey`). `config` holds
-- only hashes and public keys: an argon2id PHC string, passkey public credentials.
CREATE TABLE identity_credentials (
    identity_id TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    config      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (identity_id, type)
);

-- The identifiers a credential answers to (an e-mail address, a passkey user handle), unique
-- per credential type as Kratos requires; lower-cased where the schema says e-mail.
CREATE TABLE identity_identifiers (
    type        TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    identity_id TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    PRIMARY KEY (type, identifier)
);

CREATE INDEX identity_identifiers_identity ON identity_identifiers (identity_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    -- sha256 hex of the session token; the token is never stored.
    token_hash       TEXT NOT NULL UNIQUE,
    identity_id      TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    active           BIGINT NOT NULL,
    aal              TEXT NOT NULL,
    -- authentication_methods and devices as JSON arrays.
    methods          TEXT NOT NULL,
    devices          TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    authenticated_at BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);

CREATE INDEX sessions_identity ON sessions (identity_id, issued_at);

-- Self-service flows (login, registration, settings, recovery, verification). `body` is the
-- server-side flow state as JSON: method progress, hashed one-time codes, WebAuthn ceremony
-- state, messages. `version` makes every update a compare-and-swap, so a code is consumed once.
CREATE TABLE selfservice_flows (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX selfservice_flows_expiry ON selfservice_flows (expires_at);

-- Failed sign-in attempts per identifier and per client address, for rate limiting that holds
-- across restarts and replicas. `bucket` is e.g. `id:alice@example.com` or `ip:203.0.113.7`.
CREATE TABLE login_attempts (
    bucket       TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
