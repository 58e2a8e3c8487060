"""Makes the JWTs and keys of the authentication tests with PyJWT and
cryptography, libraries independent of the code under test.

Prints one JSON object: the public keys (PEM), a JWKS document, and a
token per case. Usage: python3 tokens.py HS256_SECRET AUDIENCE ISSUER
"""

import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

secret, audience, issuer = sys.argv[1], sys.argv[2], sys.argv[3]
now = int(time.time())


def claims(sub="alice", roles=("uploader",), **extra):
    body = {"sub": sub, "roles": list(roles), "aud": audience, "iss": issuer, "exp": now + 600, "iat": now}
    body.update(extra)
    return body


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = lambda key: key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
rsa_pem = pem(rsa_key)
jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
jwk.update({"kid": "key-1", "alg": "RS256", "use": "sig"})
other_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_rsa.public_key()))
other_jwk.update({"kid": "key-2", "alg": "RS256", "use": "sig"})


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def confused():
    """An HS256 token whose HMAC key is the RSA public key's PEM: the
    algorithm-confusion attack. PyJWT refuses to make it, so by hand."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(rsa_pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


tokens = {
    "hs256": jwt.encode(claims(), secret, algorithm="HS256"),
    "hs256_operator": jwt.encode(claims(sub="ops", roles=["dtask-operator"]), secret, algorithm="HS256"),
    "hs256_bob": jwt.encode(claims(sub="bob", roles=[]), secret, algorithm="HS256"),
    "hs256_expired": jwt.encode(claims(exp=now - 3600), secret, algorithm="HS256"),
    "hs256_not_yet_valid": jwt.encode(claims(nbf=now + 3600), secret, algorithm="HS256"),
    "hs256_wrong_secret": jwt.encode(claims(), secret + "-not-it", algorithm="HS256"),
    "hs256_wrong_audience": jwt.encode(claims(aud="another-api"), secret, algorithm="HS256"),
    "hs256_wrong_issuer": jwt.encode(claims(iss="https://elsewhere.invalid"), secret, algorithm="HS256"),
    "hs256_no_exp": jwt.encode({k: v for k, v in claims().items() if k != "exp"}, secret, algorithm="HS256"),
    "hs256_no_sub": jwt.encode({k: v for k, v in claims().items() if k != "sub"}, secret, algorithm="HS256"),
    "none": jwt.encode(claims(), None, algorithm="none"),
    "rs256": jwt.encode(claims(), rsa_key, algorithm="RS256"),
    "rs256_kid": jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "key-1"}),
    "rs256_unknown_kid": jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "key-9"}),
    "rs256_other_key": jwt.encode(claims(), other_rsa, algorithm="RS256", headers={"kid": "key-1"}),
    "ps256": jwt.encode(claims(), rsa_key, algorithm="PS256"),
    "es256": jwt.encode(claims(), ec_key, algorithm="ES256"),
    "hs256_confused_with_rsa_pem": confused(),
}
json.dump(
    {
        "rsa_public_pem": rsa_pem,
        "ec_public_pem": pem(ec_key),
        "jwks": json.dumps({"keys": [jwk, other_jwk]}),
        "tokens": tokens,
    },
    sys.stdout,
)
