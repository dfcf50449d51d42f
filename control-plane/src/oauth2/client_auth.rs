//! Client authentication at the HTTP edge: hands the `Authorization` header and the form to
//! [`portcullis_oauth2::client_auth`], which holds the logic, and maps its error to an RFC 6749
//! body. It must not judge credentials itself.

use axum::http::{HeaderMap, header};
use portcullis_oauth2::Params;
pub use portcullis_oauth2::client_auth::Authenticated;

use super::OAuthParams;
use crate::app::AppState;
use crate::error::OAuthError;

/// The `Authorization` header's value as the domain reads it (a value that is not visible
/// ASCII reads as empty, so it is no credentials).
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""))
}

/// Authenticates the client of a token, introspection or revocation request.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &OAuthParams,
) -> Result<Authenticated, OAuthError> {
    let client =
        portcullis_oauth2::client_auth::authenticate(&state.oauth2(), authorization(headers), &Params(&params.0))
            .await?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};
    use serde_json::json;

    use super::*;
    use crate::testing::{Harness, basic};

    fn params(pairs: &[(&str, &str)]) -> OAuthParams {
        OAuthParams::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    async fn auth(h: &Harness, headers: &HeaderMap, pairs: &[(&str, &str)]) -> Result<Authenticated, OAuthError> {
        authenticate(&h.state, headers, &params(pairs)).await
    }

    #[tokio::test]
    async fn public_client_authenticates_with_client_id_alone() {
        let h = Harness::new().await;
        let created = h.client(json!({"client_id": "spa", "token_endpoint_auth_method": "none"})).await;
        assert!(created.get("client_secret").is_none(), "a public client gets no secret: {created}");
        assert!(h.state.store.get_client("spa").await.unwrap().unwrap().secret_hash.is_none());

        let Ok(ok) = auth(&h, &HeaderMap::new(), &[("client_id", "spa")]).await else {
            panic!("public client refused")
        };
        assert_eq!(ok.row.client_id, "spa");
        assert_eq!(ok.method, "none");

        // Presenting a secret is a different method, which the client is not registered for.
        let post = auth(&h, &HeaderMap::new(), &[("client_id", "spa"), ("client_secret", "anything")]).await;
        assert_eq!(post.err().unwrap().error, "invalid_client");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&basic("spa", "anything")).unwrap());
        let basic_reply = auth(&h, &headers, &[]).await;
        assert_eq!(basic_reply.err().unwrap().error, "invalid_client");
    }

    #[tokio::test]
    async fn confidential_client_cannot_skip_its_secret_and_unknown_ids_look_alike() {
        let h = Harness::new().await;
        h.client(json!({"client_id": "svc", "grant_types": ["client_credentials"]})).await;
        let bare = auth(&h, &HeaderMap::new(), &[("client_id", "svc")]).await.err().unwrap();
        assert_eq!(bare.error, "invalid_client");
        assert!(bare.description.contains("'client_secret_basic'"), "{}", bare.description);
        let unknown = auth(&h, &HeaderMap::new(), &[("client_id", "nobody")]).await.err().unwrap();
        let empty = auth(&h, &HeaderMap::new(), &[("client_id", "")]).await.err().unwrap();
        assert_eq!(unknown.error, "invalid_client");
        assert_eq!(unknown.description, empty.description);
    }
}

