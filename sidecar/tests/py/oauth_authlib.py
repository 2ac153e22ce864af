"""A second OAuth2 implementation against the sidecar: authlib's requests client runs the
authorization-code flow with PKCE S256 (a 128-character verifier, as Grafana sends), signs the
authorization page's challenge with the person's Ed25519 key, refreshes, and reads userinfo.

usage: oauth_authlib.py BASE CLIENT_ID CLIENT_SECRET REDIRECT_URI SEED_B64URL AUTH_METHOD
Prints one JSON object with what it saw; exits non-zero on any protocol failure.
"""
import base64
import json
import re
import sys

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def field(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), html)
    if not m:
        raise SystemExit("no %s in the authorization page" % name)
    return m.group(1)


def main():
    base, client_id, secret, redirect_uri, seed, method = sys.argv[1:7]
    key = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4)))
    public = b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    meta = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()

    session = OAuth2Session(
        client_id,
        secret,
        scope="openid profile email",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=method,
    )
    verifier = generate_token(128)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=generate_token(20)
    )
    page = requests.get(url, timeout=10, allow_redirects=False)
    page.raise_for_status()
    challenge = field(page.text, "challenge")
    signature = b64url(key.sign(challenge.encode()))
    done = requests.post(
        base + "/oauth/authorize/complete",
        data={
            "request_id": field(page.text, "request_id"),
            "challenge": challenge,
            "public_key": public,
            "signature": signature,
        },
        timeout=10,
        allow_redirects=False,
    )
    if done.status_code != 302:
        raise SystemExit("complete answered %s: %s" % (done.status_code, done.text))
    location = done.headers["Location"]
    if not location.startswith(redirect_uri + "?"):
        raise SystemExit("redirected to %s" % location)
    # authlib checks that the state in the response is the one it sent.
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    info = session.get(meta["userinfo_endpoint"], timeout=10).json()
    first_refresh = token["refresh_token"]
    refreshed = session.refresh_token(meta["token_endpoint"], refresh_token=first_refresh)
    info2 = session.get(meta["userinfo_endpoint"], timeout=10).json()
    print(json.dumps({
        "token_fields": sorted(token.keys()),
        "token_type": token["token_type"],
        "userinfo": info,
        "refreshed_userinfo": info2,
        "refresh_rotated": refreshed["refresh_token"] != first_refresh,
        "first_refresh": first_refresh,
    }))


if __name__ == "__main__":
    main()
