"""API Gateway's JWT authorizer (HTTP APIs), for the routes whose OpenAPI ``security`` names one.

As documented for HTTP APIs: the token is the identity source header, alone or after ``Bearer ``;
only RS256 is accepted (AWS: RSA algorithms only); the header's ``kid`` must name a key of the
issuer's JWKS, found through its discovery document over HTTP and cached; ``iss`` must be the
configured issuer, ``aud`` (or, without ``aud``, ``client_id``) one of the configured audiences,
``exp`` in the future, ``nbf`` and ``iat`` not; a route with authorization scopes needs one of them
in ``scope``/``scp``. No clock skew is allowed (``LEEWAY``): the local issuer shares this clock.
Any failure is API Gateway's 401 ``{"message":"Unauthorized"}`` (403 ``Forbidden`` for scopes).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

LEEWAY = 0  # seconds of clock skew allowed on exp, nbf and iat

FetchJson = Callable[[str], Any]


class Denied(Exception):
    """The request does not pass the authorizer; ``str()`` says why (for the log, not the client)."""

    status, message = 401, "Unauthorized"


class Forbidden(Denied):
    status, message = 403, "Forbidden"


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class Jwks:
    """The issuers' public keys, fetched once through their discovery documents, as API Gateway does."""

    fetch: FetchJson = fetch_json
    _sets: dict[str, KeySet] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def key(self, issuer: str, kid: str) -> Key:
        with self._lock:
            if issuer not in self._sets:
                try:
                    discovery = self.fetch(issuer.rstrip("/") + "/.well-known/openid-configuration")
                    self._sets[issuer] = KeySet.import_key_set(self.fetch(discovery["jwks_uri"]))
                except (OSError, ValueError, KeyError, TypeError, JoseError) as error:
                    raise Denied(f"cannot read the JWKS of {issuer}: {error}") from None
            keys = self._sets[issuer]
        try:
            return keys.get_by_kid(kid)
        except JoseError:
            raise Denied(f"no key {kid!r} in the issuer's JWKS") from None


@dataclass
class JwtAuthorizer:
    """One route's authorizer: ``authorize(request)`` gives ``requestContext.authorizer`` or raises Denied."""

    issuer: str
    audience: tuple[str, ...]
    header: str  # the identity source, e.g. "Authorization"
    jwks: Jwks
    scopes: tuple[str, ...] = ()  # the route's authorization scopes

    @classmethod
    def from_openapi(cls, config: Mapping[str, Any], scopes: list[str], jwks: Jwks) -> JwtAuthorizer:
        """From an ``x-amazon-apigateway-authorizer`` (resolved) and the route's scopes."""
        if str(config.get("type", "")).lower() != "jwt":
            raise ValueError(f"only JWT authorizers are emulated locally, not {config.get('type')!r}")
        source = str(config.get("identitySource", "$request.header.Authorization"))
        if not source.startswith("$request.header."):
            raise ValueError(f"only a request header can be a JWT authorizer's identity source, not {source}")
        jwt_config = config.get("jwtConfiguration") or {}
        audience = jwt_config.get("audience") or []
        return cls(
            issuer=str(jwt_config.get("issuer") or ""),
            audience=tuple([audience] if isinstance(audience, str) else audience),
            header=source.removeprefix("$request.header."),
            jwks=jwks,
            scopes=tuple(scopes),
        )

    def authorize(self, headers: Callable[[str], str | None]) -> dict[str, Any]:
        """The event's ``authorizer`` (payload 2.0); ``headers(name)`` gives a request header."""
        value = (headers(self.header) or "").strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if not value:
            raise Denied(f"no token in the {self.header} header")
        try:
            token = jwt.decode(value, self._key, algorithms=["RS256"])
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY, iss={"essential": True, "value": self.issuer}, exp={"essential": True}
            ).validate(token.claims)
        except (JoseError, ValueError) as error:
            raise Denied(f"invalid token: {error}") from None
        claims = token.claims
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        if not set([audience] if isinstance(audience, str) else audience or []) & set(self.audience):
            raise Denied(f"audience {audience!r} is not one of {list(self.audience)}")
        granted = _scopes(claims)
        if self.scopes and not set(granted) & set(self.scopes):
            raise Forbidden(f"none of the route's scopes {list(self.scopes)} in {granted}")
        return {
            "jwt": {
                "claims": {name: _claim_text(v) for name, v in claims.items() if v is not None},
                "scopes": granted if self.scopes else None,
            }
        }

    def _key(self, token: Any) -> Key:  # joserfc's key callback: the header is read, nothing verified yet
        kid = token.headers().get("kid")
        if not isinstance(kid, str):
            raise Denied("the token has no kid")
        return self.jwks.key(self.issuer, kid)


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    value = claims.get("scp", claims.get("scope"))
    return list(value) if isinstance(value, list) else str(value or "").split()


def _claim_text(value: Any) -> str:
    """A claim as API Gateway passes it: a string; a list as "[a b]"; an object (rare) as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def route_authorizers(
    security: Mapping[str, tuple[Mapping[str, Any], list[str]]], jwks: Jwks | None = None
) -> dict[str, JwtAuthorizer]:
    """Route key -> its authorizer, from ``template.route_security``; one JWKS cache for all."""
    jwks = jwks or Jwks()
    return {key: JwtAuthorizer.from_openapi(auth, scopes, jwks) for key, (auth, scopes) in security.items()}
