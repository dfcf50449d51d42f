#!/usr/bin/env python3
"""Interop check: Python authlib, a standard OAuth2/OIDC client not written here, talks to Portcullis.

Usage: authlib_client.py PUBLIC_URL ADMIN_URL [ADMIN_API_KEY]
(or PORTCULLIS_PUBLIC_URL, PORTCULLIS_ADMIN_URL, PORTCULLIS_ADMIN_KEY in the environment).

It runs discovery, client_credentials (+ introspection), authorization_code with PKCE S256 driven
headlessly (login and consent accepted through the admin API), ID token validation against the
JWKS, userinfo, refresh with rotation and revocation, and the two grants where Portcullis reads
JWTs authlib wrote: private_key_jwt client authentication (RS256) and the jwt-bearer grant
(ES256), each assertion refused when replayed. One line per step; any failure exits 1.
It never contacts the client's redirect_uri host: it stops at the redirect that points there.
"""

import os
import sys
import time
import warnings
from urllib.parse import parse_qs, urljoin, urlparse

# authlib.jose warns that joserfc supersedes it; the API used here stays until authlib 2.0.
warnings.filterwarnings("ignore", message=".*authlib.jose.*deprecated")

try:
    import requests
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.jose import JsonWebKey, jwt
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc7523 import JWTBearerGrant, PrivateKeyJWT, private_key_jwt_sign
except ImportError as e:  # the Rust test turns this into "run ./just setup"
    print(f"FAIL: missing Python package ({e}); run ./just setup", file=sys.stderr)
    sys.exit(2)

REDIRECT_URI = "http://interop-client.invalid/callback"
TIMEOUT = 15


class Failure(Exception):
    pass


def step(msg):
    print(f"ok: {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def args():
    argv = sys.argv[1:]
    public = argv[0] if len(argv) > 0 else os.environ.get("PORTCULLIS_PUBLIC_URL")
    admin = argv[1] if len(argv) > 1 else os.environ.get("PORTCULLIS_ADMIN_URL")
    key = argv[2] if len(argv) > 2 else os.environ.get("PORTCULLIS_ADMIN_KEY")
    if not public or not admin:
        raise Failure("usage: authlib_client.py PUBLIC_URL ADMIN_URL [ADMIN_API_KEY]")
    return public.rstrip("/"), admin.rstrip("/"), key


class Admin:
    def __init__(self, base, key):
        self.base = base
        self.http = requests.Session()
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method, path, **kw):
        r = self.http.request(method, self.base + path, timeout=TIMEOUT, **kw)
        if r.status_code >= 300:
            raise Failure(f"admin {method} {path} answered {r.status_code}: {r.text}")
        return r.json()


def query(url):
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def follow(browser, url, stop):
    """Follows redirects by hand until `stop(url)` holds; never requests a URL that `stop` accepts."""
    for _ in range(10):
        if stop(url):
            return url
        r = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
        if r.status_code not in (301, 302, 303, 307, 308):
            # A login/consent page itself answers 200: then the URL we are at is the one wanted.
            if stop(url):
                return url
            raise Failure(f"GET {url} answered {r.status_code} without a redirect: {r.text[:300]}")
        url = urljoin(url, r.headers["Location"])
    raise Failure(f"too many redirects, last at {url}")


def public_jwk(private, kid):
    jwk = private.as_dict(is_private=False)
    jwk["kid"] = kid
    return jwk


