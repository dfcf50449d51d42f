-- Authorization codes: what /oauth2/auth hands to /oauth2/token. Keyed by the SHA-256 of the
-- code (the code itself is never stored). `grant` is the JSON of `oauth2::code::Grant`: client,
-- subject, granted scopes and audience, PKCE challenge, nonce, auth_time, acr/amr, sid and the
-- consent's extra claims. `redeemed_at` makes redemption single-use with one UPDATE, so two
-- concurrent redemptions cannot both succeed.
CREATE TABLE authorization_codes (
    signature   TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    grant_body  TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    redeemed_at BIGINT
);

CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);
