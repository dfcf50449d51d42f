use std::path::PathBuf;

use super::*;
use crate::config::Config;
use crate::crypto;
use crate::testing::Harness;
use serde_json::json;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-clients-{}", crypto::hex(&crypto::random_bytes::<6>())));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn harnesses(dir: &std::path::Path) -> Vec<(&'static str, Harness)> {
    let mut config = Config::default();
    config.oauth2.clients_file = Some(dir.join("clients").display().to_string());
    config.oauth2.clients_secrets_dir = Some(dir.join("secrets").display().to_string());
    std::fs::create_dir_all(dir.join("clients")).unwrap();
    Harness::all_with_config(config).await
}

const WEB: &str = "apiVersion: hydra.ory.sh/v1alpha1
kind: OAuth2Client
metadata:
  name: web
  namespace: shop
spec:
  clientName: Web shop
  grantTypes: [client_credentials]
  scopeArray: [read, write]
  audience: [https://api.example.com]
  tokenLifespans:
    client_credentials_grant_access_token_lifespan: 5m
  secretName: web-credentials
";

fn credentials(path: &std::path::Path) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).unwrap().to_owned();
    (get("CLIENT_ID="), get("CLIENT_SECRET="))
}

#[tokio::test]
async fn resources_become_clients_with_credentials_written_once() {
    let dir = temp_dir();
    for (backend, h) in harnesses(&dir).await {
        let _ = std::fs::remove_dir_all(dir.join("secrets"));
        std::fs::write(dir.join("clients/web.yaml"), WEB).unwrap();
        let mut rec = Reconciler::default();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert!(report.errors.is_empty(), "{backend}: {:?}", report.errors);
        assert_eq!(report.applied, ["web/shop"], "{backend}");

        let path = dir.join("secrets/shop/web-credentials");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{backend}");
        }
        let (id, secret) = credentials(&path);
        let client = h.admin_json(axum::http::Method::GET, &format!("/admin/clients/{id}"), None).await.json();
        assert_eq!(client["owner"], "web/shop", "{backend}");
        assert_eq!(client["client_name"], "Web shop");
        assert_eq!(client["scope"], "read write");
        assert_eq!(client["audience"], json!(["https://api.example.com"]));

        // The written credentials work at the token endpoint.
        let token = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials"), ("scope", "read")],
                &[("authorization", &crate::testing::basic(&id, &secret))],
            )
            .await;
        assert_eq!(token.status, axum::http::StatusCode::OK, "{backend}: {}", String::from_utf8_lossy(&token.bytes));

        // Unchanged files: no pass; a forced pass changes nothing and keeps the credentials.
        assert!(rec.pass(&h.state.oauth2(), false).await.is_none(), "{backend}");
        let report = rec.pass(&h.state.oauth2(), true).await.unwrap();
        assert_eq!(report.unchanged, ["web/shop"], "{backend}");
        assert_eq!(credentials(&path), (id.clone(), secret.clone()), "{backend}: written once");

        // An update applies to the same client.
        std::fs::write(dir.join("clients/web.yaml"), WEB.replace("Web shop", "Shop")).unwrap();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert_eq!(report.applied, ["web/shop"], "{backend}");
        assert_eq!(h.state.store.get_client(&id).await.unwrap().unwrap().client_name, "Shop", "{backend}");
        assert_eq!(credentials(&path).0, id);

        // Removing the resource deletes the client and the file written for it.
        std::fs::remove_file(dir.join("clients/web.yaml")).unwrap();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert_eq!(report.deleted, ["web/shop"], "{backend}");
        assert!(h.state.store.get_client(&id).await.unwrap().is_none(), "{backend}");
        assert!(!path.exists(), "{backend}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn user_provided_credentials_orphans_and_bad_resources() {
    let dir = temp_dir();
    for (backend, h) in harnesses(&dir).await {
        let _ = std::fs::remove_dir_all(dir.join("secrets"));
        for f in std::fs::read_dir(dir.join("clients")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        // A user-provided Secret supplies the credentials.
        std::fs::create_dir_all(dir.join("secrets/shop")).unwrap();
        std::fs::write(dir.join("secrets/shop/web-credentials"), "CLIENT_ID=web-id\nCLIENT_SECRET=chosen-secret\n")
            .unwrap();
        let orphan = WEB
            .replace("name: web\n", "name: batch\n")
            .replace("secretName: web-credentials", "deletionPolicy: orphan");
        let bad = WEB.replace("name: web\n", "name: broken\n").replace("clientName", "clientNom");
        std::fs::write(dir.join("clients/all.yaml"), format!("{WEB}---\n{orphan}---\n{bad}---\nkind: ConfigMap\n"))
            .unwrap();
        let mut rec = Reconciler::default();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert_eq!(report.applied, ["web/shop", "batch/shop"], "{backend}: {:?}", report.errors);
        assert_eq!(report.errors.len(), 1, "{backend}");
        assert!(
            report.errors[0].contains("\"broken/shop\"") && report.errors[0].contains("spec.clientNom"),
            "{:?}",
            report.errors
        );
        let web = h.state.store.get_client("web-id").await.unwrap().unwrap();
        assert_eq!(web.owner, "web/shop");
        let token = h
            .form(
                false,
                "/oauth2/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &crate::testing::basic("web-id", "chosen-secret"))],
            )
            .await;
        assert_eq!(token.status, axum::http::StatusCode::OK, "{backend}");

        // A file that does not parse changes and deletes nothing.
        std::fs::write(dir.join("clients/all.yaml"), "kind: OAuth2Client\n  spec: [unclosed\n").unwrap();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert!(report.errors[0].contains("no client was changed"), "{:?}", report.errors);
        assert!(report.deleted.is_empty() && report.applied.is_empty());
        assert!(h.state.store.get_client("web-id").await.unwrap().is_some(), "{backend}");

        // Emptied for real: the orphan's client stays, the other goes.
        std::fs::write(dir.join("clients/all.yaml"), "").unwrap();
        let report = rec.pass(&h.state.oauth2(), false).await.unwrap();
        assert_eq!(report.deleted, ["web/shop"], "{backend}");
        assert_eq!(report.orphaned, ["batch/shop"], "{backend}");
        assert!(h.state.store.get_client("web-id").await.unwrap().is_none(), "{backend}");
        assert!(dir.join("secrets/shop/web-credentials").exists(), "a user-provided file is never removed");
        let (clients, _) = (h.state.store.managed_clients().await.unwrap(), ());
        assert!(clients.is_empty(), "{backend}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
