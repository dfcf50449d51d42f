-- Keys the control plane signs with (id_token mutators), grouped in sets as Hydra's JWKs are.
-- `private_key` is the PKCS#8 DER encrypted with secrets.system (`v1:<nonce>:<ciphertext>`,
-- AES-256-GCM); it is never stored in clear. Rows are only written when secrets.system is set.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    set_id      TEXT NOT NULL,
    alg         TEXT NOT NULL,
    private_key TEXT NOT NULL,
    -- The public JWK as JSON, so JWKS answers need no decryption.
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- NULL while the key may sign; set when it is rotated out (still published for a while).
    retired_at  BIGINT
);

CREATE INDEX signing_keys_set_id ON signing_keys (set_id);
