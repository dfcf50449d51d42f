//! The `access_tokens` table, keyed by the SHA-256 of the token: access tokens (opaque and
//! JWT) and refresh tokens, told apart by `token_use`. Expiry is the caller's decision (it owns
//! the clock); this module stores, finds, spends and revokes rows. Revoking an access token
//! deletes it and remembers its digest in `revoked_tokens` until it would have expired, so
//! filters can refuse it; a revoked refresh token is simply gone.

use sqlx::Row;
use sqlx::any::AnyRow;

pub use portcullis_model::token::TokenUse;

use super::Store;
use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// sha256 hex of the token.
    pub signature: String,
    pub client_id: String,
    pub subject: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// The audiences granted (stored as a JSON array).
    pub audience: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub token_use: TokenUse,
    /// One token-endpoint answer: its access and refresh token share it.
    pub request_id: String,
    /// Every token descended from one authorization code; `''` for client_credentials.
    pub family_id: String,
    /// The `request_id` of the refresh token spent to mint this one; `''` if none.
    pub parent_id: String,
    pub consent_id: String,
    /// JSON object: extra access-token claims.
    pub ext: String,
    /// JSON of `oauth2::code::Grant`, `''` when the token came from no user grant.
    pub grant_body: String,
    /// When a refresh token was exchanged.
    pub spent_at: Option<i64>,
}

impl Default for TokenRow {
    fn default() -> Self {
        Self {
            signature: String::new(),
            client_id: String::new(),
            subject: String::new(),
            scope: String::new(),
            audience: Vec::new(),
            issued_at: 0,
            expires_at: 0,
            token_use: TokenUse::AccessToken,
            request_id: String::new(),
            family_id: String::new(),
            parent_id: String::new(),
            consent_id: String::new(),
            ext: "{}".into(),
            grant_body: String::new(),
            spent_at: None,
        }
    }
}

const COLUMNS: &str = "signature, client_id, subject, scope, audience, issued_at, expires_at, token_use, \
                       request_id, family_id, parent_id, consent_id, ext, grant_body, spent_at";

fn decode(row: &AnyRow) -> Result<TokenRow, StoreError> {
    let audience: String = row.try_get(4)?;
    let token_use: String = row.try_get(7)?;
    Ok(TokenRow {
        signature: row.try_get(0)?,
        client_id: row.try_get(1)?,
        subject: row.try_get(2)?,
        scope: row.try_get(3)?,
        audience: serde_json::from_str(&audience).map_err(|e| StoreError::corrupt("access_tokens.audience", e))?,
        issued_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        token_use: TokenUse::parse(&token_use).ok_or_else(|| {
            StoreError::corrupt("access_tokens.token_use", format!("unknown token use {token_use:?}"))
        })?,
        request_id: row.try_get(8)?,
        family_id: row.try_get(9)?,
        parent_id: row.try_get(10)?,
        consent_id: row.try_get(11)?,
        ext: row.try_get(12)?,
        grant_body: row.try_get(13)?,
        spent_at: row.try_get(14)?,
    })
}

