"""``--auth jwt``: API Gateway's JWT authorizer, and a dev OpenID Connect issuer for it to trust.

The authorizer, as documented for HTTP APIs: the token is its identity source header, alone or after
"Bearer "; RS256 only; the header's kid must name a key of the issuer's JWKS (found through its discovery
document over HTTP, then cached); iss must be the configured issuer, aud (or, without aud, client_id) one
of the audiences, exp in the future, nbf and iat not (no clock skew: the issuer shares this clock). Any
failure is a 401 {"message":"Unauthorized"}, and the function does not run.

The issuer, served under /_local/oidc of the local API, stands in for Cognito: discovery, JWKS, the
authorization-code flow with PKCE (S256) whose sign-in page asks only for a user name (a dev issuer: no
password), and POST /dev/token for scripts (`make token`). Its RS256 key lives as long as the stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet, RSAKey
from werkzeug.wrappers import Request, Response

PREFIX = "/_local/oidc"
CLIENT_ID = "image-uploads-local"  # the issuer's only client, and the tokens' audience (JwtAudience)
CODE_SECONDS = 60  # an authorization code's life
DEFAULT_TTL = 3600
_LOCAL_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1)(:\d+)?")


def issuer_url(api_url: str) -> str:
    return api_url.rstrip("/") + PREFIX


def auth_parameters(auth: str, api_url: str) -> dict[str, str]:
    """The template parameters of ``--auth open|jwt`` (jwt: the local issuer and its audience)."""
    if auth == "jwt":
        return {"AuthMode": "jwt", "JwtIssuer": issuer_url(api_url), "JwtAudience": CLIENT_ID}
    return {"AuthMode": "open"}


class Denied(Exception):
    """The request does not pass the authorizer; ``str()`` says why (for the log, not the client)."""


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class JwtAuthorizer:
    """One ``x-amazon-apigateway-authorizer`` of type jwt (resolved); its JWKS is fetched once."""

    def __init__(self, config: Mapping[str, Any], fetch: Callable[[str], Any] = fetch_json) -> None:
        source = str(config.get("identitySource", ""))
        if str(config.get("type")).lower() != "jwt" or not source.startswith("$request.header."):
            raise ValueError(
                f"{config} is not supported by the local stack (JWT authorizers on a header only)"
            )
        jwt_config = config.get("jwtConfiguration") or {}
        self.header = source.removeprefix("$request.header.")
        self.issuer = str(jwt_config.get("issuer") or "")
        audience = jwt_config.get("audience") or []
        self.audience = {audience} if isinstance(audience, str) else set(audience)
        self.fetch = fetch
        self._keys: KeySet | None = None
        self._lock = threading.Lock()

    def authorize(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event's ``requestContext.authorizer``, or Denied."""
        value = (headers.get(self.header) or "").strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if not value:
            raise Denied(f"no token in the {self.header} header")
        try:
            claims = jwt.decode(value, self._key, algorithms=["RS256"]).claims
            registry = jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer}, exp={"essential": True}
            )
            registry.validate(claims)
        except (JoseError, ValueError) as error:
            raise Denied(f"invalid token: {error}") from None
        audience = claims["aud"] if "aud" in claims else claims.get("client_id")
        if not ({audience} if isinstance(audience, str) else set(audience or [])) & self.audience:
            raise Denied(f"audience {audience!r} is not one of {sorted(self.audience)}")
        return {
            "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items() if v is not None}, "scopes": None}
        }

    def _key(self, token: Any) -> Key:  # joserfc's key callback: the header is read, nothing verified yet
        kid = token.headers().get("kid")
        if not isinstance(kid, str):
            raise Denied("the token has no kid")
        with self._lock:
            if self._keys is None:
                try:
                    discovery = self.fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
                    self._keys = KeySet.import_key_set(self.fetch(discovery["jwks_uri"]))
                except (OSError, ValueError, KeyError, TypeError, JoseError) as error:
                    raise Denied(f"cannot read the JWKS of {self.issuer}: {error}") from None
        try:
            return self._keys.get_by_kid(kid)
        except (JoseError, ValueError):
            raise Denied(f"no key {kid!r} in the issuer's JWKS") from None


