//! Router tests of the `refresh_token` grant (rotation, reuse detection, the grace period);
//! the grant is [`portcullis_oauth2::refresh`].

pub(crate) mod tests {
    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use crate::testing::{Harness, PKCE_VERIFIER, T0, WEB_REDIRECT, user_grant};

    /// A client `web` and the first answer of a code grant with `scope`.
    pub(crate) async fn first(h: &Harness, scope: &str) -> Value {
        h.web_client(json!({})).await;
        let code = h.code(&user_grant(scope)).await;
        let reply = h
            .web_token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        reply.json()
    }

    async fn refresh(h: &Harness, rt: &Value, scope: Option<&str>) -> crate::testing::Reply {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", rt.as_str().unwrap())];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        h.web_token(&pairs).await
    }

    async fn active(h: &Harness, token: &Value) -> bool {
        let info = h.form(true, "/admin/oauth2/introspect", &[("token", token.as_str().unwrap())], &[]).await.json();
        info["active"] == true
    }

    #[tokio::test]
    async fn each_refresh_rotates_the_pair_and_retires_the_old_access_token() {
        let h = Harness::new().await;
        let one = first(&h, "openid offline_access read").await;
        h.clock.advance(60);
        let reply = refresh(&h, &one["refresh_token"], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.header("cache-control"), "no-store");
        let two = reply.json();
        assert_ne!(two["refresh_token"], one["refresh_token"], "rotated");
        assert_eq!(two["scope"], "openid offline_access read");
        assert!(!active(&h, &one["access_token"]).await, "the old access token is retired");
        assert!(!active(&h, &one["refresh_token"]).await, "a spent refresh token is not active");
        assert!(active(&h, &two["access_token"]).await && active(&h, &two["refresh_token"]).await);

        let id = h.verified_claims(two["id_token"].as_str().unwrap()).await;
        assert_eq!(id["auth_time"], T0 - 60, "the original authentication time");
        assert_eq!(id["iat"], T0 + 60);
        assert!(id.get("nonce").is_none(), "OIDC Core 12.2: no nonce on refresh");
        assert_eq!(id["sub"], "user-1");
    }

    #[tokio::test]
    async fn scope_may_narrow_but_never_widen() {
        let h = Harness::new().await;
        let one = first(&h, "openid offline_access read").await;
        let wide = refresh(&h, &one["refresh_token"], Some("read write")).await;
        assert_eq!(wide.status, StatusCode::BAD_REQUEST);
        assert_eq!(wide.json()["error"], "invalid_scope");
        assert!(wide.json()["error_description"].as_str().unwrap().contains("'write'"));
        assert!(active(&h, &one["refresh_token"]).await, "a refused refresh spends nothing");

        let narrow = refresh(&h, &one["refresh_token"], Some("read")).await.json();
        assert_eq!(narrow["scope"], "read");
        assert!(narrow.get("id_token").is_none(), "no openid in the narrowed scope");
        // The new refresh token still carries the whole grant.
        let again = refresh(&h, &narrow["refresh_token"], None).await.json();
        assert_eq!(again["scope"], "openid offline_access read");
    }

