"""Exchanges a token (RFC 8693) through Authlib's stock OAuth 2.0 session.

Usage: token_exchange.py BASE_URL CLIENT_ID CLIENT_SECRET SUBJECT_TOKEN SUBJECT_TOKEN_TYPE [SCOPE]

Finds the token endpoint by discovery, checks that it advertises the token-exchange grant, and asks for
an access token for SUBJECT_TOKEN, authenticating as the client with HTTP Basic. Prints the token
response as JSON; exits 1 with the server's error on stdout when the exchange is refused.
"""

import json
import sys

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2 import OAuth2Error

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"


def main(argv):
    base, client_id, client_secret, subject_token, subject_token_type = argv[1:6]
    scope = argv[6] if len(argv) > 6 else None
    meta = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
    if GRANT not in meta.get("grant_types_supported", []):
        print(json.dumps({"error": "not_advertised", "grant_types_supported": meta.get("grant_types_supported")}))
        return 1
    session = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method="client_secret_basic",
        scope=scope,
    )
    try:
        token = session.fetch_token(
            meta["token_endpoint"],
            grant_type=GRANT,
            subject_token=subject_token,
            subject_token_type=subject_token_type,
            requested_token_type="urn:ietf:params:oauth:token-type:access_token",
            timeout=10,
        )
    except (OAuth2Error, OAuthError) as e:
        print(json.dumps({"error": e.error, "error_description": e.description}))
        return 1
    print(json.dumps(dict(token)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
