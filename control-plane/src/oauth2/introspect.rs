//! RFC 7662 introspection, on the public listener (client authentication required) and the
//! admin listener (none). Unknown, expired or malformed tokens, and tokens lacking a scope the
//! caller asked about, are `{"active":false}`; a store failure is a 500, never inactive, so a
//! database outage cannot masquerade as "token revoked" (or the reverse). The answer is
//! [`portcullis_oauth2::introspect`]'s; these handlers only extract and authenticate.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use portcullis_oauth2::introspect::introspect;
use portcullis_shared::introspection::IntrospectionResponse;

use super::OAuthParams;
use super::client_auth::authenticate;
use crate::app::AppState;
use crate::error::{ApiError, FormParams, OAuthError};

/// `POST /oauth2/introspect` on the public listener.
pub async fn public(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Result<Json<IntrospectionResponse>, OAuthError> {
    authenticate(&state, &headers, &params).await?;
    let Some(token) = params.single("token")?.filter(|t| !t.is_empty()) else {
        return Err(OAuthError::invalid_request("The request is missing a required parameter: token."));
    };
    let scope = params.single("scope")?;
    Ok(Json(introspect(&state.oauth2(), token, scope).await?))
}

/// `POST /admin/oauth2/introspect` (and `/oauth2/introspect` on the admin listener).
pub async fn admin(
    State(state): State<AppState>,
    params: FormParams<ApiError>,
) -> Result<Json<IntrospectionResponse>, ApiError> {
    let single = |name: &str| params.single(name).map_err(|e| ApiError::invalid_request(e.description));
    let Some(token) = single("token")?.filter(|t| !t.is_empty()) else {
        return Err(ApiError::invalid_request("The request is missing a required parameter: token."));
    };
    let scope = single("scope")?;
    Ok(Json(introspect(&state.oauth2(), token, scope).await?))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use serde_json::json;

    use crate::testing::{Harness, basic};

    async fn setup() -> (Harness, String, String) {
        let h = Harness::new().await;
        let c = h
            .client(json!({"client_id": "rs", "grant_types": ["client_credentials"], "scope": "orders.* read", "token_endpoint_auth_method": "client_secret_post"}))
            .await;
        let secret = c["client_secret"].as_str().unwrap().to_owned();
        let token = h.token("rs", &secret, "orders.read read").await["access_token"].as_str().unwrap().to_owned();
        (h, secret, token)
    }

    fn multipart(path: &str, fields: &[(&str, &str)], auth: Option<&str>) -> Request<Body> {
        let boundary = "XyZbOuNdArY";
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let mut req =
            Request::post(path).header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"));
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn admin_accepts_form_and_multipart_and_checks_scope() {
        let (h, _, token) = setup().await;
        let form = h.form(true, "/admin/oauth2/introspect", &[("token", &token)], &[]).await;
        assert_eq!(form.status, StatusCode::OK);
        assert_eq!(form.json()["scope"], "orders.read read");

        let mp = Harness::send(
            h.admin(),
            multipart("/admin/oauth2/introspect", &[("token", &token), ("scope", "orders.read")], None),
        )
        .await;
        assert_eq!(mp.status, StatusCode::OK);
        assert_eq!(mp.json()["active"], true);

        // Hydra v1 path on the admin listener.
        let v1 = h.form(true, "/oauth2/introspect", &[("token", &token), ("scope", "read")], &[]).await;
        assert_eq!(v1.json()["active"], true);
        let missing_scope =
            h.form(true, "/admin/oauth2/introspect", &[("token", &token), ("scope", "orders.write")], &[]).await;
        assert_eq!(missing_scope.json(), json!({"active": false}));

        for garbage in ["garbage", "pc_at_AAAA", ""] {
            let reply = h.form(true, "/admin/oauth2/introspect", &[("token", garbage)], &[]).await;
            if garbage.is_empty() {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            } else {
                assert_eq!(reply.status, StatusCode::OK);
                assert_eq!(reply.json(), json!({"active": false}));
            }
        }
        let missing = h.form(true, "/admin/oauth2/introspect", &[("scope", "read")], &[]).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert_eq!(missing.json()["error"], "invalid_request");
    }

    #[tokio::test]
    async fn public_requires_client_authentication() {
        let (h, secret, token) = setup().await;
        let anonymous = h.form(false, "/oauth2/introspect", &[("token", &token)], &[]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.json()["error"], "invalid_client");
        let wrong_method = h
            .form(false, "/oauth2/introspect", &[("token", &token)], &[("authorization", &basic("rs", &secret))])
            .await;
        assert_eq!(wrong_method.status, StatusCode::UNAUTHORIZED);

        let ok = h
            .form(
                false,
                "/oauth2/introspect",
                &[("token", &token), ("client_id", "rs"), ("client_secret", &secret)],
                &[],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.json()["active"], true);
        let mp = Harness::send(
            h.public(),
            multipart(
                "/oauth2/introspect",
                &[("token", &token), ("client_id", "rs"), ("client_secret", &secret)],
                None,
            ),
        )
        .await;
        assert_eq!(mp.json()["active"], true);
        let no_token =
            h.form(false, "/oauth2/introspect", &[("client_id", "rs"), ("client_secret", &secret)], &[]).await;
        assert_eq!(no_token.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn store_failure_is_500_never_inactive() {
        let (h, _, token) = setup().await;
        h.state.store.close().await;
        let reply = h.form(true, "/admin/oauth2/introspect", &[("token", &token)], &[]).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.json()["error"], "internal");
        assert!(reply.json().get("active").is_none());
        let ready = h.admin_json(axum::http::Method::GET, "/admin/health/ready", None).await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ready.json()["errors"]["database"].is_string());
    }
}