def assertions(meta, admin):
    """Portcullis reading JWTs another library wrote: private_key_jwt and the jwt-bearer grant."""
    token_endpoint = meta["token_endpoint"]
    rsa = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    signer = admin.call("POST", "/admin/clients", json={
        "client_name": "interop-private-key-jwt", "grant_types": ["client_credentials"], "scope": "read",
        "token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_signing_alg": "RS256",
        "jwks": {"keys": [public_jwk(rsa, "interop-rsa")]}})
    private = rsa.as_dict(is_private=True)
    kid = {"kid": "interop-rsa"}
    session = OAuth2Session(signer["client_id"], private, scope="read", token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(PrivateKeyJWT(token_endpoint, headers=kid, alg="RS256"))
    token = session.fetch_token(token_endpoint, grant_type="client_credentials")
    check(token.get("access_token"), f"private_key_jwt gave no access token: {token}")
    step("private_key_jwt: an RS256 assertion authlib signed authenticates the client")
    # The same assertion twice: its jti is spent.
    assertion = private_key_jwt_sign(private, signer["client_id"], token_endpoint, alg="RS256", header=kid)
    assertion = assertion.decode() if isinstance(assertion, bytes) else assertion
    form = {"grant_type": "client_credentials", "client_id": signer["client_id"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    first = requests.post(token_endpoint, data=form, timeout=TIMEOUT)
    check(first.status_code == 200, f"a fresh assertion was refused: {first.status_code} {first.text}")
    again = requests.post(token_endpoint, data=form, timeout=TIMEOUT)
    check(again.status_code == 401 and again.json().get("error") == "invalid_client",
          f"a replayed assertion was not refused: {again.status_code} {again.text}")
    step("private_key_jwt: the replayed assertion is refused (invalid_client)")

    ec = JsonWebKey.generate_key("EC", "P-256", is_private=True)
    issuer = "https://idp.interop.invalid"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    admin.call("POST", "/admin/trust/grants/jwt-bearer/issuers", json={
        "issuer": issuer, "subject": "interop-service", "scope": ["read"],
        "jwk": public_jwk(ec, "interop-ec"), "expires_at": expires})
    client = admin.call("POST", "/admin/clients", json={
        "client_name": "interop-jwt-bearer", "grant_types": [JWTBearerGrant.GRANT_TYPE], "scope": "read",
        "token_endpoint_auth_method": "client_secret_basic"})
    private = ec.as_dict(is_private=True)
    assertion = JWTBearerGrant.sign(private, issuer, token_endpoint, subject="interop-service",
                                    header={"alg": "ES256", "kid": "interop-ec"})
    assertion = assertion.decode() if isinstance(assertion, bytes) else assertion
    form = {"grant_type": JWTBearerGrant.GRANT_TYPE, "assertion": assertion, "scope": "read"}
    auth = (client["client_id"], client["client_secret"])
    granted = requests.post(token_endpoint, data=form, auth=auth, timeout=TIMEOUT)
    check(granted.status_code == 200, f"the jwt-bearer grant was refused: {granted.status_code} {granted.text}")
    info = requests.post(meta["introspection_endpoint"], data={"token": granted.json()["access_token"]},
                         auth=auth, timeout=TIMEOUT).json()
    check(info.get("active") is True and info.get("sub") == "interop-service",
          f"the jwt-bearer token introspects as {info}")
    step("jwt-bearer: an ES256 assertion authlib signed is traded for a token of its subject")
    again = requests.post(token_endpoint, data=form, auth=auth, timeout=TIMEOUT)
    check(again.status_code == 400 and again.json().get("error") == "invalid_grant",
          f"a replayed jwt-bearer assertion was not refused: {again.status_code} {again.text}")
    step("jwt-bearer: the replayed assertion is refused (invalid_grant)")


def main():
    public, admin_base, key = args()
    admin = Admin(admin_base, key)

    # Discovery.
    disc = requests.get(public + "/.well-known/openid-configuration", timeout=TIMEOUT)
    check(disc.status_code == 200, f"discovery answered {disc.status_code}")
    meta = disc.json()
    for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                  "revocation_endpoint", "introspection_endpoint"):
        check(meta.get(field), f"discovery lacks {field}")
    check("S256" in meta.get("code_challenge_methods_supported", ["S256"]), "discovery does not offer PKCE S256")
    step(f"discovery: issuer {meta['issuer']}")

    # Two clients through the admin API.
    machine = admin.call("POST", "/admin/clients", json={
        "client_name": "interop-machine", "grant_types": ["client_credentials"], "scope": "read",
        "token_endpoint_auth_method": "client_secret_basic"})
    web = admin.call("POST", "/admin/clients", json={
        "client_name": "interop-web", "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"], "scope": "openid offline_access email",
        "redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "client_secret_basic"})
    step(f"clients created: {machine['client_id']} (client_credentials), {web['client_id']} (authorization_code)")

    # client_credentials, then introspect the token with the client's own credentials.
    cc = OAuth2Session(machine["client_id"], machine["client_secret"], scope="read",
                       token_endpoint_auth_method="client_secret_basic")
    cc_token = cc.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    check(cc_token.get("access_token") and cc_token.get("token_type", "").lower() == "bearer",
          f"client_credentials gave no bearer token: {cc_token}")
    info = cc.introspect_token(meta["introspection_endpoint"], token=cc_token["access_token"]).json()
    check(info.get("active") is True, f"introspection of the client_credentials token: {info}")
    check(info.get("client_id") == machine["client_id"], f"introspection names client {info.get('client_id')}")
    step(f"client_credentials: token active, scope {info.get('scope')!r}")

    # authorization_code + PKCE S256, driven headlessly.
    client = OAuth2Session(web["client_id"], web["client_secret"], scope="openid offline_access email",
                           redirect_uri=REDIRECT_URI, code_challenge_method="S256",
                           token_endpoint_auth_method="client_secret_basic")
    verifier = generate_token(48)
    nonce = generate_token(20)
    auth_url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                      nonce=nonce)
    check("code_challenge=" in auth_url and "code_challenge_method=S256" in auth_url,
          f"authlib built no PKCE S256 request: {auth_url}")
    browser = requests.Session()  # keeps the flow-binding cookie /oauth2/auth sets

    at_login = follow(browser, auth_url, lambda u: "login_challenge" in query(u))
    challenge = query(at_login)["login_challenge"]
    login = admin.call("GET", "/admin/oauth2/auth/requests/login", params={"login_challenge": challenge})
    check(login.get("client", {}).get("client_id") == web["client_id"], f"login request names {login.get('client')}")
    accepted = admin.call("PUT", "/admin/oauth2/auth/requests/login/accept", params={"login_challenge": challenge},
                          json={"subject": "interop-user", "remember": False})
    step("login accepted through the admin API")

    at_consent = follow(browser, accepted["redirect_to"], lambda u: "consent_challenge" in query(u))
    challenge = query(at_consent)["consent_challenge"]
    consent = admin.call("GET", "/admin/oauth2/auth/requests/consent", params={"consent_challenge": challenge})
    check(consent.get("subject") == "interop-user", f"consent request for {consent.get('subject')}")
    accepted = admin.call("PUT", "/admin/oauth2/auth/requests/consent/accept",
                          params={"consent_challenge": challenge},
                          json={"grant_scope": ["openid", "offline_access", "email"],
                                "grant_access_token_audience": [],
                                "session": {"id_token": {"email": "interop@example.com"}}})
    step("consent accepted through the admin API")

    callback = follow(browser, accepted["redirect_to"], lambda u: u.startswith(REDIRECT_URI))
    back = query(callback)
    check("code" in back, f"the client was sent back without a code: {callback}")
    check(back.get("state") == state, "the state parameter did not round-trip")
    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier,
                               state=state)
    for field in ("access_token", "refresh_token", "id_token"):
        check(token.get(field), f"the code exchange gave no {field}: {sorted(token)}")
    step("authorization_code + PKCE S256: access, refresh and ID tokens")

    # The ID token, verified with authlib against the published JWKS.
    jwks = requests.get(meta["jwks_uri"], timeout=TIMEOUT).json()
    keys = JsonWebKey.import_key_set(jwks)
    claims = jwt.decode(token["id_token"], keys, claims_options={
        "iss": {"essential": True, "value": meta["issuer"]},
        "aud": {"essential": True, "value": web["client_id"]},
        "exp": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
        "sub": {"essential": True, "value": "interop-user"},
    })
    claims.validate()
    check(claims.header.get("alg") == "ES256", f"ID token signed with {claims.header.get('alg')}")
    step(f"ID token verified against the JWKS (alg {claims.header['alg']}, kid {claims.header.get('kid')})")

    user = client.get(meta["userinfo_endpoint"], timeout=TIMEOUT)
    check(user.status_code == 200, f"userinfo answered {user.status_code}: {user.text}")
    check(user.json().get("sub") == "interop-user", f"userinfo says {user.json()}")
    step(f"userinfo: sub {user.json()['sub']}")

    # Refresh with rotation: the old refresh token must be refused afterwards.
    old_refresh = token["refresh_token"]
    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
    check(refreshed.get("access_token") and refreshed.get("refresh_token"), f"refresh gave {sorted(refreshed)}")
    check(refreshed["refresh_token"] != old_refresh, "the refresh token was not rotated")
    step("refresh: new access and refresh tokens")
    replay = requests.post(meta["token_endpoint"], data={"grant_type": "refresh_token", "refresh_token": old_refresh},
                           auth=(web["client_id"], web["client_secret"]), timeout=TIMEOUT)
    check(replay.status_code == 400 and replay.json().get("error") == "invalid_grant",
          f"the used refresh token was not refused: {replay.status_code} {replay.text}")
    step("refresh: the used refresh token is refused (invalid_grant)")

    # Reusing a rotated refresh token is taken for theft and revokes the whole family (as Hydra
    # does outside its grace period), so the pair the refresh gave is dead now too.
    info = client.introspect_token(meta["introspection_endpoint"], token=refreshed["access_token"]).json()
    check(info.get("active") is False, f"after the replay the family's access token is still active: {info}")
    step("refresh: the replay revoked the token family")

    # Revocation (RFC 7009) of a live token, then introspection says inactive.
    revoke = client.revoke_token(meta["revocation_endpoint"], token=token["access_token"],
                                 token_type_hint="access_token")
    check(revoke.status_code == 200, f"revocation of a dead token answered {revoke.status_code}: {revoke.text}")
    live = cc_token["access_token"]
    info = cc.introspect_token(meta["introspection_endpoint"], token=live).json()
    check(info.get("active") is True, f"the client_credentials token is not active before revocation: {info}")
    revoke = cc.revoke_token(meta["revocation_endpoint"], token=live, token_type_hint="access_token")
    check(revoke.status_code == 200, f"revocation answered {revoke.status_code}: {revoke.text}")
    info = cc.introspect_token(meta["introspection_endpoint"], token=live).json()
    check(info.get("active") is False, f"introspection after revocation: {info}")
    step("revocation: the revoked token introspects inactive")
    assertions(meta, admin)
    print("interop: all steps passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # authlib raises its own errors (OAuthError, JoseError): name them
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
