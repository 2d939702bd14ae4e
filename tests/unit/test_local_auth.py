"""The local stack's auth: template parameters, the local OIDC issuer and API Gateway's JWT authorizer.

No server: the issuer and the HTTP API are called with ``Request`` values, and the authorizer reads
the issuer's discovery document and JWKS through a fetch function that calls the issuer directly.
"""

import base64
import hashlib
import hmac
import json
import logging
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from local_stack.api_gateway import HttpApi, Request
from local_stack.jwt_authorizer import Forbidden, Jwks, route_authorizers
from local_stack.oidc import CLIENT_ID, LocalIssuer, auth_parameters
from local_stack.template import function_environment, http_routes, load_template, route_security

API_URL = "http://127.0.0.1:3000"
ISSUER = f"{API_URL}/_local/oidc"
DATA_ROUTE = "/datasets/1/images"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer(ISSUER)


def call(issuer: LocalIssuer, method: str, target: str, body: bytes = b"", **headers: str):
    return issuer(Request(method, target, list(headers.items()), body))


@pytest.fixture
def gateway(template, issuer):
    """The template's HTTP API in jwt mode; ``gateway.events`` are what the function received."""
    fetched: list[str] = []

    def fetch(url: str):
        fetched.append(url)
        response = call(issuer, "GET", urlsplit(url).path)
        assert response.status == 200, url
        return json.loads(response.body)

    events: list[dict] = []

    def invoke(function: str, event: dict) -> dict:
        events.append(event)
        return {"statusCode": 200, "body": json.dumps({"ok": True})}

    security = route_security(template, parameters=auth_parameters("jwt", API_URL))
    api = HttpApi.from_routes(
        http_routes(template),
        invoke,
        cors={"AllowOrigins": ["*"], "AllowMethods": ["GET"], "AllowHeaders": ["authorization"]},
        authorizers=route_authorizers(security, Jwks(fetch)),
        reserved=issuer,
    )
    api.events, api.fetched = events, fetched
    return api


def get(gateway: HttpApi, path: str = DATA_ROUTE, authorization: str | None = None, method: str = "GET"):
    headers = [("Host", "127.0.0.1:3000")] + ([("Authorization", authorization)] if authorization else [])
    response = gateway.handle(Request(method, path, headers))
    return response.status, json.loads(response.body or b"null")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(issuer: LocalIssuer, claims: dict, key: RSAKey | None = None) -> str:
    key = key or issuer.key
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def standard_claims(**changes) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "alice", "iat": now, "nbf": now, "exp": now + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


UNAUTHORIZED = (401, {"message": "Unauthorized"})


# --- Template parameters ----------------------------------------------------------------------------


def test_open_mode_has_no_secured_route_and_tells_the_function(template):
    parameters = auth_parameters("open", API_URL)
    assert parameters == {"AuthMode": "open"}
    assert route_security(template, parameters=parameters) == {}
    assert function_environment(template, "ApiFunction", parameters=parameters)["AUTH_MODE"] == "open"


def test_jwt_mode_secures_every_data_route_with_the_local_issuer(template):
    parameters = auth_parameters("jwt", API_URL)
    assert parameters == {"AuthMode": "jwt", "JwtIssuer": ISSUER, "JwtAudience": CLIENT_ID}
    security = route_security(template, parameters=parameters)
    routes = {f"{method} {path}" for method, path, _ in http_routes(template)}
    assert set(security) == routes - {"GET /openapi.json", "GET /docs"}
    authorizer, scopes = security["POST /datasets/{dataset_id}/images/prepare-upload"]
    assert authorizer == {
        "type": "jwt",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {"issuer": ISSUER, "audience": [CLIENT_ID]},
    }
    assert scopes == []
    assert function_environment(template, "ApiFunction", parameters=parameters)["AUTH_MODE"] == "jwt"


# --- The authorizer ---------------------------------------------------------------------------------