def _claim_text(value: Any) -> str:
    """A claim as API Gateway passes it: a string; a list as "[a b]"; an object as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(map(_claim_text, value)) + "]"
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else str(value)


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status, {"Cache-Control": "no-store"}, content_type="application/json")


def _oauth_error(error: str, description: str) -> Response:
    return _json(400, {"error": error, "error_description": description})


class LocalIssuer:
    """The issuer at ``url``; called with every request of the API, it answers those under its path."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.path = urlsplit(self.url).path
        self.key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def token(self, sub: str, ttl: int = DEFAULT_TTL, **claims: Any) -> str:
        """A signed JWT for ``sub``; ``claims`` add to (or replace) the standard ones."""
        now = int(time.time())
        standard = {"iss": self.url, "aud": CLIENT_ID, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, standard | claims, self.key)

    def __call__(self, request: Request) -> Response | None:
        if not request.path.startswith(self.path + "/"):
            return None
        if request.method == "OPTIONS":
            response = Response(status=204)
            response.headers.update(
                {"Access-Control-Allow-Methods": "GET, POST", "Access-Control-Allow-Headers": "content-type"}
            )
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            endpoint = {
                ("GET", "/.well-known/openid-configuration"): self._discovery,
                ("GET", "/jwks"): lambda _: _json(200, {"keys": [self.key.as_dict(private=False)]}),
                ("GET", "/authorize"): self._authorize,
                ("POST", "/authorize"): self._authorize,
                ("POST", "/token"): self._token,
                ("POST", "/dev/token"): self._dev_token,
            }.get((request.method, request.path.removeprefix(self.path)))
            response = endpoint(request) if endpoint else _json(404, {"message": "Not Found"})
        origin = request.headers.get("Origin")
        if origin and (
            origin == f"{urlsplit(self.url).scheme}://{urlsplit(self.url).netloc}"
            or _LOCAL_ORIGIN.fullmatch(origin)
        ):
            response.headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin"})
        return response

    def _discovery(self, _: Request) -> Response:
        return _json(
            200,
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "subject_types_supported": ["public"],
            },
        )

    def _authorize(self, request: Request) -> Response:
        query = request.args.to_dict()
        redirect = urlsplit(query.get("redirect_uri", ""))
        if query.get("response_type") != "code":
            problem = "response_type must be code"
        elif query.get("client_id") != CLIENT_ID:
            problem = f"unknown client_id; the only client is {CLIENT_ID}"
        elif not query.get("code_challenge") or query.get("code_challenge_method") != "S256":
            problem = "PKCE is required: code_challenge with code_challenge_method=S256"
        elif redirect.scheme not in ("http", "https") or redirect.hostname not in ("localhost", "127.0.0.1"):
            problem = "redirect_uri must be an http(s) URL on localhost or 127.0.0.1"
        else:
            problem = None
        if problem:
            return Response(problem, 400, content_type="text/plain; charset=utf-8")
        sub = request.form.get("sub", "").strip() if request.method == "POST" else ""
        if not sub:
            return Response(_page(request.full_path), content_type="text/html; charset=utf-8")
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._codes = {c: grant for c, grant in self._codes.items() if grant["expires"] > now}
            self._codes[code] = query | {"sub": sub, "expires": now + CODE_SECONDS}
        answer = {"code": code} | ({"state": query["state"]} if "state" in query else {})
        location = query["redirect_uri"] + ("&" if "?" in query["redirect_uri"] else "?") + urlencode(answer)
        return Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})

    def _token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        if form.get("client_id") != CLIENT_ID:
            return _oauth_error("invalid_client", f"the only client is {CLIENT_ID}")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use, whatever follows
        if grant is None or grant["expires"] <= time.monotonic():
            return _oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization's")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(challenge, grant["code_challenge"]):
            return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge (S256)")
        scope = grant.get("scope", "openid")
        tokens = {"access_token": self.token(grant["sub"], scope=scope), "id_token": self.token(grant["sub"])}
        return _json(200, tokens | {"token_type": "Bearer", "expires_in": DEFAULT_TTL, "scope": scope})

    def _dev_token(self, request: Request) -> Response:
        body = request.get_json(force=True, silent=True)
        sub, ttl = (body.get("sub"), body.get("ttl", DEFAULT_TTL)) if isinstance(body, dict) else (None, None)
        if not isinstance(sub, str) or not sub.strip():
            return _oauth_error("invalid_request", 'JSON {"sub": "alice", "ttl": 3600}: sub is required')
        if type(ttl) is not int or ttl < 1:
            return _oauth_error("invalid_request", "ttl: a number of seconds, at least 1")
        return _json(200, {"token": self.token(sub.strip(), ttl)})


def _page(action: str) -> str:  # the sign-in form
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Local sign-in</title><link rel="icon" href="data:,"></head>
<body>
<h1>Local sign-in (dev issuer, no password)</h1>
<form method="post" action="{html.escape(action)}">
<label for="sub">User</label> <input id="sub" name="sub" required autofocus>
<button type="submit">Sign in</button>
</form>
</body></html>
"""
