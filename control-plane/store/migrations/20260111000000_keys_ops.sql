-- Clients reconciled from `oauth2.clients_file` (Hydra Maester `OAuth2Client` resources): which
-- resource owns which client, kept in the database so a resource removed while the server was
-- down is still cleaned up at the next start, and with the resource's deletion policy, since
-- the policy must be known after the resource is gone.
CREATE TABLE managed_clients (
    -- "<name>/<namespace>", as the client's `owner`.
    owner           TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    -- "delete" or "orphan".
    deletion_policy TEXT NOT NULL,
    -- The credentials file the reconciler wrote (removed with the client), or '' when the
    -- operator supplied it or none was written.
    secret_file     TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);