def test_a_valid_token_reaches_the_function_with_its_claims_as_api_gateway_passes_them(gateway, issuer):
    token = sign(issuer, standard_claims(groups=["a", "b"], admin=True, ratio=1.5, profile={"x": 1}))
    assert get(gateway, authorization=f"Bearer {token}") == (200, {"ok": True})
    authorizer = gateway.events[-1]["requestContext"]["authorizer"]
    claims = authorizer["jwt"]["claims"]
    assert authorizer["jwt"]["scopes"] is None  # the route declares no authorization scopes
    assert claims["sub"] == "alice"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == CLIENT_ID
    assert claims["exp"] == str(standard_claims()["exp"])  # numbers become strings
    assert claims["groups"] == "[a b]"
    assert claims["admin"] == "true"
    assert claims["ratio"] == "1.5"
    assert claims["profile"] == '{"x":1}'
    assert all(isinstance(value, str) for value in claims.values())


def test_the_jwks_is_fetched_through_the_discovery_document_once(gateway, issuer):
    for _ in range(3):
        assert get(gateway, authorization=f"Bearer {issuer.token('alice')}")[0] == 200
    assert gateway.fetched == [f"{ISSUER}/.well-known/openid-configuration", f"{ISSUER}/jwks"]


@pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "BEARER  ", ""])
def test_the_bearer_word_is_optional_and_case_insensitive_as_in_api_gateway(gateway, issuer, scheme):
    assert get(gateway, authorization=scheme + issuer.token("alice"))[0] == 200


def test_aud_may_be_a_list_and_client_id_stands_in_when_aud_is_absent(gateway, issuer):
    listed = standard_claims(aud=["x", CLIENT_ID])
    assert get(gateway, authorization="Bearer " + sign(issuer, listed))[0] == 200
    client_id = standard_claims(aud=None, client_id=CLIENT_ID)
    assert get(gateway, authorization="Bearer " + sign(issuer, client_id))[0] == 200
    # aud wins when both are there (API Gateway evaluates aud then).
    both = standard_claims(aud="other", client_id=CLIENT_ID)
    assert get(gateway, authorization="Bearer " + sign(issuer, both)) == UNAUTHORIZED


