-- `external_id` is unique across identities, as in Kratos. A table of its own rather than a row
-- in `identity_identifiers`: it is no credential, and must not match `credentials_identifier`.
-- Identities stored before this migration are indexed the next time they are written.
CREATE TABLE identity_external_ids (
    external_id TEXT PRIMARY KEY,
    identity_id TEXT NOT NULL UNIQUE REFERENCES identities (id) ON DELETE CASCADE
);
