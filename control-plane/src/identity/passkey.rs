//! `GET /.well-known/ory/webauthn.js`, the browser half of the passkey ceremonies, and the
//! relying party read from the server's config. The ceremonies themselves live in
//! `portcullis_identity::passkey` (re-exported here); they must not be added here.

use std::sync::LazyLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use portcullis_identity::passkey::*;

use crate::config::Config;
use crate::error::StartupError;

static ETAG: LazyLock<String> = LazyLock::new(|| format!("\"{}\"", crate::crypto::sha256_hex(SCRIPT.as_bytes())));

/// The passkey relying party for `config` (see [`Passkeys::from_config`]).
pub fn from_config(config: &Config) -> Result<Passkeys, StartupError> {
    Passkeys::from_config(&config.selfservice, config.urls.self_.public_base())
}

// --- webauthn.js ------------------------------------------------------------------------

/// `GET /.well-known/ory/webauthn.js`. Cached briefly and revalidated by ETag: the flows pin
/// it by SRI hash, so a cached copy from an older binary must not outlive an upgrade for long.
/// Any origin may load it (SPAs on another origin use `crossorigin="anonymous"` with SRI).
pub async fn script(headers: HeaderMap) -> Response {
    let etag = ETAG.as_str();
    let common = [
        (header::CACHE_CONTROL, "public, max-age=300"),
        (header::ETAG, etag),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], common, SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    //! Whole ceremonies through the public router on SQLite, with a small software
    //! authenticator (P-256, `none` attestation, resident credentials) written here:
    //! webauthn-authenticator-rs's `SoftPasskey` can create neither resident keys nor user
    //! handles, so it cannot do usernameless sign-in.

    use axum::http::StatusCode;
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::{Value, json};

    use super::*;
    use crate::crypto::{b64url, b64url_decode, sha256};
    use crate::identity::{CODE, Credential, PASSKEY};
    use crate::testing::{Harness, Reply, flow_action, message_ids};
    use webauthn_rs::prelude::Uuid;

    const ORIGIN: &str = "http://localhost:4444";

    fn config() -> Config {
        let mut config = Config::default();
        config.urls.self_.public = format!("{ORIGIN}/");
        config
    }

    async fn post(h: &Harness, flow: &Value, body: Value, headers: &[(&str, &str)]) -> Reply {
        h.post_json(&flow_action(flow), body, headers).await
    }

    fn node<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == name)
    }

    fn json_node(flow: &Value, name: &str) -> Value {
        let n = node(flow, name).unwrap_or_else(|| panic!("no {name} node in {flow}"));
        serde_json::from_str(n["attributes"]["value"].as_str().unwrap()).unwrap()
    }

    // --- a software authenticator --------------------------------------------------------

    fn cbor_head(major: u8, n: usize, out: &mut Vec<u8>) {
        let m = major << 5;
        match n {
            0..24 => out.push(m | n as u8),
            24..256 => out.extend([m | 24, n as u8]),
            _ => {
                out.push(m | 25);
                out.extend(u16::try_from(n).unwrap().to_be_bytes());
            }
        }
    }

    fn cbor_int(i: i64, out: &mut Vec<u8>) {
        if i >= 0 { cbor_head(0, i as usize, out) } else { cbor_head(1, (-1 - i) as usize, out) }
    }

    fn cbor_bytes(b: &[u8], out: &mut Vec<u8>) {
        cbor_head(2, b.len(), out);
        out.extend(b);
    }

    fn cbor_text(s: &str, out: &mut Vec<u8>) {
        cbor_head(3, s.len(), out);
        out.extend(s.as_bytes());
    }

    /// One resident P-256 credential, as a platform authenticator with user verification.
    struct Authenticator {
        key: SigningKey,
        credential_id: Vec<u8>,
        user_handle: Vec<u8>,
        counter: u32,
        origin: String,
    }

    impl Authenticator {
        fn new(seed: u8) -> Self {
            Self {
                key: SigningKey::from_slice(&[seed; 32]).unwrap(),
                credential_id: vec![seed; 20],
                user_handle: Vec::new(),
                counter: 0,
                origin: ORIGIN.into(),
            }
        }

        fn client_data(&self, kind: &str, challenge: &Value) -> Vec<u8> {
            json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
                .to_string()
                .into_bytes()
        }

        /// `navigator.credentials.create` for `passkey_create_data`, as webauthn.js sends it.
        fn create(&mut self, options: &Value) -> Value {
            let pk = &options["publicKey"];
            assert_eq!(pk["authenticatorSelection"]["residentKey"], "required", "{options}");
            self.user_handle = b64url_decode(pk["user"]["id"].as_str().unwrap()).unwrap();
            let point = self.key.verifying_key().to_encoded_point(false);
            let mut cose = Vec::new();
            cbor_head(5, 5, &mut cose);
            for (k, v) in [(1, 2), (3, -7), (-1, 1)] {
                cbor_int(k, &mut cose);
                cbor_int(v, &mut cose);
            }
            cbor_int(-2, &mut cose);
            cbor_bytes(point.x().unwrap(), &mut cose);
            cbor_int(-3, &mut cose);
            cbor_bytes(point.y().unwrap(), &mut cose);
            let mut auth_data = sha256(pk["rp"]["id"].as_str().unwrap().as_bytes()).to_vec();
            auth_data.push(0x45); // user present, user verified, attested credential data
            auth_data.extend(self.counter.to_be_bytes());
            auth_data.extend([0u8; 16]); // AAGUID
            auth_data.extend(u16::try_from(self.credential_id.len()).unwrap().to_be_bytes());
            auth_data.extend(&self.credential_id);
            auth_data.extend(cose);
            let mut attestation = Vec::new();
            cbor_head(5, 3, &mut attestation);
            cbor_text("fmt", &mut attestation);
            cbor_text("none", &mut attestation);
            cbor_text("attStmt", &mut attestation);
            cbor_head(5, 0, &mut attestation);
            cbor_text("authData", &mut attestation);
            cbor_bytes(&auth_data, &mut attestation);
            json!({
                "id": b64url(&self.credential_id),
                "rawId": b64url(&self.credential_id),
                "type": "public-key",
                "response": {
                    "attestationObject": b64url(&attestation),
                    "clientDataJSON": b64url(&self.client_data("webauthn.create", &pk["challenge"])),
                },
                "extensions": {"credProps": {"rk": true}},
            })
        }

        /// `navigator.credentials.get` for `passkey_challenge` (no allow list: discoverable).
        fn get(&mut self, options: &Value) -> Value {
            let pk = &options["publicKey"];
            self.counter += 1;
            let mut auth_data = sha256(pk["rpId"].as_str().unwrap().as_bytes()).to_vec();
            auth_data.push(0x05); // user present, user verified
            auth_data.extend(self.counter.to_be_bytes());
            let client_data = self.client_data("webauthn.get", &pk["challenge"]);
            let mut signed = auth_data.clone();
            signed.extend(sha256(&client_data));
            let signature: Signature = self.key.sign(&signed);
            json!({
                "id": b64url(&self.credential_id),
                "rawId": b64url(&self.credential_id),
                "type": "public-key",
                "response": {
                    "authenticatorData": b64url(&auth_data),
                    "clientDataJSON": b64url(&client_data),
                    "signature": b64url(signature.to_der().as_bytes()),
                    "userHandle": b64url(&self.user_handle),
                },
                "extensions": {},
            })
        }
    }

    /// Registers `email` with a passkey through an API flow; the reply signs in.
    async fn register(h: &Harness, a: &mut Authenticator, email: &str) -> Value {
        let flow = h.api_flow("registration", &[]).await;
        let started = post(h, &flow, json!({"method": "passkey", "traits": {"email": email}}), &[]).await;
        assert_eq!(started.status, StatusCode::OK, "{}", started.json());
        let answer = a.create(&json_node(&started.json(), "passkey_create_data"));
        let done = post(h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
        assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.bytes));
        done.json()
    }

    async fn login(h: &Harness, a: &mut Authenticator) -> Reply {
        let flow = h.api_flow("login", &[]).await;
        let answer = a.get(&json_node(&flow, "passkey_challenge"));
        post(h, &flow, json!({"method": "passkey", "passkey_login": answer}), &[]).await
    }

    fn stored_passkeys(credential: &Credential) -> Vec<Value> {
        credential.config["credentials"].as_array().unwrap().clone()
    }

    #[tokio::test]
    async fn passkey_registration_then_usernameless_login() {
        for (backend, h) in Harness::all_with_config(config()).await {
            eprintln!("backend: {backend}");
            let flow = h.api_flow("registration", &[]).await;
            let button = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["value"] == "passkey");
            let button = button.expect("a Sign up with passkey button");
            assert_eq!((&button["group"], &button["attributes"]["name"]), (&json!("passkey"), &json!("method")));
            assert_eq!(button["meta"]["label"]["id"], 1_040_007);
            assert!(node(&flow, "passkey_create_data").is_none(), "no ceremony before the traits are valid");

            let started =
                post(&h, &flow, json!({"method": "passkey", "traits": {"email": "Ada@Example.com"}}), &[]).await;
            assert_eq!(started.status, StatusCode::OK, "{}", started.json());
            let started = started.json();
            let options = json_node(&started, "passkey_create_data");
            let pk = &options["publicKey"];
            assert_eq!(pk["rp"]["id"], "localhost");
            assert_eq!(pk["user"]["name"], "ada@example.com");
            assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
            assert_eq!(pk["authenticatorSelection"]["requireResidentKey"], true);
            assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
            assert!(b64url_decode(pk["challenge"].as_str().unwrap()).unwrap().len() >= 16);
            let trigger = node(&started, "passkey_register_trigger").unwrap();
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeyRegistration");
            assert_eq!(trigger["meta"]["label"], json!({"id": 1_040_902, "text": "Create passkey", "type": "info"}));
            assert_eq!(started["ui"]["messages"][0]["id"], 1_040_901);
            assert_eq!(started["ui"]["messages"][0]["text"], "Now confirm with your passkey.");
            let sign_up_again =
                started["ui"]["nodes"].as_array().unwrap().iter().any(|n| n["attributes"]["value"] == "passkey");
            assert!(!sign_up_again, "the traits step's button is gone");
            let email = node(&started, "traits.email").unwrap();
            assert_eq!(email["attributes"]["disabled"], true, "the traits being registered are shown, fixed");
            assert!(node(&started, "password").is_none(), "other methods wait behind Back");
            assert_eq!(node(&started, "screen").unwrap()["attributes"]["value"], "previous");
            assert_eq!(trigger["attributes"]["type"], "button");
            assert!(node(&started, "passkey_register").is_some());

            let mut a = Authenticator::new(7);
            let answer = a.create(&options);
            let done = post(&h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
            assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.bytes));
            let done = done.json();
            let id = done["identity"]["id"].as_str().unwrap().to_owned();
            assert_eq!(done["identity"]["traits"]["email"], "Ada@Example.com");
            assert_eq!(Uuid::from_slice(&a.user_handle).unwrap().to_string(), id, "the user handle is the identity id");
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(credential.identifiers, [id.as_str()]);
            let passkeys = stored_passkeys(&credential);
            assert_eq!(passkeys.len(), 1);
            assert_eq!(passkeys[0]["id"], b64url(&a.credential_id));
            assert_eq!(passkeys[0]["display_name"], "ada@example.com");
            assert_eq!(credential.config["user_handle"], id);

            let flow = h.api_flow("login", &[]).await;
            let challenge = json_node(&flow, "passkey_challenge");
            assert_eq!(challenge["publicKey"]["rpId"], "localhost");
            assert!(challenge.get("mediation").is_none(), "the button asks modally; autofill is webauthn.js's choice");
            assert_eq!(node(&flow, "passkey_login").unwrap()["attributes"]["value"], "");
            let trigger = node(&flow, "passkey_login_trigger").unwrap();
            assert_eq!(trigger["group"], "passkey");
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeyLogin");
            assert_eq!(trigger["meta"]["label"]["id"], 1_010_021);
            assert_eq!(trigger["meta"]["label"]["text"], "Sign in with passkey");
            assert!(
                flow["ui"]["nodes"].as_array().unwrap().iter().all(|n| n["type"] != "script"),
                "API flows load no script"
            );

            let answer = a.get(&challenge);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": answer}), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
            let token = r.json()["session_token"].as_str().unwrap().to_owned();
            let me = h.get("/sessions/whoami", &[("x-session-token", &token)]).await.json();
            assert_eq!(me["identity"]["id"], id);
            assert_eq!(me["authentication_methods"][0]["method"], "passkey");
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(stored_passkeys(&credential)[0]["passkey"]["cred"]["counter"], 1, "the counter is kept");
        }
    }

    #[tokio::test]
    async fn back_from_the_passkey_step_offers_every_method_again_with_the_traits_kept() {
        let h = Harness::with_config(config()).await;
        let flow = h.api_flow("registration", &[]).await;
        let started = post(&h, &flow, json!({"method": "passkey", "traits": {"email": "kim@example.com"}}), &[]).await;
        assert!(node(&started.json(), "passkey_create_data").is_some());
        let back = post(&h, &flow, json!({"screen": "previous"}), &[]).await;
        assert_eq!(back.status, StatusCode::OK, "{}", back.json());
        let back = back.json();
        assert!(node(&back, "passkey_create_data").is_none(), "the ceremony is dropped");
        assert!(node(&back, "password").is_some());
        assert_eq!(node(&back, "traits.email").unwrap()["attributes"]["value"], "kim@example.com");
        assert_eq!(node(&back, "traits.email").unwrap()["attributes"]["disabled"], false);
        let r = post(
            &h,
            &flow,
            json!({"method": "password", "traits": {"email": "kim@example.com"}, "password": "violet-tractor-umbrella"}),
            &[],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "another method works after Back: {}", r.json());
    }

    #[tokio::test]
    async fn a_passkey_login_hook_sets_traits_and_the_passkey_keeps_working() {
        let url = crate::identity::hooks::test_server(|body: Value| {
            let email = body["identity"]["traits"]["email"].clone();
            let changed = json!({"identity": {"traits": {"email": email, "name": "Grace"},
                "metadata_public": {"via": body["flow"]["active"]}}});
            (200, changed.to_string())
        })
        .await;
        let mut config = config();
        config.selfservice.flows.login.after = serde_json::from_value(
            json!({"passkey": {"hooks": [{"hook": "web_hook", "config": {"url": url, "response": {"parse": true}}}]}}),
        )
        .unwrap();
        for (backend, h) in Harness::all_with_config(config.clone()).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(11);
            register(&h, &mut a, "grace@example.com").await;
            let r = login(&h, &mut a).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.bytes));
            let identity = &r.json()["session"]["identity"];
            assert_eq!(identity["traits"]["name"], "Grace");
            assert_eq!(identity["metadata_public"]["via"], "passkey");
            let again = login(&h, &mut a).await;
            assert_eq!(again.status, StatusCode::OK, "the passkey survived the change: {}", again.json());
        }
    }

    #[tokio::test]
    async fn tampered_replayed_or_cloned_passkey_answers_get_a_flow_message() {
        for (backend, h) in Harness::all_with_config(config()).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(9);
            register(&h, &mut a, "bob@example.com").await;

            let flow = h.api_flow("login", &[]).await;
            let first = json_node(&flow, "passkey_challenge");
            let mut tampered = a.get(&first);
            let sig = tampered["response"]["signature"].as_str().unwrap();
            let mut bytes = b64url_decode(sig).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            tampered["response"]["signature"] = json!(b64url(&bytes));
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": tampered}), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_006]);
            let second = json_node(&r.json(), "passkey_challenge");
            assert_ne!(
                first["publicKey"]["challenge"], second["publicKey"]["challenge"],
                "each attempt gets a new challenge"
            );

            // An answer to the old challenge is refused; one to the new challenge is not.
            let stale = a.get(&first);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": stale}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            let garbage = post(&h, &flow, json!({"method": "passkey", "passkey_login": "not json"}), &[]).await;
            assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
            assert_eq!(message_ids(&garbage.json()), [4_000_001]);
            let missing = post(&h, &flow, json!({"method": "passkey"}), &[]).await;
            assert_eq!(message_ids(&missing.json()), [4_000_002]);

            // A passkey nobody registered (an unknown user handle) looks the same as a bad one.
            let mut stranger = Authenticator::new(11);
            stranger.user_handle = Uuid::parse_str(&crate::crypto::uuid_v4()).unwrap().as_bytes().to_vec();
            let r = login(&h, &mut stranger).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            // Another origin (a phishing page relaying the challenge) is refused.
            let flow = h.api_flow("login", &[]).await;
            a.origin = "http://localhost:4445".into();
            let phished = a.get(&json_node(&flow, "passkey_challenge"));
            a.origin = ORIGIN.into();
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": phished}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            assert_eq!(login(&h, &mut a).await.status, StatusCode::OK);
            // A clone whose counter lags behind is refused.
            a.counter -= 2;
            let r = login(&h, &mut a).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
            assert_eq!(message_ids(&r.json()), [4_000_006]);

            // A registration answer for another origin creates nothing.
            let flow = h.api_flow("registration", &[]).await;
            let started =
                post(&h, &flow, json!({"method": "passkey", "traits": {"email": "eve@example.com"}}), &[]).await;
            let mut b = Authenticator::new(13);
            b.origin = "https://evil.example".into();
            let answer = b.create(&json_node(&started.json(), "passkey_create_data"));
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_register": answer}), &[]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_001]);
            assert!(node(&r.json(), "passkey_create_data").is_none(), "the used-up ceremony is gone");
            let list = h.state.store.find_identity_by_identifier(CODE, "eve@example.com").await.unwrap();
            assert!(list.is_none(), "no identity was created");

            // A taken address is refused before any passkey is created.
            let flow = h.api_flow("registration", &[]).await;
            let r = post(&h, &flow, json!({"method": "passkey", "traits": {"email": "bob@example.com"}}), &[]).await;
            assert_eq!(message_ids(&r.json()), [4_000_007]);
            assert!(node(&r.json(), "passkey_create_data").is_none());
        }
    }

    #[tokio::test]
    async fn settings_add_a_passkey_and_refuse_removing_the_last_way_in() {
        let mut config = config();
        config.selfservice.methods.code.passwordless_enabled = false;
        for (backend, h) in Harness::all_with_config(config).await {
            eprintln!("backend: {backend}");
            let mut a = Authenticator::new(21);
            let registered = register(&h, &mut a, "cleo@example.com").await;
            let token = registered["session_token"].as_str().unwrap().to_owned();
            let id = registered["identity"]["id"].as_str().unwrap().to_owned();
            let auth = [("x-session-token", token.as_str())];

            let flow = h.api_flow("settings", &auth).await;
            let remove = node(&flow, "passkey_remove").unwrap();
            assert_eq!(remove["attributes"]["value"], b64url(&a.credential_id));
            assert_eq!(remove["meta"]["label"]["id"], 1_050_020);
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&a.credential_id)}), &auth).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&r.bytes));
            assert_eq!(message_ids(&r.json()), [4_000_046]);
            assert!(h.state.store.get_credential(&id, PASSKEY).await.unwrap().is_some(), "still there");

            // Add a second passkey: same user handle, the first one excluded.
            let started = post(&h, &flow, json!({"method": "passkey"}), &auth).await;
            assert_eq!(started.status, StatusCode::OK, "{}", started.json());
            let options = json_node(&started.json(), "passkey_create_data");
            assert_eq!(options["publicKey"]["excludeCredentials"][0]["id"], b64url(&a.credential_id));
            let trigger = node(&started.json(), "passkey_register_trigger").unwrap().clone();
            assert_eq!(trigger["attributes"]["onclickTrigger"], "oryPasskeySettingsRegistration");
            let mut b = Authenticator::new(22);
            let answer = b.create(&options);
            assert_eq!(b.user_handle, a.user_handle);
            let saved = post(&h, &flow, json!({"method": "passkey", "passkey_settings_register": answer}), &auth).await;
            assert_eq!(saved.status, StatusCode::OK, "{}", saved.json());
            assert_eq!(message_ids(&saved.json()), [1_050_001]);
            let credential = h.state.store.get_credential(&id, PASSKEY).await.unwrap().unwrap();
            assert_eq!(stored_passkeys(&credential).len(), 2);
            let r = login(&h, &mut b).await;
            assert_eq!(r.json()["session"]["identity"]["id"], id, "the new passkey signs in too");

            // Now the first can go, but not the second as well.
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&a.credential_id)}), &auth).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json());
            assert_eq!(login(&h, &mut a).await.status, StatusCode::BAD_REQUEST, "a removed passkey no longer signs in");
            let r =
                post(&h, &flow, json!({"method": "passkey", "passkey_remove": b64url(&b.credential_id)}), &auth).await;
            assert_eq!(message_ids(&r.json()), [4_000_046]);
            let r = post(&h, &flow, json!({"method": "passkey", "passkey_remove": "no-such-passkey"}), &auth).await;
            assert_eq!(message_ids(&r.json()), [4_000_001]);
        }
    }

    #[tokio::test]
    async fn passkey_script_is_served_with_its_sri_hash_and_the_insecure_origin_message() {
        let h = Harness::with_config(config()).await;
        let flow = h.get("/self-service/login/browser", &[("accept", "application/json")]).await.json();
        let script = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["type"] == "script").unwrap().clone();
        assert_eq!(script["group"], "passkey");
        assert_eq!(script["attributes"]["src"], format!("{ORIGIN}/.well-known/ory/webauthn.js"));

        let r = h.get("/.well-known/ory/webauthn.js", &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.header("content-type").starts_with("text/javascript"), "{}", r.header("content-type"));
        assert!(r.header("cache-control").contains("max-age="));
        use base64::Engine as _;
        use sha2::Digest as _;
        let sri =
            format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(&r.bytes)));
        assert_eq!(script["attributes"]["integrity"], sri, "the SRI hash matches what is served");
        let js = String::from_utf8(r.bytes.clone()).unwrap();
        assert!(js.contains("Passkeys need a secure origin (https:// or localhost). This page is served from "));
        assert!(js.contains("role\", \"alert"));
        for f in
            ["oryPasskeyLogin", "oryPasskeyRegistration", "oryPasskeySettingsRegistration", "data-portcullis-trigger"]
        {
            assert!(js.contains(f), "{f}");
        }
        let etag = r.header("etag").to_owned();
        let again = h.get("/.well-known/ory/webauthn.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn an_ip_address_public_url_offers_no_passkeys_and_refuses_the_method() {
        let h = Harness::new().await; // http://127.0.0.1:4444
        assert!(!h.state.passkeys.available());
        let flow = h.api_flow("login", &[]).await;
        assert!(flow["ui"]["nodes"].as_array().unwrap().iter().all(|n| n["group"] != "passkey"));
        let r = post(&h, &flow, json!({"method": "passkey", "passkey_login": "{}"}), &[]).await;
        assert_eq!(message_ids(&r.json()), [4_010_002]);
    }

    #[test]
    fn passkey_relying_party_config_errors_name_the_key() {
        let with = |id: &str, origins: &[&str], public: &str| {
            let mut c = Config::default();
            c.urls.self_.public = public.into();
            c.selfservice.methods.passkey.rp.id = id.into();
            c.selfservice.methods.passkey.rp.origins = origins.iter().map(|o| (*o).to_owned()).collect();
            from_config(&c).map(|p| p.available()).map_err(|e| e.0)
        };
        assert_eq!(with("", &[], "http://127.0.0.1:4444/"), Ok(false), "the defaults start, without passkeys");
        assert_eq!(with("", &[], "http://localhost:4444/"), Ok(true));
        assert_eq!(with("", &[], "https://login.example.com/"), Ok(true));
        assert_eq!(with("", &[], "http://login.example.com/"), Ok(false), "plain http: off, with a warning");
        assert_eq!(with("example.com", &[], "https://login.example.com/"), Ok(true));
        assert_eq!(
            with("example.com", &["https://a.example.com", "https://example.com:8443"], "http://127.0.0.1/"),
            Ok(true)
        );
        let err = |r: Result<bool, String>| r.unwrap_err();
        assert!(err(with("127.0.0.1", &[], "http://127.0.0.1:4444/")).contains("selfservice.methods.passkey.rp.id"));
        assert!(err(with("https://example.com", &[], "https://example.com/")).contains("rp.id"));
        assert!(err(with("example.com", &[], "https://login.other.org/")).contains("rp.id"));
        assert!(err(with("", &["https://localhost:4444"], "http://127.0.0.1:4444/")).contains("rp.id: must be set"));
        let e = err(with("example.com", &["http://example.com"], "https://example.com/"));
        assert!(e.contains("rp.origins[0]") && e.contains("https"), "{e}");
        assert!(
            err(with("example.com", &["https://example.com/login"], "https://example.com/")).contains("origins[0]")
        );
        assert!(
            err(with("example.com", &["https://example.com", "https://other.org"], "https://example.com/"))
                .contains("origins[1]")
        );
    }
}
