-- Tokens revoked before they expired, by sha256 hex. Filters receive these digests in every
-- snapshot until `expires_at`, so a revoked token stops working even where an introspection
-- answer is still cached.
CREATE TABLE revoked_tokens (
    signature  TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
