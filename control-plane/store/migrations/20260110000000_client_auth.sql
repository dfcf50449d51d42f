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

-- RFC 7523 jwt-bearer grant trust relationships (`/admin/trust/grants/jwt-bearer/issuers`):
-- assertions from `issuer` about `subject` (or any subject when allow_any_subject = 1),
-- signed with the public key `jwk`, may obtain tokens with scopes out of `scope` until
-- `expires_at`. `scope` and `jwk` are JSON; only public keys are stored.
CREATE TABLE jwt_bearer_trusts (
    id                TEXT PRIMARY KEY,
    issuer            TEXT NOT NULL,
    subject           TEXT NOT NULL,
    allow_any_subject BIGINT NOT NULL,
    scope             TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    jwk               TEXT NOT NULL,
    expires_at        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX jwt_bearer_trusts_issuer_subject_key ON jwt_bearer_trusts (issuer, subject, key_id);
