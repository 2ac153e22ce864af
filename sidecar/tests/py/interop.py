"""Interop check with independent implementations.

A client written with Python's `cryptography` registers a key (Ed25519 or P-256), logs in by
signing the challenge, and the token it receives is verified by PyJWT using nothing but the
sidecar's /.well-known/jwks.json. Prints a JSON summary; exits non-zero on any failure.

usage: interop.py BASE_URL ADMIN_KEY ed25519|p256 ISSUER AUDIENCE
"""

import base64
import json
import sys
import urllib.request

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def call(method, url, body=None, bearer=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if bearer:
        req.add_header("authorization", "Bearer " + bearer)
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def main():
    base, admin, alg, issuer, audience = sys.argv[1:6]
    if alg == "ed25519":
        sk = ed25519.Ed25519PrivateKey.generate()
        pub = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kind = "user"

        def sign(msg):
            return sk.sign(msg)
    else:
        sk = ec.generate_private_key(ec.SECP256R1())
        # SPKI DER, one of the encodings the API accepts.
        pub = sk.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        kind = "gateway"

        def sign(msg):
            # DER from cryptography; send r||s with low S, as JOSE does.
            r, s = decode_dss_signature(sk.sign(msg, ec.ECDSA(hashes.SHA256())))
            n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
            if s > n // 2:
                s = n - s
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    pub_b64 = base64.b64encode(pub).decode()
    reg = call("POST", base + "/identity/register", {"public_key": pub_b64, "type": kind}, admin)
    ch = call("POST", base + "/auth/challenge", {"public_key": pub_b64})
    sig = base64.urlsafe_b64encode(sign(ch["challenge"].encode())).decode().rstrip("=")
    login = call("POST", base + "/auth/verify", {"public_key": pub_b64, "signature": sig, "challenge": ch["challenge"]})

    token = login["token"]
    jwks = call("GET", base + "/.well-known/jwks.json")
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[jwk["alg"]],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]},
    )
    assert claims["sub"] == reg["identity_id"] == login["identity_id"], claims
    # A flipped signature byte must fail in PyJWT too.
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 1
    bad = head + "." + payload + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    try:
        jwt.decode(bad, key.key, algorithms=[jwk["alg"]], audience=audience, issuer=issuer)
        raise SystemExit("PyJWT accepted a tampered token")
    except jwt.InvalidSignatureError:
        pass
    print(json.dumps({"alg": jwk["alg"], "sub": claims["sub"], "client_key": alg}))


if __name__ == "__main__":
    main()
