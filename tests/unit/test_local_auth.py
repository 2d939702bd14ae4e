"""The local stack's auth: template parameters, the local OIDC issuer and API Gateway's JWT authorizer.

No server: the template's HTTP API is a WSGI app called through werkzeug's test client, with the issuer
answering its paths first; the authorizer reads the issuer's discovery document and JWKS through the
same client.
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
from werkzeug.test import Client

from local_stack.api_gateway import HttpApi, http_routes, route_authorizers
from local_stack.auth import CLIENT_ID, LocalIssuer, auth_parameters
from local_stack.template import Names, function_environment, load_template

API_URL = "http://127.0.0.1:3000"
ISSUER = f"{API_URL}/_local/oidc"
DATA_ROUTE = "/datasets/1/images"
UNAUTHORIZED = (401, {"message": "Unauthorized"})


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer(ISSUER)


@pytest.fixture
def gateway(template, issuer):
    """The template's HTTP API in jwt mode; ``gateway.events``: what the function got, ``gateway.fetched``:
    what the authorizer read from the issuer."""
    events: list[dict] = []

    def invoke(function: str, event: dict) -> dict:
        events.append(event)
        return {"statusCode": 200, "body": json.dumps({"ok": True})}

    api = HttpApi.from_template(
        Names(template, parameters=auth_parameters("jwt", API_URL)), invoke, first=issuer
    )
    client = Client(api)
    fetched: list[str] = []

    def fetch(url: str):
        fetched.append(url)
        response = client.get(urlsplit(url).path)
        assert response.status_code == 200, url
        return response.json

    for authorizer in set(api.authorizers.values()):
        authorizer.fetch = fetch
    client.events, client.fetched = events, fetched
    return client


def get(gateway: Client, path: str = DATA_ROUTE, authorization: str | None = None):
    response = gateway.get(path, headers={"Authorization": authorization} if authorization else {})
    return response.status_code, json.loads(response.data or b"null")


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


# --- Template parameters ----------------------------------------------------------------------------


def test_open_mode_has_no_authorizer_and_tells_the_function(template):
    parameters = auth_parameters("open", API_URL)
    assert parameters == {"AuthMode": "open"}
    assert route_authorizers(Names(template, parameters=parameters)) == {}
    assert function_environment(template, "ApiFunction", parameters=parameters)["AUTH_MODE"] == "open"


def test_jwt_mode_puts_the_local_issuer_on_every_route_the_template_secures(template):
    parameters = auth_parameters("jwt", API_URL)
    assert parameters == {"AuthMode": "jwt", "JwtIssuer": ISSUER, "JwtAudience": CLIENT_ID}
    authorizers = route_authorizers(Names(template, parameters=parameters))
    paths = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]["paths"]
    secured = {
        f"{m.upper()} {p}"
        for p, operations in paths.items()
        for m, op in operations.items()
        if "security" in op
    }
    assert set(authorizers) == secured
    assert {
        "POST /datasets/{dataset_id}/images/prepare-upload",
        "GET /datasets/{dataset_id}/images",
    } <= secured
    assert not {"GET /openapi.json", "GET /docs", "GET /limits"} & set(authorizers)  # public on purpose
    assert {route.key for route in http_routes(template)} >= secured
    (authorizer,) = set(authorizers.values())  # one authorizer (one JWKS cache) for every route
    assert (authorizer.issuer, authorizer.audience, authorizer.header) == (
        ISSUER,
        {CLIENT_ID},
        "Authorization",
    )
    assert function_environment(template, "ApiFunction", parameters=parameters)["AUTH_MODE"] == "jwt"


# --- The authorizer ---------------------------------------------------------------------------------


def test_a_valid_token_reaches_the_function_with_its_claims_as_api_gateway_passes_them(gateway, issuer):
    token = sign(issuer, standard_claims(groups=["a", "b"], admin=True, ratio=1.5, profile={"x": 1}))
    assert get(gateway, authorization=f"Bearer {token}") == (200, {"ok": True})
    authorizer = gateway.events[-1]["requestContext"]["authorizer"]
    claims = authorizer["jwt"]["claims"]
    assert authorizer["jwt"]["scopes"] is None  # the route declares no authorization scopes
    assert (claims["sub"], claims["iss"], claims["aud"]) == ("alice", ISSUER, CLIENT_ID)
    assert claims["exp"] == str(standard_claims()["exp"])  # numbers become strings
    assert (claims["groups"], claims["admin"], claims["ratio"]) == ("[a b]", "true", "1.5")
    assert claims["profile"] == '{"x":1}'


def test_the_jwks_is_fetched_through_the_discovery_document_once(gateway, issuer):
    for path in (DATA_ROUTE, "/datasets", DATA_ROUTE):
        assert get(gateway, path, authorization=f"Bearer {issuer.token('alice')}")[0] == 200
    assert gateway.fetched == [f"{ISSUER}/.well-known/openid-configuration", f"{ISSUER}/jwks"]


@pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "BEARER  ", ""])
def test_the_bearer_word_is_optional_and_case_insensitive_as_in_api_gateway(gateway, issuer, scheme):
    assert get(gateway, authorization=scheme + issuer.token("alice"))[0] == 200


def test_aud_may_be_a_list_and_client_id_stands_in_when_aud_is_absent(gateway, issuer):
    assert (
        get(gateway, authorization="Bearer " + sign(issuer, standard_claims(aud=["x", CLIENT_ID])))[0] == 200
    )
    client_id = standard_claims(aud=None, client_id=CLIENT_ID)
    assert get(gateway, authorization="Bearer " + sign(issuer, client_id))[0] == 200
    both = standard_claims(aud="other", client_id=CLIENT_ID)  # aud wins when both are there
    assert get(gateway, authorization="Bearer " + sign(issuer, both)) == UNAUTHORIZED


def forged(issuer: LocalIssuer, case: str) -> str | None:
    now = int(time.time())
    header, payload, signature = issuer.token("alice").split(".")
    claims = b64(json.dumps(standard_claims()).encode())
    cases = {
        "missing header": lambda: None,
        "basic scheme": lambda: "Basic " + base64.b64encode(b"alice:secret").decode(),
        "expired": lambda: sign(issuer, standard_claims(exp=now - 1)),
        "nbf in the future": lambda: sign(issuer, standard_claims(nbf=now + 60)),
        "iat in the future": lambda: sign(issuer, standard_claims(iat=now + 60)),
        "no exp": lambda: sign(issuer, standard_claims(exp=None)),
        "tampered signature": lambda: f"{header}.{payload}.{signature[:-6]}AAAAAA",
        "tampered claims": lambda: (
            f"{header}.{b64(json.dumps(standard_claims(sub='admin')).encode())}.{signature}"
        ),
        "alg none": lambda: f"{b64(json.dumps({'alg': 'none', 'kid': issuer.key.kid}).encode())}.{claims}.",
        "HS256 signed with the public key": lambda: hs256(issuer, claims),
        "RS384": lambda: jwt.encode(
            {"alg": "RS384", "kid": issuer.key.kid},
            standard_claims(),
            RSAKey.import_key({**issuer.key.as_dict(private=True), "alg": "RS384"}),
            algorithms=["RS384"],
        ),
        "unknown kid": lambda: sign(issuer, standard_claims(), RSAKey.generate_key(2048, auto_kid=True)),
        "no kid": lambda: jwt.encode({"alg": "RS256"}, standard_claims(), issuer.key),
        "wrong iss": lambda: sign(issuer, standard_claims(iss="http://127.0.0.1:3000/elsewhere")),
        "wrong aud": lambda: sign(issuer, standard_claims(aud="another-client")),
        "no aud or client_id": lambda: sign(issuer, standard_claims(aud=None)),
        "garbage": lambda: "not.a.jwt",
    }
    token = cases[case]()
    return token if token is None or case == "basic scheme" else f"Bearer {token}"


def hs256(issuer: LocalIssuer, claims: str) -> str:
    header = b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid}).encode())
    secret = issuer.key.as_pem(private=False)
    return (
        f"{header}.{claims}.{b64(hmac.new(secret, f'{header}.{claims}'.encode(), hashlib.sha256).digest())}"
    )


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
        ("garbage", "Invalid header"),
    ],
)
def test_a_bad_or_missing_token_is_a_401_and_the_function_never_runs(gateway, issuer, case, reason, caplog):
    caplog.set_level(logging.INFO, "local_stack.api")
    assert get(gateway, authorization=forged(issuer, case)) == UNAUTHORIZED
    assert gateway.events == []
    # Why, in the log for the developer (API Gateway's $context.authorizer.error).
    assert "401 GET /datasets/{dataset_id}/images: " in caplog.text
    assert reason in caplog.text


def test_public_routes_and_preflights_need_no_token(gateway):
    assert get(gateway, "/openapi.json")[0] == 200
    assert "authorizer" not in gateway.events[-1]["requestContext"]
    preflight = gateway.options(
        DATA_ROUTE, headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204
    assert len(gateway.events) == 1


def test_scopes_on_a_route_are_refused_at_start(template):
    body = template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"]
    scoped = {**body, "paths": {"/x": {"get": {"security": [{"JwtAuthorizer": ["images/read"]}]}}}}
    api = {"Type": "AWS::Serverless::HttpApi", "Properties": {"DefinitionBody": scoped}}
    with pytest.raises(ValueError, match="GET /x: scopes are not supported by the local stack"):
        route_authorizers(
            Names({**template, "Resources": {"HttpApi": api}}, parameters=auth_parameters("jwt", API_URL))
        )


# --- The issuer -------------------------------------------------------------------------------------


def test_the_discovery_document_and_the_jwks_describe_the_issuer(gateway, issuer):
    discovery = gateway.get("/_local/oidc/.well-known/openid-configuration").json
    assert (discovery["issuer"], discovery["jwks_uri"]) == (ISSUER, f"{ISSUER}/jwks")
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    (key,) = gateway.get("/_local/oidc/jwks").json["keys"]
    assert (key["kid"], key["alg"], key["use"], key["kty"]) == (issuer.key.kid, "RS256", "sig", "RSA")
    assert "d" not in key  # public only
    assert gateway.get("/_local/oidc/nothing").status_code == 404


def authorize_query(**changes) -> dict:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": "http://localhost:8080/callback",
        "code_challenge": b64(hashlib.sha256(b"v" * 43).digest()),
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
def test_authorization_requests_need_code_pkce_s256_our_client_and_a_local_redirect(gateway, changes):
    target = "/_local/oidc/authorize?" + urlencode(authorize_query(**changes))
    assert gateway.get(target).status_code == 400
    assert gateway.post(target, data={"sub": "alice"}).status_code == 400


def test_the_code_flow_with_pkce_gives_tokens_the_authorizer_accepts(gateway):
    target = "/_local/oidc/authorize?" + urlencode(authorize_query())
    page = gateway.get(target)
    assert page.status_code == 200
    assert b'<input id="sub" name="sub"' in page.data
    assert b'action="/_local/oidc/authorize?response_type=code&amp;' in page.data
    redirect = gateway.post(target, data={"sub": "bob"})
    assert redirect.status_code == 302
    location = urlsplit(redirect.headers["Location"])
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
    tokens = gateway.post("/_local/oidc/token", data=form).json
    assert (tokens["token_type"], tokens["expires_in"]) == ("Bearer", 3600)
    for name in ("access_token", "id_token"):
        assert get(gateway, authorization=f"Bearer {tokens[name]}")[0] == 200
        assert gateway.events[-1]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "bob"
    again = gateway.post("/_local/oidc/token", data=form)
    assert (again.status_code, again.json["error"]) == (400, "invalid_grant")  # single use
    wrong = {
        **form,
        "code": gateway.post(target, data={"sub": "bob"}).headers["Location"].split("code=")[1].split("&")[0],
    }
    wrong["code_verifier"] = "w" * 43
    assert gateway.post("/_local/oidc/token", data=wrong).json["error"] == "invalid_grant"


def test_the_dev_token_endpoint_checks_its_input(gateway, issuer):
    ok = gateway.post("/_local/oidc/dev/token", json={"sub": "alice", "ttl": 60})
    claims = jwt.decode(ok.json["token"], issuer.key).claims
    assert claims["exp"] - claims["iat"] == 60
    for body in (
        b"{}",
        b"[]",
        b"not json",
        b'{"sub": ""}',
        b'{"sub": "a", "ttl": 0}',
        b'{"sub": "a", "ttl": "9"}',
    ):
        assert gateway.post("/_local/oidc/dev/token", data=body).status_code == 400


def test_the_issuer_answers_cors_for_local_pages_only(gateway):
    local = gateway.options("/_local/oidc/token", headers={"Origin": "http://localhost:5173"})
    assert local.status_code == 204
    assert local.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    foreign = gateway.options("/_local/oidc/token", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in foreign.headers
