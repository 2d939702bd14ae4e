"""A dev-only OpenID Connect issuer, served by the local API under ``/_local/oidc`` with ``--auth jwt``.

It stands in for Cognito (or any OIDC provider) so that the JWT authorizer has tokens to check:
discovery, JWKS, the authorization code flow with PKCE (S256) for browser clients, with a sign-in
page that asks only for a user name (no password: a dev issuer), and ``POST /dev/token`` for
scripts (``make token``). The RS256 key pair is made at start and lives as long as the stack.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from local_stack.api_gateway import Request, Response

PREFIX = "/_local/oidc"
CLIENT_ID = "image-uploads-local"  # the only client, and the tokens' audience (JwtAudience)
CODE_SECONDS = 60  # an authorization code's life
DEFAULT_TTL = 3600
_LOCAL_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1)(:\d+)?")


def issuer_url(api_url: str) -> str:
    return api_url.rstrip("/") + PREFIX


def auth_parameters(auth: str, api_url: str) -> dict[str, str]:
    """The template parameter overrides of ``--auth open|jwt`` (jwt: this issuer, this audience)."""
    if auth not in ("open", "jwt"):
        raise ValueError(f"auth is open or jwt, not {auth!r}")
    if auth == "open":
        return {"AuthMode": "open"}
    return {"AuthMode": "jwt", "JwtIssuer": issuer_url(api_url), "JwtAudience": CLIENT_ID}


def _json(status: int, body: Any, *headers: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode())


def _oauth_error(error: str, description: str) -> Response:
    return _json(400, {"error": error, "error_description": description}, ("Cache-Control", "no-store"))


class LocalIssuer:
    """The issuer at ``url``; called with every request, it answers those under its path (else None)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.path = urlsplit(self.url).path
        self.key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, auto_kid=True)
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def token(self, sub: str, ttl: int = DEFAULT_TTL, **claims: Any) -> str:
        """A signed JWT for ``sub``; ``claims`` add to (or replace) the standard ones."""
        now = int(time.time())
        payload = {"iss": self.url, "aud": CLIENT_ID, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, {**payload, **claims}, self.key)

    def __call__(self, request: Request) -> Response | None:
        path = request.raw_path
        if not path.startswith(self.path + "/"):
            return None
        endpoint, method = path[len(self.path) :], request.method.upper()
        origin = request.header("origin")
        if method == "OPTIONS":
            response = Response(204, [("Access-Control-Allow-Methods", "GET, POST")])
            response.headers += [
                ("Access-Control-Allow-Headers", "content-type"),
                ("Access-Control-Max-Age", "600"),
            ]
        else:
            handler = {
                ("GET", "/.well-known/openid-configuration"): self._discovery,
                ("GET", "/jwks"): self._jwks,
                ("GET", "/authorize"): self._authorize,
                ("POST", "/authorize"): self._authorize,
                ("POST", "/token"): self._token,
                ("POST", "/dev/token"): self._dev_token,
            }.get((method, endpoint))
            response = handler(request) if handler else Response.message(404, "Not Found")
        if origin and (origin == self._origin or _LOCAL_ORIGIN.fullmatch(origin)):
            response.headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return response

    @property
    def _origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

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

    def _jwks(self, _: Request) -> Response:
        return _json(200, {"keys": [self.key.as_dict(private=False)]})

    def _authorize(self, request: Request) -> Response:
        query = dict(parse_qsl(request.raw_query))
        if problem := _authorization_problem(query):
            return Response(400, [("Content-Type", "text/plain; charset=utf-8")], problem.encode())
        sub = dict(parse_qsl(request.body.decode("utf-8", "replace"))).get("sub", "").strip()
        if request.method.upper() == "GET" or not sub:
            return Response(200, [("Content-Type", "text/html; charset=utf-8")], _page(request.target))
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._codes = {c: v for c, v in self._codes.items() if v["expires"] > now}
            self._codes[code] = {**query, "sub": sub, "expires": now + CODE_SECONDS}
        redirect = query["redirect_uri"]
        answer = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        location = redirect + ("&" if "?" in redirect else "?") + urlencode(answer)
        return Response(302, [("Location", location), ("Cache-Control", "no-store")])

    def _token(self, request: Request) -> Response:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        if form.get("client_id") != CLIENT_ID:
            return _oauth_error("invalid_client", f"the only client is {CLIENT_ID}")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use, whatever follows
        if grant is None or grant["expires"] <= time.monotonic():
            return _oauth_error("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant["redirect_uri"] or form["client_id"] != grant["client_id"]:
            return _oauth_error("invalid_grant", "redirect_uri or client_id differs from the authorization's")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(challenge, grant["code_challenge"]):
            return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge (S256)")
        scope = grant.get("scope", "openid")
        return _json(
            200,
            {
                "access_token": self.token(grant["sub"], scope=scope),
                "id_token": self.token(grant["sub"]),
                "token_type": "Bearer",
                "expires_in": DEFAULT_TTL,
                "scope": scope,
            },
            ("Cache-Control", "no-store"),
        )

    def _dev_token(self, request: Request) -> Response:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        sub, ttl = (body.get("sub"), body.get("ttl", DEFAULT_TTL)) if isinstance(body, dict) else (None, None)
        if not isinstance(sub, str) or not sub.strip():
            return _oauth_error("invalid_request", 'JSON {"sub": "alice", "ttl": 3600}: sub is required')
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
            return _oauth_error("invalid_request", "ttl: a number of seconds, at least 1")
        return _json(200, {"token": self.token(sub.strip(), ttl)})


def _authorization_problem(query: Mapping[str, str]) -> str | None:
    """Why an authorization request is refused (400), or None."""
    if query.get("response_type") != "code":
        return "response_type must be code"
    if query.get("client_id") != CLIENT_ID:
        return f"unknown client_id; the only client is {CLIENT_ID}"
    if not query.get("code_challenge") or query.get("code_challenge_method") != "S256":
        return "PKCE is required: code_challenge with code_challenge_method=S256"
    redirect = urlsplit(query.get("redirect_uri", ""))
    if redirect.scheme not in ("http", "https") or redirect.hostname not in ("localhost", "127.0.0.1"):
        return "redirect_uri must be an http(s) URL on localhost or 127.0.0.1"
    return None


def _page(action: str) -> bytes:  # the sign-in form
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Local sign-in</title><link rel="icon" href="data:,"></head>
<body>
<h1>Local sign-in (dev issuer, no password)</h1>
<form method="post" action="{html.escape(action)}">
<label for="sub">User</label> <input id="sub" name="sub" required autofocus>
<button type="submit">Sign in</button>
</form>
</body></html>
""".encode()


def main(argv: Sequence[str]) -> int:
    """`python -m local_stack token --sub alice [--ttl 3600]` (`make token`): print a token."""
    from local_stack.invoke import run, stack_parser

    parser = stack_parser("python -m local_stack token", main.__doc__)
    parser.add_argument("--sub", required=True, help="the user the token is for (its sub claim)")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="its life in seconds (default 3600)")
    return run("token", print_token, parser.parse_args(argv))


def print_token(args: argparse.Namespace) -> int:
    from local_stack.invoke import EXIT_NO_STACK, EXIT_USAGE, InvokeError

    api = f"http://{args.host}:{args.api_port}"
    request = urllib.request.Request(
        issuer_url(api) + "/dev/token",
        data=json.dumps({"sub": args.sub, "ttl": args.ttl}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(json.load(response)["token"])
            return 0
    except urllib.error.HTTPError as error:
        if error.code == 404:  # no issuer: the stack runs with --auth open
            message = f"the local stack at {api} runs with AUTH=open, where the API takes no token; "
            raise InvokeError(message + "restart it with `make run AUTH=jwt`", EXIT_USAGE) from None
        refusal = error.read().decode(errors="replace")
        raise InvokeError(f"the issuer refused: {refusal}", EXIT_USAGE) from None
    except urllib.error.URLError as error:
        message = (
            f"no local stack at {api} ({error.reason}): start it with `make run AUTH=jwt` (same API_PORT)"
        )
        raise InvokeError(message, EXIT_NO_STACK) from None
