-- JWT assertions already used (private_key_jwt client assertions and jwt-bearer grants), by
-- sha256 hex of "<kind>\0<issuer>\0<jti>", kept until the assertion's `exp` so a replay
-- within its lifetime is refused; after that the assertion is dead anyway.
CREATE TABLE used_assertion_jtis (
    signature  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
