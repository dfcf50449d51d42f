-- Tokens beyond client_credentials: refresh tokens live in `access_tokens` too (one table, one
-- revocation path, one digest list for filters), told apart by `token_use`.
--   request_id  one token-endpoint answer: its access token and refresh token share it.
--   family_id   every token descended from one authorization code (the code's SHA-256), so a
--               replayed code or a replayed refresh token revokes the whole family.
--   parent_id   the request_id of the refresh token spent to mint this answer ('' if none).
--   consent_id  the consent the tokens were issued under, so revoking a consent revokes them.
--   ext         JSON: the consent's extra access-token claims, for introspection's `ext`.
--   grant_body  JSON of `oauth2::code::Grant` (what refresh and /userinfo need), '' for
--               client_credentials.
--   spent_at    when a refresh token was exchanged (rotation); NULL while unspent.
ALTER TABLE access_tokens ADD COLUMN token_use TEXT NOT NULL DEFAULT 'access_token';
ALTER TABLE access_tokens ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN family_id TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN consent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN ext TEXT NOT NULL DEFAULT '{}';
ALTER TABLE access_tokens ADD COLUMN grant_body TEXT NOT NULL DEFAULT '';
ALTER TABLE access_tokens ADD COLUMN spent_at BIGINT;

CREATE INDEX access_tokens_family_id ON access_tokens (family_id);
CREATE INDEX access_tokens_request_id ON access_tokens (request_id);
CREATE INDEX access_tokens_parent_id ON access_tokens (parent_id);
CREATE INDEX access_tokens_consent_id ON access_tokens (consent_id);
