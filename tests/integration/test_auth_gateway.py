"""`make run AUTH=jwt` over HTTP: the local OIDC issuer, `make token` and API Gateway's JWT authorizer.

A stack of its own (`python -m local_stack --auth jwt`), stopped at the end of the module; the other
integration tests share the open one of conftest.py.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.integration.conftest import ROOT, JwtStack, _free_port

CLIENT_ID = "image-uploads-local"
DATA_ROUTE = "/datasets/1/images"
UNAUTHORIZED = {"message": "Unauthorized"}


def get(jwt_stack: JwtStack, path: str = DATA_ROUTE, token: str | None = None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return requests.get(jwt_stack.api + path, headers=headers, timeout=30)


def make_token(api_port: int, sub: str, ttl: int | None = None) -> subprocess.CompletedProcess:
    args = ["make", "-s", "token", f"SUB={sub}", f"API_PORT={api_port}", *([f"TTL={ttl}"] if ttl else [])]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "AUTH")}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict]:
    """A JWT's header and claims (unverified)."""
    header, payload, _ = (part + "=" * (-len(part) % 4) for part in token.split("."))
    return json.loads(base64.urlsafe_b64decode(header)), json.loads(base64.urlsafe_b64decode(payload))


def part(value: dict) -> str:
    return b64(json.dumps(value).encode())


def assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHORIZED


# --- make token, the banner, the gateway ------------------------------------------------------------


def test_the_banner_says_jwt_the_issuer_and_how_to_get_a_token(jwt_stack):
    assert "Auth: jwt" in jwt_stack.banner
    assert jwt_stack.issuer in jwt_stack.banner
    assert "make token SUB=alice" in jwt_stack.banner


def test_make_token_prints_a_token_the_gateway_lets_through(jwt_stack):
    result = make_token(jwt_stack.api_port, "alice", ttl=600)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]  # a first run may print the venv's installation
    header, claims = segments(token)
    assert header["alg"] == "RS256"
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("alice", CLIENT_ID, jwt_stack.issuer)
    assert claims["exp"] - claims["iat"] == 600
    response = get(jwt_stack, token=token)
    assert response.status_code != 401, response.text  # the function's own answer, whatever it is
    assert response.json() != UNAUTHORIZED


def test_make_token_says_when_no_stack_runs():
    result = make_token(_free_port(), "alice")
    assert result.returncode != 0
    assert "no local stack at" in result.stderr
    assert "make run AUTH=jwt" in result.stderr


def test_make_token_says_when_the_stack_runs_open(stack):
    result = make_token(int(stack.api.rsplit(":", 1)[1]), "alice")
    assert result.returncode != 0
    assert "runs with AUTH=open" in result.stderr


def test_public_routes_need_no_token(jwt_stack):
    assert get(jwt_stack, "/openapi.json").status_code == 200
    assert get(jwt_stack, "/docs").status_code == 200
    assert get(jwt_stack, "/").status_code == 200  # the upload page


def test_a_data_route_without_a_token_or_with_basic_is_a_401(jwt_stack):
    assert_unauthorized(
        get(
            jwt_stack,
        )
    )
    assert_unauthorized(get(jwt_stack, token=base64.b64encode(b"alice:pw").decode(), scheme="Basic"))


def test_preflights_need_no_token(jwt_stack):
    response = requests.options(
        jwt_stack.api + DATA_ROUTE,
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 204
    assert "authorization" in response.headers["Access-Control-Allow-Headers"]


def test_an_expired_token_is_a_401(jwt_stack):
    token = jwt_stack.dev_token(ttl=1)
    deadline = time.monotonic() + 10
    while (response := get(jwt_stack, token=token)).status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_unauthorized(response)


def forged(jwt_stack: JwtStack, case: str) -> str:
    """A token the gateway must refuse. The stack's private key never leaves it: a token for another
    audience or issuer can only be signed with another key here (the unit tests check those claims
    with the issuer's own key)."""
    genuine = jwt_stack.dev_token()
    header, claims = segments(genuine)
    if case == "tampered":
        signed_header, _, signature = genuine.split(".")  # the claims change, not the signature
        return f"{signed_header}.{part({**claims, 'sub': 'root'})}.{signature}"
    if case == "alg none":
        return f"{part({**header, 'alg': 'none'})}.{part(claims)}."
    if case == "HS256 with the public key":
        (jwk,) = requests.get(f"{jwt_stack.issuer}/jwks", timeout=10).json()["keys"]
        secret = RSAKey.import_key(jwk).as_pem(private=False)
        signing_input = f"{part({**header, 'alg': 'HS256'})}.{part(claims)}"
        return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    other_key = RSAKey.generate_key(2048, parameters={"alg": "RS256"})
    wrong = {"wrong aud": {"aud": "another-client"}, "wrong iss": {"iss": "http://127.0.0.1:1/elsewhere"}}
    changes = wrong[case]
    return jwt.encode({"alg": "RS256", "kid": header["kid"]}, {**claims, **changes}, other_key)


@pytest.mark.parametrize(
    "case", ["tampered", "alg none", "HS256 with the public key", "wrong aud", "wrong iss"]
)
def test_a_forged_token_is_a_401(jwt_stack, case):
    assert_unauthorized(get(jwt_stack, token=forged(jwt_stack, case)))


# --- The authorization code flow with PKCE ------------------------------------------------------------

REDIRECT_URI = "http://localhost:8765/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64(hashlib.sha256(verifier.encode()).digest())


def sign_in(jwt_stack: JwtStack, sub: str, challenge: str) -> str:
    """The browser's part: the sign-in page, the form, the redirect back; returns the code."""
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st4te",
        "scope": "openid",
    }
    page = requests.get(f"{jwt_stack.issuer}/authorize", params=query, timeout=10)
    assert page.status_code == 200
    assert 'name="sub"' in page.text
    assert "Sign in" in page.text
    redirect = requests.post(page.url, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    answer = parse_qs(location.query)
    assert answer["state"] == ["st4te"]
    return answer["code"][0]


def exchange(jwt_stack: JwtStack, code: str, verifier: str) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
    }
    return requests.post(f"{jwt_stack.issuer}/token", data=form, timeout=10)


def test_the_code_flow_with_pkce_gives_tokens_for_the_api(jwt_stack):
    discovery = requests.get(f"{jwt_stack.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert discovery["token_endpoint"] == f"{jwt_stack.issuer}/token"
    verifier, challenge = pkce()
    code = sign_in(jwt_stack, "carol", challenge)
    response = exchange(jwt_stack, code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] > 0
    for name in ("access_token", "id_token"):
        assert segments(tokens[name])[1]["sub"] == "carol"
        answer = get(jwt_stack, token=tokens[name])
        assert answer.status_code != 401, answer.text

    reused = exchange(jwt_stack, code, verifier)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")


def test_a_wrong_verifier_gets_no_token(jwt_stack):
    _, challenge = pkce()
    response = exchange(jwt_stack, sign_in(jwt_stack, "carol", challenge), pkce()[0])
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_the_token_endpoint_answers_cors_for_a_local_page(jwt_stack):
    response = requests.options(
        f"{jwt_stack.issuer}/token",
        headers={"Origin": "http://localhost:8765", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8765"