def forged(issuer: LocalIssuer, case: str) -> str | None:
    now = int(time.time())
    if case == "missing header":
        return None
    if case == "basic scheme":
        return "Basic " + base64.b64encode(b"alice:secret").decode()
    if case == "expired":
        return "Bearer " + sign(issuer, standard_claims(exp=now - 1))
    if case == "nbf in the future":
        return "Bearer " + sign(issuer, standard_claims(nbf=now + 60))
    if case == "iat in the future":
        return "Bearer " + sign(issuer, standard_claims(iat=now + 60))
    if case == "no exp":
        return "Bearer " + sign(issuer, standard_claims(exp=None))
    if case == "tampered signature":
        header, payload, signature = issuer.token("alice").split(".")
        return f"Bearer {header}.{payload}.{signature[:-6]}AAAAAA"
    if case == "tampered claims":
        header, _, signature = issuer.token("alice").split(".")
        return f"Bearer {header}.{b64(json.dumps(standard_claims(sub='admin')).encode())}.{signature}"
    if case == "alg none":
        header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": issuer.key.kid}).encode())
        return f"Bearer {header}.{b64(json.dumps(standard_claims()).encode())}."
    if case == "HS256 signed with the public key":
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.key.kid}).encode())
        signing_input = f"{header}.{b64(json.dumps(standard_claims()).encode())}"
        secret = issuer.key.as_pem(private=False)
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"Bearer {signing_input}.{b64(signature)}"
    if case == "RS384":
        same_key = RSAKey.import_key({**issuer.key.as_dict(private=True), "alg": "RS384"})
        header = {"alg": "RS384", "kid": issuer.key.kid}
        return "Bearer " + jwt.encode(header, standard_claims(), same_key, algorithms=["RS384"])
    if case == "unknown kid":
        other = RSAKey.generate_key(2048, parameters={"alg": "RS256"}, auto_kid=True)
        return "Bearer " + sign(issuer, standard_claims(), key=other)
    if case == "no kid":
        return "Bearer " + jwt.encode({"alg": "RS256"}, standard_claims(), issuer.key)
    if case == "wrong iss":
        return "Bearer " + sign(issuer, standard_claims(iss="http://127.0.0.1:3000/elsewhere"))
    if case == "wrong aud":
        return "Bearer " + sign(issuer, standard_claims(aud="another-client"))
    if case == "no aud or client_id":
        return "Bearer " + sign(issuer, standard_claims(aud=None))
    if case == "wrong client_id":
        return "Bearer " + sign(issuer, standard_claims(aud=None, client_id="another-client"))
    if case == "garbage":
        return "Bearer not.a.jwt"
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing header", "no token in the Authorization header"),
        ("basic scheme", "Invalid JSON Web Signature"),
        ("expired", "expired_token"),
        ("nbf in the future", "not yet valid"),
        ("iat in the future", "issued in the future"),
        ("no exp", "Missing claim: 'exp'"),
        ("tampered signature", "bad_signature"),
        ("tampered claims", "bad_signature"),
        ("alg none", "Algorithm of 'none' is not allowed"),
        ("HS256 signed with the public key", "Algorithm of 'HS256' is not allowed"),
        ("RS384", "Algorithm of 'RS384' is not allowed"),
        ("unknown kid", "in the issuer's JWKS"),
        ("no kid", "the token has no kid"),
        ("wrong iss", "Invalid claim: 'iss'"),
        ("wrong aud", "audience 'another-client'"),
        ("no aud or client_id", "audience None"),
        ("wrong client_id", "audience 'another-client'"),
        ("garbage", "Invalid header"),
    ],
)
def test_a_bad_or_missing_token_is_a_401_and_the_function_never_runs(gateway, issuer, case, reason, caplog):
    caplog.set_level(logging.INFO, "local_stack.api")
    assert get(gateway, authorization=forged(issuer, case)) == UNAUTHORIZED
    assert gateway.events == []
    # The check that refused it, in the log for the developer (API Gateway's $context.authorizer.error).
    assert "401 GET /datasets/{dataset_id}/images: " in caplog.text
    assert reason in caplog.text


def test_routes_without_security_stay_public(gateway):
    assert get(gateway, "/openapi.json")[0] == 200
    assert "authorizer" not in gateway.events[-1]["requestContext"]


def test_preflights_are_answered_before_the_authorizer(gateway):
    headers = [("Origin", "http://localhost:5173"), ("Access-Control-Request-Method", "GET")]
    assert gateway.handle(Request("OPTIONS", DATA_ROUTE, headers)).status == 204
    assert gateway.events == []


def test_a_route_with_authorization_scopes_needs_one_of_them(issuer):
    config = {
        "type": "jwt",
        "identitySource": "$request.header.Authorization",
        "jwtConfiguration": {"issuer": ISSUER, "audience": [CLIENT_ID]},
    }
    jwks = Jwks(lambda url: json.loads(call(issuer, "GET", urlsplit(url).path).body))
    (authorizer,) = route_authorizers({"GET /x": (config, ["images/read"])}, jwks).values()

    def headers(token: str):
        return lambda name: f"Bearer {token}" if name == "Authorization" else None

    granted = authorizer.authorize(headers(issuer.token("alice", scope="openid images/read")))
    assert granted["jwt"]["scopes"] == ["openid", "images/read"]
    with pytest.raises(Forbidden):
        authorizer.authorize(headers(issuer.token("alice", scope="openid")))


# --- The issuer -------------------------------------------------------------------------------------