/// Which tokens a bulk revocation selects. Each is a fixed condition, so the SQL stays static.
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    /// All tokens of one authorization grant (a code and every refresh descended from it).
    Family(&'a str),
    /// The access and refresh token of one token-endpoint answer.
    Request(&'a str),
    /// Only the access token of one answer (a refresh replaces it, the spent refresh token stays
    /// for reuse detection).
    AccessTokenOf(&'a str),
    /// The answers minted by spending the refresh token of request `.0`.
    ChildrenOf(&'a str),
    /// Everything issued under one consent.
    Consent(&'a str),
    /// Everything issued to one client.
    Client(&'a str),
}

impl Selector<'_> {
    /// The WHERE clause (binding `$1`) and its value.
    fn condition(&self) -> (&'static str, &str) {
        match *self {
            Selector::Family(v) => ("family_id = $1", v),
            Selector::Request(v) => ("request_id = $1", v),
            Selector::AccessTokenOf(v) => ("request_id = $1 AND token_use = 'access_token'", v),
            Selector::ChildrenOf(v) => ("parent_id = $1", v),
            Selector::Consent(v) => ("consent_id = $1", v),
            Selector::Client(v) => ("client_id = $1", v),
        }
    }
}

impl Store {
    pub async fn insert_token(&self, t: &TokenRow) -> Result<(), StoreError> {
        self.insert_tokens(std::slice::from_ref(t)).await
    }

    /// Inserts the tokens of one answer together: a client never holds an access token whose
    /// refresh token was not stored, or the reverse.
    pub async fn insert_tokens(&self, tokens: &[TokenRow]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for t in tokens {
            let audience =
                serde_json::to_string(&t.audience).map_err(|e| StoreError::corrupt("access_tokens.audience", e))?;
            sqlx::query(&format!(
                "INSERT INTO access_tokens ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(&t.signature)
            .bind(&t.client_id)
            .bind(&t.subject)
            .bind(&t.scope)
            .bind(audience)
            .bind(t.issued_at)
            .bind(t.expires_at)
            .bind(t.token_use.as_str())
            .bind(&t.request_id)
            .bind(&t.family_id)
            .bind(&t.parent_id)
            .bind(&t.consent_id)
            .bind(&t.ext)
            .bind(&t.grant_body)
            .bind(t.spent_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_token(&self, signature: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM access_tokens WHERE signature = $1"))
            .bind(signature)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Marks an unspent refresh token spent at `now`: the compare-and-swap that makes rotation
    /// safe — of two concurrent exchanges exactly one sees `true`.
    pub async fn spend_refresh_token(&self, signature: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE access_tokens SET spent_at = $2 \
             WHERE signature = $1 AND token_use = 'refresh_token' AND spent_at IS NULL",
        )
        .bind(signature)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Drops tokens (and revocation records) that expired before `now`; returns how many tokens.
    pub async fn purge_expired_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(now).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    /// Revokes one token: it is deleted, and an access token's digest is remembered until it
    /// would have expired so filters can refuse it.
    pub async fn revoke_token(&self, row: &TokenRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        if row.token_use == TokenUse::AccessToken {
            sqlx::query("INSERT INTO revoked_tokens (signature, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&row.signature)
                .bind(row.expires_at)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM access_tokens WHERE signature = $1").bind(&row.signature).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes every token `which` selects (an empty key selects nothing); returns how many.
    pub async fn revoke_tokens(&self, which: Selector<'_>) -> Result<u64, StoreError> {
        let (condition, value) = which.condition();
        if value.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO revoked_tokens (signature, expires_at) \
             SELECT signature, expires_at FROM access_tokens WHERE {condition} AND token_use = 'access_token' \
             ON CONFLICT DO NOTHING"
        ))
        .bind(value)
        .execute(&mut *tx)
        .await?;
        let done =
            sqlx::query(&format!("DELETE FROM access_tokens WHERE {condition}")).bind(value).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Revokes every token of a client; returns how many.
    pub async fn revoke_client_tokens(&self, client_id: &str) -> Result<u64, StoreError> {
        self.revoke_tokens(Selector::Client(client_id)).await
    }

    /// Digests of revoked tokens that have not expired yet, sorted (so snapshots are stable).
    pub async fn revoked_tokens(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT signature FROM revoked_tokens WHERE expires_at > $1 ORDER BY signature")
            .bind(now)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(StoreError::from)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[tokio::test]
    async fn insert_lookup_and_purge() {
        for (backend, store) in testing::all().await {
            let token = portcullis_model::crypto::generate_access_token();
            let row = TokenRow {
                signature: portcullis_model::crypto::token_signature(&token),
                client_id: "c".into(),
                subject: "c".into(),
                scope: "read write".into(),
                audience: vec!["https://api".into()],
                issued_at: 100,
                expires_at: 200,
                ..TokenRow::default()
            };
            store.insert_token(&row).await.unwrap();
            assert_eq!(store.get_token(&row.signature).await.unwrap(), Some(row.clone()), "{backend}");
            assert!(store.get_token(&token).await.unwrap().is_none(), "looked up by hash only");
            assert_eq!(store.purge_expired_tokens(200).await.unwrap(), 0);
            assert_eq!(store.purge_expired_tokens(201).await.unwrap(), 1);
            assert!(store.get_token(&row.signature).await.unwrap().is_none());
            let live = TokenRow { signature: "f".repeat(64), expires_at: 500, ..row.clone() };
            store.insert_token(&live).await.unwrap();
            store.revoke_token(&live).await.unwrap();
            assert!(store.get_token(&live.signature).await.unwrap().is_none(), "a revoked token is gone");
            assert_eq!(store.revoked_tokens(400).await.unwrap(), std::slice::from_ref(&live.signature), "{backend}");
            assert!(store.revoked_tokens(500).await.unwrap().is_empty(), "remembered only until it expires");
            let other = TokenRow { signature: "e".repeat(64), client_id: "d".into(), ..live.clone() };
            store.insert_token(&other).await.unwrap();
            assert_eq!(store.revoke_client_tokens("d").await.unwrap(), 1);
            assert_eq!(store.revoked_tokens(0).await.unwrap().len(), 2);
            // Store errors are errors, not "no such token".
            store.close().await;
            assert!(store.get_token(&row.signature).await.is_err(), "{backend}");
        }
    }

    #[tokio::test]
    async fn a_row_that_does_not_decode_is_corrupt_and_names_its_column_not_absent() {
        for (backend, store) in testing::all().await {
            for (signature, audience, token_use, column) in [
                ("1", "[]", "id_token", "access_tokens.token_use"),
                ("2", "not json", "access_token", "access_tokens.audience"),
            ] {
                let signature = signature.repeat(64);
                sqlx::query(&format!(
                    "INSERT INTO access_tokens ({COLUMNS}) \
                     VALUES ($1, 'c', 's', '', $2, 1, 2, $3, 'r', '', '', '', '{{}}', '', NULL)"
                ))
                .bind(&signature)
                .bind(audience)
                .bind(token_use)
                .execute(store.pool())
                .await
                .unwrap();
                match store.get_token(&signature).await {
                    Err(StoreError::Corrupt { column: c, .. }) => assert_eq!(c, column, "{backend}"),
                    other => panic!("{backend}: {other:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn refresh_tokens_spend_once_and_families_revoke_together() {
        for (backend, store) in testing::all().await {
            let row = |sig: &str, token_use: TokenUse, request: &str, parent: &str| TokenRow {
                signature: sig.repeat(64),
                client_id: "web".into(),
                subject: "user".into(),
                issued_at: 10,
                expires_at: 1000,
                token_use,
                request_id: request.into(),
                family_id: "fam".into(),
                parent_id: parent.into(),
                consent_id: "consent".into(),
                grant_body: "{}".into(),
                ..TokenRow::default()
            };
            let (access, refresh) = (TokenUse::AccessToken, TokenUse::RefreshToken);
            let (at1, rt1) = (row("a", access, "r1", ""), row("b", refresh, "r1", ""));
            let (at2, rt2) = (row("c", access, "r2", "r1"), row("d", refresh, "r2", "r1"));
            store.insert_tokens(&[at1.clone(), rt1.clone()]).await.unwrap();
            store.insert_tokens(&[at2.clone(), rt2.clone()]).await.unwrap();
            assert_eq!(store.get_token(&rt1.signature).await.unwrap(), Some(rt1.clone()), "{backend}");

            assert!(!store.spend_refresh_token(&at1.signature, 20).await.unwrap(), "access tokens are not spent");
            assert!(store.spend_refresh_token(&rt1.signature, 20).await.unwrap(), "{backend}");
            assert!(!store.spend_refresh_token(&rt1.signature, 21).await.unwrap(), "only once");
            assert_eq!(store.get_token(&rt1.signature).await.unwrap().unwrap().spent_at, Some(20));

            assert_eq!(store.revoke_tokens(Selector::AccessTokenOf("r1")).await.unwrap(), 1, "{backend}");
            assert!(store.get_token(&at1.signature).await.unwrap().is_none());
            assert!(store.get_token(&rt1.signature).await.unwrap().is_some(), "the refresh token stays");
            assert_eq!(store.revoke_tokens(Selector::ChildrenOf("r1")).await.unwrap(), 2, "{backend}");
            assert!(store.get_token(&at2.signature).await.unwrap().is_none());
            assert_eq!(store.revoked_tokens(0).await.unwrap().len(), 2, "only access tokens' digests");
            assert_eq!(store.revoke_tokens(Selector::Family("")).await.unwrap(), 0, "an empty key selects nothing");
            assert_eq!(store.revoke_tokens(Selector::Family("fam")).await.unwrap(), 1, "{backend}");
            assert!(store.get_token(&rt1.signature).await.unwrap().is_none(), "a spent refresh token goes too");
            assert_eq!(store.revoked_tokens(0).await.unwrap().len(), 2);

            store.insert_tokens(&[at1.clone(), rt1.clone()]).await.unwrap();
            assert_eq!(store.revoke_tokens(Selector::Consent("consent")).await.unwrap(), 2, "{backend}");
            store.insert_tokens(&[at1.clone(), rt1.clone()]).await.unwrap();
            assert_eq!(store.revoke_tokens(Selector::Request("r1")).await.unwrap(), 2, "{backend}");
            // One answer is stored whole or not at all.
            store.insert_token(&at1).await.unwrap();
            assert!(store.insert_tokens(&[rt1.clone(), at1.clone()]).await.is_err(), "duplicate signature");
            assert!(store.get_token(&rt1.signature).await.unwrap().is_none(), "{backend}: rolled back");
        }
    }
}
