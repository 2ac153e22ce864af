"""Grafana's generic_oauth sign-in, driven by examples/grafana/grafana.ini as Grafana reads it.

usage: grafana_generic_oauth.py INI BASE CLIENT_ID CLIENT_SECRET SEED_B64

Every URL, scope and attribute path comes from the ini's [auth.generic_oauth] section; only the
ini's http://127.0.0.1:8080 is replaced by BASE (the test's port) and the REPLACE-ME client id and
secret by the registered ones (step 2 of the ini). What Grafana does, in its order: the
authorization request with PKCE S256 (a 128-character verifier) and a state; the person signs the
sidecar page's challenge with their Ed25519 key (SEED_B64, standard base64) in the browser; the
code exchange with the client credentials in the Authorization header (auth_style = InHeader);
userinfo from api_url; login, name, email, groups and role by JMESPath over the ID token's claims,
then userinfo (Grafana's order); the refresh token grant (use_refresh_token).
Prints one JSON object; exits non-zero on any protocol failure.
"""
import base64
import configparser
import hashlib
import json
import re
import secrets
import string
import sys
import urllib.parse

import jmespath
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

INI_BASE = "http://127.0.0.1:8080"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def field(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), html)
    if not m:
        raise SystemExit("no %s in the authorization page" % name)
    return m.group(1)


def endpoint(section, key, base):
    url = section[key]
    if not url.startswith(INI_BASE + "/"):
        raise SystemExit("%s = %s does not start with %s" % (key, url, INI_BASE))
    return base + url[len(INI_BASE):]


def claims(id_token):
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def attribute(path, sources):
    """Grafana searches the ID token's claims first, then the userinfo answer."""
    for data in sources:
        value = jmespath.search(path, data)
        if value not in (None, "", []):
            return value
    return None


def sign_in(oauth, base, client_id, key, redirect_uri, verifier, state):
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": " ".join(re.split(r"[\s,]+", oauth["scopes"].strip())),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = requests.get(endpoint(oauth, "auth_url", base) + "?" + urllib.parse.urlencode(query),
                        timeout=10, allow_redirects=False)
    if page.status_code != 200:
        raise SystemExit("authorize answered %s: %s" % (page.status_code, page.text))
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    ch = field(page.text, "challenge")
    done = requests.post(
        urllib.parse.urljoin(page.url, action),
        data={"request_id": field(page.text, "request_id"), "challenge": ch,
              "public_key": base64.b64encode(key.public_key().public_bytes_raw()).decode(),
              "signature": b64url(key.sign(ch.encode()))},
        timeout=10, allow_redirects=False)
    if done.status_code != 302:
        raise SystemExit("the page's form answered %s: %s" % (done.status_code, done.text))
    location = done.headers["Location"]
    back = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    if not location.startswith(redirect_uri + "?") or back.get("state") != [state]:
        raise SystemExit("redirected to %s" % location)
    return back["code"][0]


def main():
    ini, base, client_id, secret, seed = sys.argv[1:6]
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ini)
    oauth = cfg["auth.generic_oauth"]
    assert oauth.getboolean("enabled") and oauth.getboolean("use_pkce"), "ini: enabled, use_pkce"
    assert oauth["auth_style"] == "InHeader", "ini: auth_style"
    redirect_uri = cfg["server"]["root_url"] + "login/generic_oauth"
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
    alphabet = string.ascii_letters + string.digits + "-._~"
    verifier = "".join(secrets.choice(alphabet) for _ in range(128))
    state = secrets.token_urlsafe(24)
    code = sign_in(oauth, base, client_id, key, redirect_uri, verifier, state)

    token_url, auth = endpoint(oauth, "token_url", base), (client_id, secret)
    token = requests.post(token_url, auth=auth, timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": verifier}).json()
    if "access_token" not in token:
        raise SystemExit("token: %s" % token)
    info = requests.get(endpoint(oauth, "api_url", base), timeout=10,
                        headers={"Authorization": "Bearer " + token["access_token"]}).json()
    sources = [claims(token["id_token"]), info] if "id_token" in token else [info]
    seen = {name: attribute(oauth[name + "_attribute_path"], sources)
            for name in ["login", "name", "email", "groups", "role"]}
    refreshed = requests.post(token_url, auth=auth, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}).json()
    again = requests.post(token_url, auth=auth, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    print(json.dumps({
        "grafana": seen,
        "userinfo": info,
        "id_token": "id_token" in token,
        "refresh_rotated": refreshed.get("refresh_token") not in (None, token["refresh_token"]),
        "spent_refresh": [again.status_code, again.json().get("error")],
    }))


if __name__ == "__main__":
    main()
