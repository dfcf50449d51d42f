-- JWT assertions already used (private_key_jwt client assertions and jwt-bearer grants), by
-- sha256 hex of "<kind>\0<issuer>\0<jti>", kept until the assertion's `exp` so a replay
-- within its lifetime is refused; after that the assertion is dead anyway.
CREATE TABLE used_assertion_jtis (
    signature  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- Secrets a client had before `POST /admin/clients/{id}/secrets/rotate`, still accepted so
-- deployments can switch over without downtime. `hashes` is a JSON array of at-rest secret
-- hashes (same forms as clients.secret_hash), newest first, at most five.
CREATE TABLE client_rotated_secrets (
    client_id  TEXT PRIMARY KEY,
    hashes     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
