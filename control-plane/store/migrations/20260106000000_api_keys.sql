-- Keys for the admin API. Portable across SQLite and PostgreSQL: TEXT and BIGINT only, unix
-- seconds. Keys carry 256 random bits, so a single SHA-256 is the right hash at rest (a slow
-- hash would only slow every admin request); the key itself is shown once and never stored.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    -- sha256 hex of the whole key (`pc_ak_...`); verification is a lookup by this column.
    key_hash     TEXT NOT NULL UNIQUE,
    -- Space-separated scopes: `admin` or `<resource>:read|write`.
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    -- Updated at most once a minute per key, so verification does not write on every request.
    last_used_at BIGINT,
    -- Set when revoked; revoked keys stay listed for the record but never verify.
    revoked_at   BIGINT
);
