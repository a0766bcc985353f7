"""Gets a token with the JWT bearer grant (RFC 7523 §2.1) through Authlib's stock assertion client.

Usage: jwt_bearer.py BASE_URL CLIENT_ID CLIENT_SECRET KEY_PEM ISSUER SUBJECT KID [SCOPE]

Finds the token endpoint by discovery, signs an ES256 assertion about SUBJECT as ISSUER with the PEM
private key in the file KEY_PEM (its kid KID), authenticates as the client with HTTP Basic, and prints
the token response as JSON. Exits 1 with the server's error on stdout when the grant is refused.
"""

import json
import sys

import requests
from authlib.integrations.requests_client import AssertionSession
from authlib.oauth2 import OAuth2Error


def main(argv):
    base, client_id, client_secret, key_file, issuer, subject, kid = argv[1:8]
    scope = argv[8] if len(argv) > 8 else None
    meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    grant = AssertionSession.JWT_BEARER_GRANT_TYPE
    if grant not in meta.get("grant_types_supported", []):
        print(json.dumps({"error": "not_advertised", "grant_types_supported": meta.get("grant_types_supported")}))
        return 1
    with open(key_file, encoding="ascii") as f:
        key = f.read()
    session = AssertionSession(
        token_endpoint=meta["token_endpoint"],
        issuer=issuer,
        subject=subject,
        audience=meta["token_endpoint"],
        scope=scope,
        default_timeout=10,
        key=key,
        alg="ES256",
        header={"kid": kid},
        expires_in=120,
    )
    session.auth = (client_id, client_secret)
    try:
        token = session.refresh_token()
    except OAuth2Error as e:
        print(json.dumps({"error": e.error, "error_description": e.description}))
        return 1
    print(json.dumps(dict(token)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
