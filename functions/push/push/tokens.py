"""The JWT check of ``$connect``: what the HTTP API's JWT authorizer does, done by hand, since a WebSocket
API has no JWT authorizer. RS256 only, signed by a key of the issuer's JWKS
(``{issuer}/.well-known/jwks.json``, as Cognito and Auth0 serve it; cached by PyJWT's client, and read
again when a token names a key it has not seen), with ``iss``, ``aud``, ``exp`` and ``sub`` required."""

from __future__ import annotations

import functools
from typing import Any

import jwt

from docpipe.errors import Unauthorized

LEEWAY_SECONDS = 30  # clock skew between the issuer and Lambda
JWKS_CACHE_SECONDS = 600


@functools.cache
def jwks_client(issuer: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(
        f"{issuer.rstrip('/')}/.well-known/jwks.json", cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=5
    )


def verified_claims(token: str | None, issuer: str, audience: str) -> dict[str, Any]:
    """The token's claims, or :class:`Unauthorized` (missing, malformed, badly signed, expired, another
    issuer's or another audience's)."""
    if not token:
        raise Unauthorized("A token is required: connect with ?token=<JWT>.")
    try:
        key = jwks_client(issuer).get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
        raise Unauthorized(f"The token was refused: {type(exc).__name__}.") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or "/" in sub:
        raise Unauthorized("The token names no user.")
    return claims
