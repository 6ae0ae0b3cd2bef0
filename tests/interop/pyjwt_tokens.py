"""Tokens minted by PyJWT (pip `pyjwt[crypto]`), for tests/pyjwt.rs.

Usage: pyjwt_tokens.py ISSUER AUDIENCE
Generates a P-521 and an RSA key with `cryptography`, publishes them as JWKs with PyJWT's own
`to_jwk`, and signs OIDC tokens with custom claims (ES512 and RS256). Prints one JSON object:
{"jwks": [...], "tokens": {name: token}}. Exit 3 when PyJWT or cryptography is missing.
"""
import json
import sys
import time

try:
    import jwt
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
except ImportError as e:
    print(f"missing module: {e}", file=sys.stderr)
    sys.exit(3)

issuer, audience = sys.argv[1], sys.argv[2]
ec_key = ec.generate_private_key(ec.SECP521R1())
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

jwks = []
for kid, alg, public in [
    ("py-es512", "ES512", ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)),
    ("py-rs256", "RS256", RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)),
]:
    public.update(kid=kid, alg=alg, use="sig")
    jwks.append(public)

now = int(time.time())
base = {"iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + 600}
custom = {
    "sub": "alice",
    "email": "alice@example.com",
    "email_verified": True,
    "groups": ["dev", "ops"],
    "tenant": "t1",
    "hd": "example.com",
    "jti": "pyjwt-1",
}
tokens = {
    "es512": jwt.encode({**base, **custom}, ec_key, algorithm="ES512", headers={"kid": "py-es512"}),
    "rs256": jwt.encode(
        {**base, **custom, "sub": "bob", "email": "bob@example.com"},
        rsa_key,
        algorithm="RS256",
        headers={"kid": "py-rs256"},
    ),
    "es512_other_domain": jwt.encode(
        {**base, **custom, "hd": "evil.example"}, ec_key, algorithm="ES512", headers={"kid": "py-es512"}
    ),
    "es512_unverified_email": jwt.encode(
        {**base, **custom, "email_verified": False}, ec_key, algorithm="ES512", headers={"kid": "py-es512"}
    ),
}
print(json.dumps({"jwks": jwks, "tokens": tokens, "pyjwt": jwt.__version__}))
