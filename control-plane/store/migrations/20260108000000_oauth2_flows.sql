-- The authorization endpoint's browser flows (login, then consent), OAuth2 login sessions and
-- granted consents. Challenges, verifiers, CSRF values and session cookies are short random
-- strings stored only as SHA-256 hex digests (Hydra 2.2 encrypts the whole flow into ~1 kB
-- challenges instead). `stage` moves forward with conditional UPDATEs, so a verifier or a
-- challenge can be used exactly once. JSON is TEXT; times are unix seconds.
CREATE TABLE oauth2_flows (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    stage             TEXT NOT NULL,
    login_challenge   TEXT NOT NULL,
    login_verifier    TEXT,
    consent_challenge TEXT,
    consent_verifier  TEXT,
    csrf              TEXT NOT NULL,
    body              TEXT NOT NULL,
    requested_at      BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL
);

CREATE UNIQUE INDEX oauth2_flows_login_challenge ON oauth2_flows (login_challenge);
CREATE INDEX oauth2_flows_login_verifier ON oauth2_flows (login_verifier);
CREATE INDEX oauth2_flows_consent_challenge ON oauth2_flows (consent_challenge);
CREATE INDEX oauth2_flows_consent_verifier ON oauth2_flows (consent_verifier);
CREATE INDEX oauth2_flows_expiry ON oauth2_flows (expires_at);

-- A browser's OAuth2 login session (Hydra's authentication session): `id` is the `sid`.
-- `token_hash` is the digest of the cookie's value; empty when the login was not remembered.
CREATE TABLE oauth2_login_sessions (
    id                            TEXT PRIMARY KEY,
    token_hash                    TEXT NOT NULL,
    subject                       TEXT NOT NULL,
    remember                      BIGINT NOT NULL,
    authenticated_at              BIGINT NOT NULL,
    expires_at                    BIGINT NOT NULL,
    identity_provider_session_id  TEXT NOT NULL,
    body                          TEXT NOT NULL
);

CREATE INDEX oauth2_login_sessions_token ON oauth2_login_sessions (token_hash);
CREATE INDEX oauth2_login_sessions_subject ON oauth2_login_sessions (subject);

-- Granted consents (`oAuth2ConsentSession`); `id` is the consent request id that tokens
-- carry as `Grant.consent_id`. `expires_at` 0: remembered forever.
CREATE TABLE oauth2_consents (
    id                TEXT PRIMARY KEY,
    subject           TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    login_session_id  TEXT NOT NULL,
    remember          BIGINT NOT NULL,
    handled_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    body              TEXT NOT NULL
);

CREATE INDEX oauth2_consents_subject ON oauth2_consents (subject, client_id);

-- RP-initiated logout requests (Hydra's logout challenge), keyed by the challenge's digest.
CREATE TABLE oauth2_logout_requests (
    challenge     TEXT PRIMARY KEY,
    verifier      TEXT,
    stage         TEXT NOT NULL,
    body          TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE INDEX oauth2_logout_requests_verifier ON oauth2_logout_requests (verifier);