#[cfg(test)]
mod private_key_jwt_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::HeaderMap;
    use serde_json::{Value, json};

    use super::*;
    use crate::crypto::b64url;
    use crate::keys::Signer;
    use crate::oauth2::assertion;
    use crate::testing::{Harness, T0};

    const AUD: &str = "http://127.0.0.1:4444/oauth2/token";

    fn sign(key: &Signer, claims: Value) -> String {
        let header = b64url(json!({"alg": "ES256", "kid": key.kid(), "typ": "JWT"}).to_string().as_bytes());
        let payload = b64url(claims.to_string().as_bytes());
        key.sign(&format!("{header}.{payload}")).unwrap()
    }

    fn claims(client: &str, jti: &str) -> Value {
        json!({"iss": client, "sub": client, "aud": AUD, "exp": T0 + 300, "iat": T0, "jti": jti})
    }

    async fn present(h: &Harness, jws: &str) -> Result<Authenticated, OAuthError> {
        let params = OAuthParams::new(vec![
            ("client_assertion_type".into(), assertion::CLIENT_ASSERTION_TYPE.into()),
            ("client_assertion".into(), jws.into()),
        ]);
        authenticate(&h.state, &HeaderMap::new(), &params).await
    }

    fn err(r: Result<Authenticated, OAuthError>) -> OAuthError {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn inline_jwks_assertion_is_accepted_once_and_checked() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let created = h
            .client(json!({"client_id": "pk", "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks": {"keys": [key.public_jwk()]}}))
            .await;
        assert!(created.get("client_secret").is_none(), "{created}");

        let jws = sign(&key, claims("pk", "one"));
        let Ok(ok) = present(&h, &jws).await else { panic!("valid assertion refused") };
        assert_eq!((ok.row.client_id.as_str(), ok.method), ("pk", "private_key_jwt"));
        let replay = err(present(&h, &jws).await);
        assert_eq!(replay.error, "invalid_client");
        assert!(replay.description.contains("jti"), "{}", replay.description);

        let mut c = claims("pk", "aud");
        c["aud"] = json!("https://elsewhere/oauth2/token");
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("aud"));
        let mut c = claims("pk", "issuer-aud");
        c["aud"] = json!(["x", "http://127.0.0.1:4444/"]);
        assert!(present(&h, &sign(&key, c)).await.is_ok(), "the issuer is an accepted audience");
        let mut c = claims("pk", "expired");
        c["exp"] = json!(T0 - 1);
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("expired"));
        let mut c = claims("pk", "long");
        c["exp"] = json!(T0 + 86_400);
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("exp"));
        let mut c = claims("pk", "no-exp");
        c.as_object_mut().unwrap().remove("exp");
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("exp"));
        let mut c = claims("pk", "nbf");
        c["nbf"] = json!(T0 + 600);
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("nbf"));
        let mut c = claims("pk", "iss");
        c["iss"] = json!("someone-else");
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("iss"));
        let mut c = claims("pk", "no-jti");
        c.as_object_mut().unwrap().remove("jti");
        assert!(err(present(&h, &sign(&key, c)).await).description.contains("jti"));

        // Signed by a key the client does not have (same kid, different key).
        let other = Signer::generate().unwrap();
        let forged = {
            let header = b64url(json!({"alg": "ES256", "kid": key.kid()}).to_string().as_bytes());
            let payload = b64url(claims("pk", "forged").to_string().as_bytes());
            other.sign(&format!("{header}.{payload}")).unwrap()
        };
        assert!(err(present(&h, &forged).await).description.contains("signature"));
    }

    /// Assertions an attacker can write without the client's private key, each refused with
    /// `invalid_client` and none of them spending the jti a genuine assertion then uses.
    #[tokio::test]
    async fn forged_assertions_are_refused() {
        use crate::testing::forge;
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let other = Signer::generate().unwrap();
        for (id, k) in [("pk", &key), ("other", &other)] {
            h.client(json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"], "jwks": {"keys": [k.public_jwk()]}})).await;
        }
        let genuine = claims("pk", "target");
        let header = |k: &Signer| json!({"alg": "ES256", "kid": k.kid(), "typ": "JWT"}).to_string();
        let payload = |edit: &dyn Fn(&mut Value)| {
            let mut c = genuine.clone();
            edit(&mut c);
            c.to_string()
        };
        let mut cases: Vec<(String, String)> = vec![
            (forge::unsigned(&genuine), "is signed with \"none\"".into()),
            // Another client's key, under its own kid and under pk's.
            (sign(&other, genuine.clone()), "no ES256 key with kid".into()),
            (forge::signed_text(&other, &header(&key), &genuine.to_string()), "signature does not verify".into()),
            (forge::signed_text(&key, &header(&key), &payload(&|c| c["exp"] = json!(T0 - 1))), "expired".into()),
            (forge::signed_text(&key, &header(&key), &payload(&|c| c["exp"] = json!(T0))), "expired".into()),
            (forge::signed_text(&key, &header(&key), &payload(&|c| c["nbf"] = json!(T0 + 61))), "nbf".into()),
            (forge::signed_text(&key, &header(&key), &payload(&|c| c["iat"] = json!(T0 + 61))), "iat".into()),
            (
                forge::signed_text(&key, &header(&key), &payload(&|c| drop(c.as_object_mut().unwrap().remove("exp")))),
                "exp is missing".into(),
            ),
            (
                forge::signed_text(&key, &header(&key), &payload(&|c| c["aud"] = json!("https://rp.example/token"))),
                "aud".into(),
            ),
            // Members a reader could take either of: the first `aud` is someone else's token
            // endpoint, the last is ours; the first `sub` names another client.
            (
                forge::signed_text(
                    &key,
                    &header(&key),
                    &format!(
                        r#"{{"iss":"pk","sub":"pk","aud":"https://rp.example/token","aud":"{AUD}","exp":{},"iat":{T0},"jti":"dup-aud"}}"#,
                        T0 + 300
                    ),
                ),
                "malformed payload".into(),
            ),
            (
                forge::signed_text(
                    &key,
                    &header(&key),
                    &format!(
                        r#"{{"iss":"pk","sub":"other","sub":"pk","aud":"{AUD}","exp":{},"iat":{T0},"jti":"dup-sub"}}"#,
                        T0 + 300
                    ),
                ),
                "malformed payload".into(),
            ),
            (
                forge::signed_text(
                    &key,
                    &format!(r#"{{"alg":"ES256","alg":"none","kid":"{}"}}"#, key.kid()),
                    &genuine.to_string(),
                ),
                "malformed header".into(),
            ),
            (
                forge::signed_text(
                    &key,
                    &format!(r#"{{"alg":"ES256","kid":"{}","crit":["exp"],"exp":1}}"#, key.kid()),
                    &genuine.to_string(),
                ),
                "crit".into(),
            ),
        ];
        for token in forge::hmac_keyed_with_public_key(&key.public_jwk(), &genuine) {
            cases.push((token, "is signed with \"HS256\"; allowed: ES256, RS256".into()));
        }
        // With `client_id` too, so that an assertion whose `sub` cannot be read still reaches
        // the checks of pk's assertion.
        let state = &h.state;
        let present_as_pk = |jws: &str| {
            let params = OAuthParams::new(vec![
                ("client_id".into(), "pk".into()),
                ("client_assertion_type".into(), assertion::CLIENT_ASSERTION_TYPE.into()),
                ("client_assertion".into(), jws.into()),
            ]);
            async move { authenticate(state, &HeaderMap::new(), &params).await }
        };
        for (token, mention) in &cases {
            let e = err(present_as_pk(token).await);
            assert_eq!(e.error, "invalid_client", "{token}: {}", e.description);
            assert!(e.description.contains(mention.as_str()), "{token}: {} lacks {mention:?}", e.description);
        }
        assert!(present(&h, &sign(&key, genuine)).await.is_ok(), "no forgery spent the genuine assertion's jti");
    }

    #[tokio::test]
    async fn wrong_method_either_way_is_invalid_client() {
        let h = Harness::new().await;
        let key = Signer::generate().unwrap();
        let secret_client = h.client(json!({"client_id": "sec", "grant_types": ["client_credentials"]})).await;
        assert!(secret_client["client_secret"].is_string());
        let e = err(present(&h, &sign(&key, claims("sec", "x"))).await);
        assert_eq!(e.error, "invalid_client");
        assert!(e.description.contains("'private_key_jwt' was requested"), "{}", e.description);

        h.client(json!({"client_id": "pk", "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key.public_jwk()]}, "token_endpoint_auth_signing_alg": "RS256"})).await;
        let params =
            OAuthParams::new(vec![("client_id".into(), "pk".into()), ("client_secret".into(), "guess".into())]);
        assert_eq!(err(authenticate(&h.state, &HeaderMap::new(), &params).await).error, "invalid_client");
        // Registered for RS256, signed with ES256.
        let e = err(present(&h, &sign(&key, claims("pk", "alg"))).await);
        assert!(e.description.contains("token_endpoint_auth_signing_alg"), "{}", e.description);
        let params = OAuthParams::new(vec![
            ("client_assertion_type".into(), "urn:other".into()),
            ("client_assertion".into(), sign(&key, claims("pk", "t"))),
        ]);
        let e = err(authenticate(&h.state, &HeaderMap::new(), &params).await);
        assert!(e.description.contains("client_assertion_type"));
    }

    #[tokio::test]
    async fn jwks_uri_is_cached_and_refetched_for_an_unknown_kid() {
        let first = Signer::generate().unwrap();
        let second = Signer::generate().unwrap();
        let served = Arc::new(std::sync::Mutex::new(json!({"keys": [first.public_jwk()]})));
        let hits = Arc::new(AtomicUsize::new(0));
        let app = {
            let (served, hits) = (served.clone(), hits.clone());
            axum::Router::new().route(
                "/jwks",
                axum::routing::get(move || {
                    let (served, hits) = (served.clone(), hits.clone());
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        axum::Json(served.lock().unwrap().clone())
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let h = Harness::new().await;
        h.client(json!({"client_id": "remote", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": format!("http://{addr}/jwks")})).await;
        assert!(present(&h, &sign(&first, claims("remote", "1"))).await.is_ok());
        assert!(present(&h, &sign(&first, claims("remote", "2"))).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 1, "second use served from the cache");

        // The client rotates its key: the unknown kid makes the server fetch again.
        *served.lock().unwrap() = json!({"keys": [first.public_jwk(), second.public_jwk()]});
        h.clock.advance(11);
        let mut c = claims("remote", "3");
        c["exp"] = json!(T0 + 311);
        assert!(present(&h, &sign(&second, c)).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    /// OS randomness in the `rand_core` 0.6 shape the `rsa` crate asks for.
    struct OsRandom;
    impl rsa::rand_core::RngCore for OsRandom {
        fn next_u32(&mut self) -> u32 {
            u32::from_le_bytes(crate::crypto::random_bytes::<4>())
        }
        fn next_u64(&mut self) -> u64 {
            u64::from_le_bytes(crate::crypto::random_bytes::<8>())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            getrandom::fill(dest).unwrap();
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rsa::rand_core::CryptoRng for OsRandom {}

    #[tokio::test]
    async fn rs256_assertions_verify_and_the_registered_alg_is_enforced() {
        use rsa::signature::{SignatureEncoding, Signer as _};
        use rsa::traits::PublicKeyParts;

        let private = rsa::RsaPrivateKey::new(&mut OsRandom, 2048).unwrap();
        let public = private.to_public_key();
        let jwk = json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": b64url(&public.n().to_bytes_be()), "e": b64url(&public.e().to_bytes_be())});
        let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private);
        let sign_rs = |claims: &Value| {
            let header = b64url(json!({"alg": "RS256", "kid": "rsa-1"}).to_string().as_bytes());
            let input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
            let signature = signer.sign(input.as_bytes()).to_vec();
            format!("{input}.{}", b64url(&signature))
        };
        let h = Harness::new().await;
        h.client(json!({"client_id": "rs", "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "RS256", "jwks": {"keys": [jwk]}})).await;
        let Ok(ok) = present(&h, &sign_rs(&claims("rs", "r1"))).await else { panic!("RS256 assertion refused") };
        assert_eq!(ok.method, "private_key_jwt");
        // A tampered payload under the same signature fails.
        let genuine = sign_rs(&claims("rs", "r2"));
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64url(claims("rs", "r3").to_string().as_bytes()), parts[2]);
        assert!(err(present(&h, &tampered).await).description.contains("signature"));
        // An ES256 key the client does not have cannot stand in for its RSA key.
        let ec = Signer::generate().unwrap();
        let e = err(present(&h, &sign(&ec, claims("rs", "r4"))).await);
        assert!(e.description.contains("token_endpoint_auth_signing_alg"), "{}", e.description);
    }

    #[tokio::test]
    async fn an_unusable_jwks_uri_fails_closed() {
        let key = Signer::generate().unwrap();
        let app = axum::Router::new()
            .route("/huge", axum::routing::get(|| async { "x".repeat(70 * 1024) }))
            .route("/broken", axum::routing::get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "down") }))
            .route("/garbage", axum::routing::get(|| async { "not json" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let h = Harness::new().await;
        for (i, (path, mention)) in
            [("huge", "larger than"), ("broken", "502"), ("garbage", "not a JSON Web Key Set")].into_iter().enumerate()
        {
            let id = format!("c{i}");
            h.client(json!({"client_id": id, "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": format!("http://{addr}/{path}")})).await;
            let e = err(present(&h, &sign(&key, claims(&id, "j"))).await);
            assert_eq!(e.error, "invalid_client");
            assert!(e.description.contains(mention), "{path}: {}", e.description);
        }
    }
}
