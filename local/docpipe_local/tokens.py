"""The local stack's JWT issuer: real RS256 tokens, so the WebSocket ``$connect`` function verifies them
against a JWKS exactly as on AWS, and the gateway verifies them on the HTTP routes as API Gateway's JWT
authorizer would.

Each stack makes its own RSA key. The issuer is the gateway's URL (``http://127.0.0.1:PORT``), which
serves the key at ``/.well-known/jwks.json``; the stack passes it to the functions as the template's
``JwtIssuer``. A token carries ``sub`` (the user), ``iss``, ``aud`` (``JwtAudience``), ``iat``,
``exp`` and, for an admin, the template's ``AdminGroupClaim`` listing ``AdminGroup``.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_SECONDS = 12 * 3600  # a working day of `docpipe up`


class LocalIssuer:
    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer, self.audience = issuer, audience
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def mint(self, user: str, groups: tuple[str, str] | None = None, seconds: int = TOKEN_SECONDS) -> str:
        """A token for ``user``; ``groups`` is ``(claim, group)`` for an admin."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + seconds,
        }
        if groups is not None:
            claims[groups[0]] = [groups[1]]
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed for its audience that has not expired, else None."""
        if token.count(".") != 2:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        return claims