    #[tokio::test]
    async fn a_replay_after_the_grace_period_revokes_the_family() {
        let h = Harness::new().await;
        let one = first(&h, "offline_access read").await;
        let two = refresh(&h, &one["refresh_token"], None).await.json();
        let three = refresh(&h, &two["refresh_token"], None).await.json();
        h.clock.advance(11);
        let stolen = refresh(&h, &one["refresh_token"], None).await;
        assert_eq!(stolen.status, StatusCode::BAD_REQUEST);
        assert_eq!(stolen.json()["error"], "invalid_grant");
        assert!(stolen.json()["error_description"].as_str().unwrap().contains("already been used"));
        for t in [&three["access_token"], &three["refresh_token"]] {
            assert!(!active(&h, t).await, "every descendant is revoked: {t}");
        }
        // Revocations close together are published together, within the debounce.
        tokio::time::sleep(2 * crate::rules::revocations::PUBLISH_DEBOUNCE).await;
        let snapshot: Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
        let digest = crate::crypto::token_signature(three["access_token"].as_str().unwrap());
        assert!(snapshot["revoked"].as_array().unwrap().contains(&json!(digest)), "filters learn");
        assert_eq!(refresh(&h, &three["refresh_token"], None).await.json()["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn a_retry_within_the_grace_period_is_not_a_logout() {
        let h = Harness::new().await;
        let one = first(&h, "offline_access read").await;
        let lost = refresh(&h, &one["refresh_token"], None).await.json();
        h.clock.advance(10);
        let retry = refresh(&h, &one["refresh_token"], None).await;
        assert_eq!(retry.status, StatusCode::OK, "{}", retry.json());
        let retry = retry.json();
        assert!(active(&h, &retry["access_token"]).await && active(&h, &retry["refresh_token"]).await);
        assert!(!active(&h, &lost["refresh_token"]).await, "the lost answer is revoked, not left usable");
        assert!(!active(&h, &lost["access_token"]).await);
        assert_eq!(refresh(&h, &retry["refresh_token"], None).await.status, StatusCode::OK, "the family lives on");
    }

    #[tokio::test]
    async fn the_grace_period_is_configurable_down_to_strict_rotation() {
        let mut config = crate::config::Config::default();
        config.oauth2.grant.refresh_token.rotation_grace_period = std::time::Duration::ZERO;
        let h = Harness::with_config(config).await;
        let one = first(&h, "offline_access").await;
        let two = refresh(&h, &one["refresh_token"], None).await.json();
        assert_eq!(refresh(&h, &one["refresh_token"], None).await.json()["error"], "invalid_grant", "same second");
        assert!(!active(&h, &two["refresh_token"]).await, "strict: any replay revokes the family");
    }

    #[tokio::test]
    async fn wrong_client_wrong_kind_and_expiry_are_invalid_grant() {
        let h = Harness::new().await;
        let one = first(&h, "offline_access read").await;
        h.client(json!({"client_id": "other", "client_secret": "other-secret", "token_endpoint_auth_method": "client_secret_post", "grant_types": ["refresh_token"]})).await;
        let rt = one["refresh_token"].as_str().unwrap();
        let stolen = h
            .form(
                false,
                "/oauth2/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt),
                    ("client_id", "other"),
                    ("client_secret", "other-secret"),
                ],
                &[],
            )
            .await;
        assert_eq!(stolen.json()["error"], "invalid_grant");
        assert!(active(&h, &one["refresh_token"]).await, "another client's attempt spends nothing");
        assert_eq!(refresh(&h, &one["access_token"], None).await.json()["error"], "invalid_grant", "an access token");
        assert_eq!(h.web_token(&[("grant_type", "refresh_token")]).await.json()["error"], "invalid_request");
        h.clock.advance(720 * 3600);
        assert_eq!(refresh(&h, &one["refresh_token"], None).await.json()["error"], "invalid_grant", "expired");
    }

    #[tokio::test]
    async fn revoking_a_refresh_token_revokes_its_grant() {
        let h = Harness::new().await;
        let one = first(&h, "offline_access read").await;
        let two = refresh(&h, &one["refresh_token"], None).await.json();
        let reply = h
            .form(
                false,
                "/oauth2/revoke",
                &[
                    ("token", two["refresh_token"].as_str().unwrap()),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", "web"),
                    ("client_secret", crate::testing::WEB_SECRET),
                ],
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!active(&h, &two["access_token"]).await && !active(&h, &two["refresh_token"]).await);
    }

    #[tokio::test]
    async fn revoking_a_consent_revokes_its_tokens() {
        let h = Harness::new().await;
        let one = first(&h, "offline_access read").await;
        crate::oauth2::flow::revoke_tokens_for_consents(&h.state.oauth2(), &["consent-1".into()]).await.unwrap();
        assert!(!active(&h, &one["access_token"]).await && !active(&h, &one["refresh_token"]).await);
        let snapshot: Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
        assert_eq!(snapshot["revoked"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refresh_lifespans_come_from_the_client() {
        let h = Harness::new().await;
        h.web_client(json!({
            "refresh_token_grant_access_token_lifespan": "10m",
            "authorization_code_grant_refresh_token_lifespan": "1h",
        }))
        .await;
        let code = h.code(&user_grant("offline_access")).await;
        let one = h
            .web_token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
            ])
            .await
            .json();
        let rt = one["refresh_token"].as_str().unwrap();
        let info = h.form(true, "/admin/oauth2/introspect", &[("token", rt)], &[]).await.json();
        assert_eq!(info["exp"], T0 + 3600);
        let two = refresh(&h, &one["refresh_token"], None).await.json();
        assert_eq!(two["expires_in"], 600);
    }
}