def test_the_discovery_document_and_the_jwks_describe_the_issuer(issuer):
    discovery = json.loads(call(issuer, "GET", "/_local/oidc/.well-known/openid-configuration").body)
    assert discovery["issuer"] == ISSUER
    assert discovery["jwks_uri"] == f"{ISSUER}/jwks"
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    (key,) = json.loads(call(issuer, "GET", "/_local/oidc/jwks").body)["keys"]
    assert (key["kid"], key["alg"], key["use"], key["kty"]) == (issuer.key.kid, "RS256", "sig", "RSA")
    assert "d" not in key  # public only


def test_other_paths_are_not_the_issuers(issuer):
    assert call(issuer, "GET", "/datasets/1/images") is None
    assert call(issuer, "GET", "/_local/oidc/nothing").status == 404


def authorize_query(**changes) -> dict:
    verifier = "v" * 43
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": "http://localhost:8080/callback",
        "code_challenge": b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        "state": "xyz",
        "scope": "openid",
    }
    query.update(changes)
    return {k: v for k, v in query.items() if v is not None}


@pytest.mark.parametrize(
    "changes",
    [
        {"response_type": None},
        {"response_type": "token"},
        {"code_challenge": None},
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"client_id": "someone-else"},
        {"redirect_uri": "https://evil.example.com/callback"},
        {"redirect_uri": "javascript:alert(1)"},
    ],
)
def test_authorization_requests_are_refused_without_code_pkce_s256_our_client_or_a_local_redirect(
    issuer, changes
):
    for method in ("GET", "POST"):
        target = "/_local/oidc/authorize?" + urlencode(authorize_query(**changes))
        assert call(issuer, method, target, b"sub=alice").status == 400


def test_the_code_flow_with_pkce_gives_tokens_the_authorizer_accepts(gateway, issuer):
    target = "/_local/oidc/authorize?" + urlencode(authorize_query())
    page = call(issuer, "GET", target)
    assert page.status == 200
    assert b'<input id="sub" name="sub"' in page.body
    assert b"Sign in</button>" in page.body
    redirect = call(issuer, "POST", target, b"sub=bob")
    assert redirect.status == 302
    location = urlsplit(dict(redirect.headers)["Location"])
    assert location.netloc == "localhost:8080"
    answer = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert answer["state"] == "xyz"
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": "http://localhost:8080/callback",
        "client_id": CLIENT_ID,
        "code_verifier": "v" * 43,
    }
    response = call(issuer, "POST", "/_local/oidc/token", urlencode(form).encode())
    assert response.status == 200
    tokens = json.loads(response.body)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    for name in ("access_token", "id_token"):
        assert get(gateway, authorization=f"Bearer {tokens[name]}")[0] == 200
        assert gateway.events[-1]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "bob"
    again = call(issuer, "POST", "/_local/oidc/token", urlencode(form).encode())
    assert (again.status, json.loads(again.body)["error"]) == (400, "invalid_grant")  # single use


def test_the_dev_token_endpoint_checks_its_input(issuer):
    ok = call(issuer, "POST", "/_local/oidc/dev/token", json.dumps({"sub": "alice", "ttl": 60}).encode())
    claims = jwt.decode(json.loads(ok.body)["token"], issuer.key).claims
    assert claims["exp"] - claims["iat"] == 60
    bad = (b"{}", b"[]", b"not json", b'{"sub": ""}', b'{"sub": "a", "ttl": 0}', b'{"sub": "a", "ttl": "9"}')
    for body in bad:
        assert call(issuer, "POST", "/_local/oidc/dev/token", body).status == 400


def test_the_issuer_answers_cors_for_local_pages_only(issuer):
    local = call(issuer, "OPTIONS", "/_local/oidc/token", Origin="http://localhost:5173")
    assert local.status == 204
    assert dict(local.headers)["Access-Control-Allow-Origin"] == "http://localhost:5173"
    foreign = call(issuer, "OPTIONS", "/_local/oidc/token", Origin="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in dict(foreign.headers)
