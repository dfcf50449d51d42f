//! `POST /oauth2/token`: extracts the request, runs [`portcullis_oauth2::token::exchange`]
//! (grant dispatch, client authentication, the grants, minting) and writes the answer or the
//! RFC 6749 §5.2 error. No grant logic lives here; the tests drive the router.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use portcullis_oauth2::Params;

use super::OAuthParams;
use super::client_auth::authorization;
use crate::app::AppState;
use crate::error::OAuthError;

pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<Response, OAuthError> {
    let minted =
        portcullis_oauth2::token::exchange(&state.oauth2(), authorization(&headers), &Params(&params.0)).await?;
    Ok(super::token_response(minted))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use crate::testing::{Harness, T0, basic};

    async fn harness() -> (Harness, String) {
        let h = Harness::new().await;
        let c = h
            .client(json!({"client_id": "svc", "grant_types": ["client_credentials"], "scope": "read orders.*", "audience": ["https://api.example/"]}))
            .await;
        (h, c["client_secret"].as_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn basic_auth_issues_a_bearer_token() {
        let (h, secret) = harness().await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "read orders.list"),
                    ("audience", "https://api.example/"),
                ],
                &[("authorization", &basic("svc", &secret))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.header("cache-control"), "no-store");
        assert_eq!(reply.header("pragma"), "no-cache");
        let body = reply.json();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read orders.list");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("pc_at_"));

        let info = h.form(true, "/admin/oauth2/introspect", &[("token", token)], &[]).await.json();
        assert_eq!(info["active"], true);
        assert_eq!(info["client_id"], "svc");
        assert_eq!(info["sub"], "svc");
        assert_eq!(info["aud"], json!(["https://api.example/"]));
        assert_eq!(info["iat"], T0);
        assert_eq!(info["nbf"], T0);
        assert_eq!(info["exp"], T0 + 3600);
        assert_eq!(info["iss"], "http://127.0.0.1:4444/");
        assert_eq!(info["token_type"], "Bearer");
        assert_eq!(info["token_use"], "access_token");

        // At rest: only the hash.
        let sig = crate::crypto::token_signature(token);
        let row = h.state.store.get_token(&sig).await.unwrap().unwrap();
        assert_eq!(row.signature, sig);
        assert_ne!(row.signature, token);
    }

    #[tokio::test]
    async fn wrong_secret_and_unknown_client_are_the_same_401() {
        let (h, _) = harness().await;
        let wrong = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("svc", "nope-nope"))],
            )
            .await;
        let unknown = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("ghost", "nope-nope"))],
            )
            .await;
        for reply in [&wrong, &unknown] {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.header("www-authenticate"), "Basic realm=\"portcullis\"");
            assert_eq!(reply.json()["error"], "invalid_client");
        }
        assert_eq!(wrong.json(), unknown.json());
        let none = h.form(false, "/oauth2/token", &[("grant_type", "client_credentials")], &[]).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn auth_method_must_match_the_registration() {
        let (h, secret) = harness().await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", &secret)],
                &[],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let text = reply.json()["error_description"].as_str().unwrap().to_owned();
        assert!(text.contains("supports client authentication method 'client_secret_basic', but method 'client_secret_post' was requested"), "{text}");

        let both = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("client_id", "svc"), ("client_secret", &secret)],
                &[("authorization", &basic("svc", &secret))],
            )
            .await;
        assert_eq!(both.status, StatusCode::BAD_REQUEST);
        assert_eq!(both.json()["error"], "invalid_request");
    }

    #[tokio::test]
    async fn client_secret_post_and_percent_encoded_basic_credentials() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "p:st@x", "client_secret": "sec ret:+/%", "grant_types": ["client_credentials"]}))
            .await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("p:st@x", "sec ret:+/%"))],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.json()["scope"], "", "no scope requested, none granted");

        h.client(json!({"client_id": "poster", "client_secret": "posted-secret", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})).await;
        h.token("poster", "posted-secret", "").await;
    }

    #[tokio::test]
    async fn grant_scope_audience_and_client_grant_checks() {
        let (h, secret) = harness().await;
        let auth = basic("svc", &secret);
        type Case<'a> = (&'a [(&'a str, &'a str)], StatusCode, &'a str, &'a str);
        let cases: [Case; 6] = [
            (&[], StatusCode::BAD_REQUEST, "invalid_request", "grant_type"),
            (&[("grant_type", "password")], StatusCode::BAD_REQUEST, "unsupported_grant_type", "'password'"),
            (
                &[("grant_type", "client_credentials"), ("scope", "read admin")],
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "'admin'",
            ),
            (&[("grant_type", "client_credentials"), ("scope", "orders")], StatusCode::OK, "", ""),
            (
                &[("grant_type", "client_credentials"), ("audience", "https://evil/")],
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "https://evil/",
            ),
            (
                &[("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than once",
            ),
        ];
        for (params, status, error, mention) in cases {
            let reply = h.form(false, "/oauth2/token", params, &[("authorization", &auth)]).await;
            assert_eq!(reply.status, status, "{params:?}: {}", reply.json());
            if !error.is_empty() {
                assert_eq!(reply.json()["error"], error, "{params:?}");
                assert!(reply.json()["error_description"].as_str().unwrap().contains(mention), "{}", reply.json());
            }
        }

        let c = h.client(json!({"client_id": "web", "grant_types": ["authorization_code"]})).await;
        let reply = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("web", c["client_secret"].as_str().unwrap()))],
            )
            .await;
        assert_eq!(reply.json()["error"], "unauthorized_client");
    }

    #[tokio::test]
    async fn lifespan_from_client_and_expiry_by_the_clock() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "short", "client_secret": "short-lived", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "client_credentials_grant_access_token_lifespan": "1m30s"})).await;
        let token = h.token("short", "short-lived", "").await;
        assert_eq!(token["expires_in"], 90);
        let t = token["access_token"].as_str().unwrap();
        h.clock.advance(89);
        assert_eq!(h.form(true, "/admin/oauth2/introspect", &[("token", t)], &[]).await.json()["active"], true);
        h.clock.advance(1);
        assert_eq!(
            h.form(true, "/admin/oauth2/introspect", &[("token", t)], &[]).await.json(),
            json!({"active": false})
        );
    }

    #[tokio::test]
    async fn public_body_limit_is_64k_and_json() {
        let (h, _) = harness().await;
        let reply = h
            .form(false, "/oauth2/token", &[("grant_type", "client_credentials"), ("pad", &"x".repeat(70 * 1024))], &[])
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["error"], "invalid_request");
    }

    mod authorization_code {
        use axum::http::StatusCode;
        use serde_json::json;

        use crate::testing::{Harness, PKCE_VERIFIER, T0, WEB_REDIRECT, user_grant};

        fn exchange(code: &str) -> Vec<(&str, &str)> {
            vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", PKCE_VERIFIER),
            ]
        }

        #[tokio::test]
        async fn a_code_with_pkce_yields_access_refresh_and_id_tokens() {
            let h = Harness::new().await;
            h.web_client(json!({})).await;
            let mut grant = user_grant("openid offline_access email");
            grant.id_token_claims.insert("tenant".into(), json!("acme"));
            grant.id_token_claims.insert("iss".into(), json!("https://evil/"));
            grant.access_token_claims.insert("roles".into(), json!(["admin"]));
            let code = h.code(&grant).await;
            let reply = h.web_token(&exchange(&code)).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
            assert_eq!(reply.header("cache-control"), "no-store");
            let body = reply.json();
            assert_eq!(body["token_type"], "bearer");
            assert_eq!(body["scope"], "openid offline_access email");
            assert_eq!(body["expires_in"], 3600);
            let at = body["access_token"].as_str().unwrap();
            assert!(at.starts_with("pc_at_"), "opaque by default");
            assert!(body["refresh_token"].as_str().unwrap().starts_with("pc_rt_"));

            let id = h.verified_claims(body["id_token"].as_str().unwrap()).await;
            assert_eq!(id["iss"], "http://127.0.0.1:4444/", "a consent claim cannot override iss");
            assert_eq!(id["sub"], "user-1");
            assert_eq!(id["aud"], json!(["web"]));
            assert_eq!((id["iat"].as_i64(), id["exp"].as_i64()), (Some(T0), Some(T0 + 3600)));
            assert_eq!(id["auth_time"], T0 - 60);
            assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
            assert_eq!(id["at_hash"], crate::oauth2::issue::at_hash(at));
            assert_eq!((&id["acr"], &id["amr"], &id["sid"]), (&json!("0"), &json!(["pwd"]), &json!("sid-1")));
            assert_eq!(id["tenant"], "acme");
            assert!(id["jti"].as_str().is_some_and(|j| !j.is_empty()));

            let info = h.form(true, "/admin/oauth2/introspect", &[("token", at)], &[]).await.json();
            assert_eq!(
                (&info["active"], &info["sub"], &info["client_id"]),
                (&json!(true), &json!("user-1"), &json!("web"))
            );
            assert_eq!(info["ext"], json!({"roles": ["admin"]}));
            let rt = body["refresh_token"].as_str().unwrap();
            let info = h.form(true, "/admin/oauth2/introspect", &[("token", rt)], &[]).await.json();
            assert_eq!((&info["active"], &info["token_use"]), (&json!(true), &json!("refresh_token")));
        }

        #[tokio::test]
        async fn no_openid_no_id_token_and_no_offline_no_refresh_token() {
            let h = Harness::new().await;
            h.web_client(json!({})).await;
            let body = h.web_token(&exchange(&h.code(&user_grant("read")).await)).await.json();
            assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none(), "{body}");
            // offline_access without the refresh_token grant on the client: no refresh token either.
            h.admin_json(axum::http::Method::DELETE, "/admin/clients/web", None).await;
            h.web_client(json!({"grant_types": ["authorization_code"]})).await;
            let body = h.web_token(&exchange(&h.code(&user_grant("openid offline_access")).await)).await.json();
            assert!(body.get("refresh_token").is_none() && body.get("id_token").is_some(), "{body}");
        }

        #[tokio::test]
        async fn wrong_codes_redirects_and_verifiers_are_invalid_grant() {
            let h = Harness::new().await;
            h.web_client(json!({"redirect_uris": [WEB_REDIRECT, "https://app.example/other"]})).await;
            let code = h.code(&user_grant("openid")).await;
            let long = "a".repeat(43);
            type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
            let cases: [Case; 7] = [
                (&[("code", "pc_ac_nope"), ("code_verifier", PKCE_VERIFIER)], "invalid_grant", "invalid, expired"),
                (&[("code_verifier", PKCE_VERIFIER)], "invalid_request", "code"),
                (&[("code", &code), ("code_verifier", PKCE_VERIFIER)], "invalid_grant", "redirect_uri"),
                (
                    &[("code", &code), ("redirect_uri", "https://app.example/other"), ("code_verifier", PKCE_VERIFIER)],
                    "invalid_grant",
                    "does not match",
                ),
                (&[("code", &code), ("redirect_uri", WEB_REDIRECT)], "invalid_grant", "code_verifier is required"),
                (
                    &[("code", &code), ("redirect_uri", WEB_REDIRECT), ("code_verifier", "short")],
                    "invalid_grant",
                    "43 to 128",
                ),
                (
                    &[("code", &code), ("redirect_uri", WEB_REDIRECT), ("code_verifier", &long)],
                    "invalid_grant",
                    "does not match the code_challenge",
                ),
            ];
            for (pairs, error, mention) in cases {
                // Each try spends a fresh code, so every case sees its own failure.
                let fresh = h.code(&user_grant("openid")).await;
                let pairs: Vec<(&str, &str)> = std::iter::once(("grant_type", "authorization_code"))
                    .chain(pairs.iter().map(|&(k, v)| (k, if v == code { fresh.as_str() } else { v })))
                    .collect();
                let reply = h.web_token(&pairs).await;
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{pairs:?}");
                assert_eq!(reply.json()["error"], error, "{pairs:?}");
                let text = reply.json()["error_description"].as_str().unwrap().to_owned();
                assert!(text.contains(mention), "{pairs:?}: {text}");
            }

            let mut plain = user_grant("openid");
            plain.code_challenge = None;
            let no_challenge = h.code(&plain).await;
            let reply = h.web_token(&exchange(&no_challenge)).await;
            assert!(reply.json()["error_description"].as_str().unwrap().contains("had no code_challenge"));

            let expired = h.code(&user_grant("openid")).await;
            h.clock.advance(600);
            assert_eq!(h.web_token(&exchange(&expired)).await.json()["error"], "invalid_grant");
        }

        #[tokio::test]
        async fn a_failed_verifier_or_redirect_burns_nothing() {
            let h = Harness::new().await;
            h.web_client(json!({})).await;
            let code = h.code(&user_grant("openid")).await;
            let wrong = "b".repeat(43);
            let attempt = [
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", &wrong),
            ];
            assert_eq!(h.web_token(&attempt).await.json()["error"], "invalid_grant");
            assert_eq!(h.web_token(&exchange(&code)).await.status, StatusCode::OK, "the real client still redeems it");
        }

        #[tokio::test]
        async fn a_replayed_code_revokes_what_it_produced() {
            let h = Harness::new().await;
            h.web_client(json!({})).await;
            let code = h.code(&user_grant("openid offline_access")).await;
            let first = h.web_token(&exchange(&code)).await.json();
            let again = h.web_token(&exchange(&code)).await;
            assert_eq!(again.status, StatusCode::BAD_REQUEST);
            assert_eq!(again.json()["error"], "invalid_grant");
            for t in [&first["access_token"], &first["refresh_token"]] {
                let info =
                    h.form(true, "/admin/oauth2/introspect", &[("token", t.as_str().unwrap())], &[]).await.json();
                assert_eq!(info, json!({"active": false}), "{t}");
            }
            let digest = crate::crypto::token_signature(first["access_token"].as_str().unwrap());
            let snapshot: serde_json::Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
            assert!(snapshot["revoked"].as_array().unwrap().contains(&json!(digest)), "filters learn at once");
        }

        #[tokio::test]
        async fn another_client_cannot_redeem_and_the_grant_type_is_checked() {
            let h = Harness::new().await;
            h.web_client(json!({})).await;
            h.client(json!({"client_id": "svc", "client_secret": "svc-secret-1", "grant_types": ["client_credentials", "authorization_code"], "token_endpoint_auth_method": "client_secret_post", "redirect_uris": [WEB_REDIRECT]})).await;
            let code = h.code(&user_grant("openid")).await;
            let mut pairs = exchange(&code);
            pairs.extend([("client_id", "svc"), ("client_secret", "svc-secret-1")]);
            let stolen = h.form(false, "/oauth2/token", &pairs, &[]).await;
            assert_eq!(stolen.json()["error"], "invalid_grant");
            assert_eq!(h.web_token(&exchange(&code)).await.status, StatusCode::OK, "the thief burnt nothing");

            h.client(json!({"client_id": "cc", "client_secret": "cc-secret-12", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"})).await;
            let mut pairs = exchange("pc_ac_x");
            pairs.extend([("client_id", "cc"), ("client_secret", "cc-secret-12")]);
            assert_eq!(h.form(false, "/oauth2/token", &pairs, &[]).await.json()["error"], "unauthorized_client");
        }

        #[tokio::test]
        async fn jwt_access_tokens_per_client_strategy_and_lifespans() {
            let h = Harness::new().await;
            h.web_client(json!({
                "access_token_strategy": "jwt",
                "audience": ["https://api.example/"],
                "authorization_code_grant_access_token_lifespan": "5m",
                "authorization_code_grant_id_token_lifespan": "2m",
            }))
            .await;
            let mut grant = user_grant("openid read");
            grant.audience = vec!["https://api.example/".into()];
            grant.access_token_claims.insert("tier".into(), json!("gold"));
            let body = h.web_token(&exchange(&h.code(&grant).await)).await.json();
            assert_eq!(body["expires_in"], 300);
            let at = body["access_token"].as_str().unwrap();
            let claims = h.verified_claims(at).await;
            assert_eq!(claims["iss"], "http://127.0.0.1:4444/");
            assert_eq!((&claims["sub"], &claims["client_id"]), (&json!("user-1"), &json!("web")));
            assert_eq!(claims["aud"], json!(["https://api.example/"]));
            assert_eq!(claims["scp"], json!(["openid", "read"]));
            assert_eq!((claims["exp"].as_i64(), claims["nbf"].as_i64()), (Some(T0 + 300), Some(T0)));
            assert_eq!(claims["ext"], json!({"tier": "gold"}));
            let id = h.verified_claims(body["id_token"].as_str().unwrap()).await;
            assert_eq!(id["exp"], T0 + 120);

            // Recorded by digest: introspection and revocation work as for opaque tokens.
            let info = h.form(true, "/admin/oauth2/introspect", &[("token", at)], &[]).await.json();
            assert_eq!(info["active"], true);
            let revoked = h
                .form(
                    false,
                    "/oauth2/revoke",
                    &[("token", at), ("client_id", "web"), ("client_secret", crate::testing::WEB_SECRET)],
                    &[],
                )
                .await;
            assert_eq!(revoked.status, StatusCode::OK);
            assert_eq!(h.form(true, "/admin/oauth2/introspect", &[("token", at)], &[]).await.json()["active"], false);
            let snapshot: serde_json::Value = serde_json::from_slice(&h.state.rules.current().body).unwrap();
            assert_eq!(snapshot["revoked"], json!([crate::crypto::token_signature(at)]));
        }

        #[tokio::test]
        async fn the_global_strategy_can_be_jwt() {
            let mut config = crate::config::Config::default();
            config.strategies.access_token = crate::config::AccessTokenStrategy::Jwt;
            let h = Harness::with_config(config).await;
            h.client(json!({"client_id": "svc", "client_secret": "svc-secret-1", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post", "scope": "read"})).await;
            let at = h.token("svc", "svc-secret-1", "read").await["access_token"].as_str().unwrap().to_owned();
            let claims = h.verified_claims(&at).await;
            assert_eq!((&claims["sub"], &claims["scp"]), (&json!("svc"), &json!(["read"])));
            h.web_client(json!({"access_token_strategy": "opaque"})).await;
            let body = h.web_token(&exchange(&h.code(&user_grant("read")).await)).await.json();
            assert!(body["access_token"].as_str().unwrap().starts_with("pc_at_"), "the client's choice wins");
        }
    }
}
