//! Router tests of the jwt-bearer grant; the grant is [`portcullis_oauth2::jwt_bearer`].

mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::crypto::b64url;
    use crate::keys::Signer;
    use crate::testing::{Harness, Reply, T0, basic};

    const ISS: &str = "https://idp.example";
    const AUD: &str = "http://127.0.0.1:4444/oauth2/token";
    const TRUSTS: &str = "/admin/trust/grants/jwt-bearer/issuers";

    fn sign(key: &Signer, claims: &Value) -> String {
        let header = b64url(json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"}).to_string().as_bytes());
        let payload = b64url(claims.to_string().as_bytes());
        key.sign(&format!("{header}.{payload}")).unwrap()
    }

    fn claims(sub: &str, jti: &str) -> Value {
        json!({"iss": ISS, "sub": sub, "aud": AUD, "exp": T0 + 600, "iat": T0, "jti": jti})
    }

    struct Setup {
        h: Harness,
        key: Signer,
        secret: String,
    }

    async fn setup() -> Setup {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let c = h
            .client(json!({"client_id": "app", "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "scope": "read write admin", "jwt_bearer_grant_access_token_lifespan": "10m"}))
            .await;
        let trust = json!({"issuer": ISS, "subject": "alice", "scope": ["read", "admin"], "jwk": key.public_jwk(), "expires_at": "2023-11-15T00:00:00Z"});
        let reply = h.admin_json(Method::POST, TRUSTS, Some(trust)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
        Setup { h, key, secret: c["client_secret"].as_str().unwrap().to_owned() }
    }

    async fn grant(s: &Setup, jws: &str, scope: &str) -> Reply {
        let pairs = [("grant_type", portcullis_oauth2::jwt_bearer::GRANT_TYPE), ("assertion", jws), ("scope", scope)];
        s.h.form(false, "/oauth2/token", &pairs, &[("authorization", &basic("app", &s.secret))]).await
    }

    fn refused(reply: &Reply, error: &str, mention: &str) {
        assert_eq!(reply.json()["error"], error, "{}", reply.json());
        let text = reply.json()["error_description"].as_str().unwrap_or_default().to_owned();
        assert!(text.contains(mention), "{text}");
    }

    #[tokio::test]
    async fn a_trusted_assertion_gets_a_token_for_its_subject_once() {
        let s = setup().await;
        let jws = sign(&s.key, &claims("alice", "j1"));
        let reply = grant(&s, &jws, "read").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.header("cache-control"), "no-store");
        let body = reply.json();
        assert_eq!((body["token_type"].as_str(), body["expires_in"].as_i64()), (Some("bearer"), Some(600)));
        assert_eq!(body["scope"], "read");
        let token = body["access_token"].as_str().unwrap();
        let info = s.h.form(true, "/admin/oauth2/introspect", &[("token", token)], &[]).await.json();
        assert_eq!((info["active"].as_bool(), info["sub"].as_str()), (Some(true), Some("alice")));
        assert_eq!(info["client_id"], "app");
        assert_eq!(info["exp"], T0 + 600);

        let replay = grant(&s, &jws, "read").await;
        assert_eq!(replay.status, StatusCode::BAD_REQUEST);
        refused(&replay, "invalid_grant", "jti");
    }

    #[tokio::test]
    async fn assertions_outside_the_trust_are_invalid_grants() {
        let s = setup().await;
        let with = |jti: &str, edit: &dyn Fn(&mut Value)| {
            let mut c = claims("alice", jti);
            edit(&mut c);
            sign(&s.key, &c)
        };
        let stranger = Signer::generate().unwrap();
        let cases: Vec<(String, &str)> = vec![
            (with("1", &|c| c["sub"] = json!("bob")), "subject \"bob\""),
            (with("2", &|c| c["iss"] = json!("https://evil")), "issuer \"https://evil\""),
            (with("3", &|c| c["aud"] = json!("https://elsewhere/token")), "aud"),
            (with("4", &|c| c["exp"] = json!(T0 - 1)), "expired"),
            (with("5", &|c| c["exp"] = json!(T0 + 721 * 3600)), "exp"),
            (with("6", &|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap_or(())), "exp"),
            (with("7", &|c| c.as_object_mut().unwrap().remove("jti").map(drop).unwrap_or(())), "jti"),
            (with("8", &|c| c.as_object_mut().unwrap().remove("iat").map(drop).unwrap_or(())), "iat"),
            (with("9", &|c| c["nbf"] = json!(T0 + 3600)), "nbf"),
            (sign(&stranger, &claims("alice", "10")), "signature"),
            ("not.a.jwt".to_owned(), "assertion"),
        ];
        for (jws, mention) in &cases {
            let reply = grant(&s, jws, "").await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{mention}");
            refused(&reply, "invalid_grant", mention);
        }
        // The three ways `exp` can be wrong each say which one it is: a client cannot fix an
        // assertion from "exp" alone. (OAuth2 errors carry no message id; the description is
        // what a client reads.)
        let exp_cases = [
            (with("exp-past", &|c| c["exp"] = json!(T0 - 1)), "assertion: the assertion has expired (claim exp)"),
            (with("exp-now", &|c| c["exp"] = json!(T0)), "assertion: the assertion has expired (claim exp)"),
            (
                with("exp-far", &|c| c["exp"] = json!(T0 + portcullis_oauth2::jwt_bearer::MAX_TTL + 1)),
                "assertion: claim exp is more than 2592000s in the future",
            ),
            (
                with("exp-none", &|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap_or(())),
                "assertion: claim exp is missing",
            ),
            (with("exp-text", &|c| c["exp"] = json!("tomorrow")), "assertion: claim exp must be a number of seconds"),
        ];
        for (jws, description) in &exp_cases {
            let reply = grant(&s, jws, "").await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}");
            let body = reply.json();
            assert_eq!(
                (body["error"].as_str(), body["error_description"].as_str()),
                (Some("invalid_grant"), Some(*description))
            );
        }
        // The furthest `exp` allowed is accepted.
        let at_limit = with("exp-limit", &|c| c["exp"] = json!(T0 + portcullis_oauth2::jwt_bearer::MAX_TTL));
        assert_eq!(grant(&s, &at_limit, "").await.status, StatusCode::OK, "exp exactly MAX_TTL ahead is allowed");
        // A forged assertion did not use up the jti of a genuine one.
        let forged = sign(&stranger, &claims("alice", "genuine"));
        refused(&grant(&s, &forged, "").await, "invalid_grant", "signature");
        assert_eq!(grant(&s, &sign(&s.key, &claims("alice", "genuine")), "").await.status, StatusCode::OK);

        let missing =
            s.h.form(
                false,
                "/oauth2/token",
                &[("grant_type", portcullis_oauth2::jwt_bearer::GRANT_TYPE)],
                &[("authorization", &basic("app", &s.secret))],
            )
            .await;
        refused(&missing, "invalid_request", "assertion");
    }

    /// Assertions an attacker can write without the trusted issuer's key (expiry, `nbf`,
    /// audience and a stranger's key are in the test above): each is an `invalid_grant`, and
    /// none spends the jti of the genuine assertion presented last.
    #[tokio::test]
    async fn forged_assertions_are_invalid_grants() {
        use crate::testing::forge;
        let s = setup().await;
        let genuine = claims("alice", "target");
        let header = json!({"alg": "ES256", "kid": s.key.kid(), "typ": "JWT"}).to_string();
        let exp = T0 + 600;
        let mut cases: Vec<(String, &str)> = vec![
            (forge::unsigned(&genuine), "is signed with \"none\""),
            // The trust covers alice; a reader taking the last `sub` would mint a token for bob.
            (
                forge::signed_text(
                    &s.key,
                    &header,
                    &format!(
                        r#"{{"iss":"{ISS}","sub":"alice","sub":"bob","aud":"{AUD}","exp":{exp},"iat":{T0},"jti":"dup-sub"}}"#
                    ),
                ),
                "malformed payload",
            ),
            (
                forge::signed_text(
                    &s.key,
                    &header,
                    &format!(
                        r#"{{"iss":"{ISS}","sub":"alice","aud":"https://rp.example/token","aud":"{AUD}","exp":{exp},"iat":{T0},"jti":"dup-aud"}}"#
                    ),
                ),
                "malformed payload",
            ),
            (
                forge::signed_text(
                    &s.key,
                    &format!(r#"{{"alg":"ES256","kid":"{}","crit":["exp"],"exp":1}}"#, s.key.kid()),
                    &genuine.to_string(),
                ),
                "crit",
            ),
        ];
        for token in forge::hmac_keyed_with_public_key(&s.key.public_jwk(), &genuine) {
            cases.push((token, "is signed with \"HS256\"; allowed: ES256, RS256"));
        }
        for (jws, mention) in &cases {
            let reply = grant(&s, jws, "").await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{jws}");
            refused(&reply, "invalid_grant", mention);
        }
        assert_eq!(grant(&s, &sign(&s.key, &genuine), "").await.status, StatusCode::OK, "the genuine jti is unspent");
    }

    #[tokio::test]
    async fn scopes_must_be_in_the_trust_and_the_client() {
        let s = setup().await;
        let reply = grant(&s, &sign(&s.key, &claims("alice", "a")), "write").await;
        refused(&reply, "invalid_scope", "trust relationship");
        let reply = grant(&s, &sign(&s.key, &claims("alice", "b")), "read admin").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        assert_eq!(reply.json()["scope"], "read admin");
        // Narrow the client: the trust alone is not enough.
        let put = json!({"grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "scope": "read"});
        assert_eq!(s.h.admin_json(Method::PUT, "/admin/clients/app", Some(put)).await.status, StatusCode::OK);
        let reply = grant(&s, &sign(&s.key, &claims("alice", "c")), "admin").await;
        refused(&reply, "invalid_scope", "OAuth 2.0 Client");
    }

    #[tokio::test]
    async fn trusts_expire_and_any_subject_trusts_cover_everyone() {
        let s = setup().await;
        let other = Signer::generate().unwrap();
        let any = json!({"issuer": ISS, "allow_any_subject": true, "scope": ["read"], "jwk": other.public_jwk(), "expires_at": "2023-11-16T00:00:00Z"});
        assert_eq!(s.h.admin_json(Method::POST, TRUSTS, Some(any)).await.status, StatusCode::CREATED);
        assert_eq!(grant(&s, &sign(&other, &claims("carol", "x1")), "read").await.status, StatusCode::OK);
        // The any-subject trust's key does not make the alice-only trust's scopes available.
        refused(&grant(&s, &sign(&other, &claims("alice", "x2")), "admin").await, "invalid_scope", "trust");

        // 2023-11-15T00:00:00Z: the alice trust has expired.
        let alice_end = 1_700_006_400;
        s.h.clock.advance(alice_end - T0);
        let mut c = claims("alice", "late");
        c["exp"] = json!(alice_end + 60);
        // Only the any-subject trust is left, and its key did not sign this.
        refused(&grant(&s, &sign(&s.key, &c), "read").await, "invalid_grant", "signature");
        s.h.clock.advance(86_400);
        let mut c = claims("carol", "later");
        c["exp"] = json!(alice_end + 86_400 + 60);
        refused(&grant(&s, &sign(&other, &c), "read").await, "invalid_grant", "no unexpired trust");
    }

    #[tokio::test]
    async fn the_client_must_authenticate_and_be_allowed_the_grant() {
        let s = setup().await;
        let jws = sign(&s.key, &claims("alice", "c1"));
        let pairs = [("grant_type", portcullis_oauth2::jwt_bearer::GRANT_TYPE), ("assertion", jws.as_str())];
        let anonymous = s.h.form(false, "/oauth2/token", &pairs, &[]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        let wrong = s.h.form(false, "/oauth2/token", &pairs, &[("authorization", &basic("app", "wrong-secret"))]).await;
        refused(&wrong, "invalid_client", "");

        let cc = s.h.client(json!({"client_id": "cc", "grant_types": ["client_credentials"]})).await;
        let auth = basic("cc", cc["client_secret"].as_str().unwrap());
        let reply = s.h.form(false, "/oauth2/token", &pairs, &[("authorization", &auth)]).await;
        refused(&reply, "unauthorized_client", "jwt-bearer");
        // Neither rejection used up the assertion.
        assert_eq!(grant(&s, &jws, "").await.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_private_key_jwt_client_presents_two_assertions_over_http() {
        let s = setup().await;
        let client_key = Signer::generate().unwrap();
        s.h.client(json!({"client_id": "pk", "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [client_key.public_jwk()]}, "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer", "client_credentials"], "scope": "read"})).await;
        let client_assertion = |jti: &str| {
            sign(&client_key, &json!({"iss": "pk", "sub": "pk", "aud": AUD, "exp": T0 + 60, "iat": T0, "jti": jti}))
        };
        // The same jti in both assertions: they are different kinds, neither replays the other.
        let (ca, grant_assertion) = (client_assertion("same"), sign(&s.key, &claims("alice", "same")));
        let pairs = [
            ("grant_type", portcullis_oauth2::jwt_bearer::GRANT_TYPE),
            ("assertion", grant_assertion.as_str()),
            ("scope", "read"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", ca.as_str()),
        ];
        let reply = s.h.form(false, "/oauth2/token", &pairs, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
        let token = reply.json()["access_token"].as_str().unwrap().to_owned();
        let info = s.h.form(true, "/admin/oauth2/introspect", &[("token", &token)], &[]).await.json();
        assert_eq!((info["sub"].as_str(), info["client_id"].as_str()), (Some("alice"), Some("pk")));

        // Replaying the client assertion is caught before the grant is looked at.
        let fresh = sign(&s.key, &claims("alice", "other"));
        let mut again = pairs;
        again[1] = ("assertion", fresh.as_str());
        let reply = s.h.form(false, "/oauth2/token", &again, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        refused(&reply, "invalid_client", "jti");

        // private_key_jwt also works for client_credentials.
        let ca = client_assertion("cc");
        let pairs = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", ca.as_str()),
        ];
        let reply = s.h.form(false, "/oauth2/token", &pairs, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    }
}
