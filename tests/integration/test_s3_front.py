"""The local S3 endpoint checks presigned requests as S3 does (local_stack/s3_front.py), over HTTP.

Moto's server behind the front, on a free port of its own; the expected codes and messages are the
ones S3 answers with.
"""

import base64
import hashlib
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import boto3
import botocore.session
import pytest
import requests
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local_stack.s3_front import S3Front
from uploads_core.presign import Presigner

BUCKET = "front-test"
BODY = b"\xff\xd8\xff\xe0 a small jpeg"
SIGNATURE_DOES_NOT_MATCH = (
    403,
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
)


@pytest.fixture(scope="module")
def endpoint():
    server = make_server(
        "127.0.0.1",
        0,
        S3Front(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    client(url).create_bucket(Bucket=BUCKET)
    yield url
    server.shutdown()
    server.server_close()


def client(url: str, **credentials: str):
    """A client as the functions make one: SigV4, path-style, a session token (Lambda's role has one)."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=credentials.get("key", "testing"),
        aws_secret_access_key=credentials.get("secret", "testing"),
        aws_session_token="testing",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def s3(endpoint):
    return client(endpoint)


def put_url(s3, key: str, body: bytes = BODY, expires: int = 300, **params) -> str:
    params = {"Bucket": BUCKET, "Key": key, "ContentType": "image/jpeg", "ContentLength": len(body), **params}
    return s3.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)


def put(url: str, body: bytes = BODY, content_type: str | None = "image/jpeg", **headers: str):
    if content_type is not None:
        headers["Content-Type"] = content_type
    return requests.put(url, data=body, headers=headers, timeout=10)


def error_of(response) -> ET.Element:
    return ET.fromstring(response.content)  # noqa: S314 - the answer of our own local endpoint


def refusal(response) -> tuple[int, str, str]:
    error = error_of(response)
    assert error.tag == "Error"
    assert error.findtext("RequestId")
    return response.status_code, error.findtext("Code"), error.findtext("Message")


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_valid_presigned_put_is_accepted_and_stored(s3):
    response = put(put_url(s3, "ok.jpg"))
    assert response.status_code == 200, response.text
    stored = s3.get_object(Bucket=BUCKET, Key="ok.jpg")
    assert (stored["Body"].read(), stored["ContentType"]) == (BODY, "image/jpeg")


def test_a_body_one_byte_longer_than_signed_is_refused(s3):
    assert refusal(put(put_url(s3, "longer.jpg"), BODY + b"x")) == SIGNATURE_DOES_NOT_MATCH
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=BUCKET, Key="longer.jpg")  # moto never saw it


def test_another_content_type_than_signed_is_refused(s3):
    assert refusal(put(put_url(s3, "type.jpg"), content_type="text/html")) == SIGNATURE_DOES_NOT_MATCH


def test_a_missing_signed_header_is_refused(s3):
    assert refusal(put(put_url(s3, "untyped.jpg"), content_type=None)) == SIGNATURE_DOES_NOT_MATCH


def test_a_tampered_signature_is_refused_with_what_was_signed(s3):
    url = put_url(s3, "tampered.jpg")
    signature = url.rsplit("=", 1)[1]
    tampered = url[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    response = put(tampered)
    assert refusal(response) == SIGNATURE_DOES_NOT_MATCH
    error = error_of(response)
    assert error.findtext("AWSAccessKeyId") == "testing"
    assert error.findtext("CanonicalRequest").startswith("PUT\n/front-test/tampered.jpg\n")
    assert error.findtext("StringToSign").startswith("AWS4-HMAC-SHA256\n")


def test_a_tampered_key_is_refused(s3):
    assert refusal(put(put_url(s3, "a.jpg").replace("/a.jpg?", "/b.jpg?"))) == SIGNATURE_DOES_NOT_MATCH


def test_an_expired_url_is_refused(s3):
    url = put_url(s3, "expired.jpg", expires=1)
    deadline = time.monotonic() + 10
    while (response := put(url)).status_code == 200:  # valid for its second, then refused
        assert time.monotonic() < deadline, "still accepted after 10 s"
        time.sleep(0.2)
    assert refusal(response) == (403, "AccessDenied", "Request has expired")
    error = error_of(response)
    assert error.findtext("X-Amz-Expires") == "1"
    expires, server_time = (
        datetime.strptime(error.findtext(name), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        for name in ("Expires", "ServerTime")
    )
    assert server_time >= expires


def test_an_unknown_access_key_is_refused(endpoint):
    stranger = client(endpoint, key="AKIASTRANGER", secret="whatever")
    response = put(put_url(stranger, "stranger.jpg"))
    assert refusal(response) == (
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    )


def test_a_checksum_that_does_not_match_the_body_is_refused(s3):
    wrong = sha256(b"other bytes")
    url = put_url(s3, "digest.jpg", ChecksumSHA256=wrong)  # signed: the client cannot drop it
    response = put(url, **{"x-amz-checksum-sha256": wrong})
    message = "The SHA256 you specified did not match the calculated checksum."  # what S3 answers
    assert refusal(response) == (400, "BadDigest", message)


def test_a_checksum_that_is_not_a_sha256_is_refused(s3):
    url = put_url(s3, "digest.jpg", ChecksumSHA256="bm90IGEgZGlnZXN0")
    response = put(url, **{"x-amz-checksum-sha256": "bm90IGEgZGlnZXN0"})
    assert refusal(response) == (400, "InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid.")


def test_the_right_checksum_is_accepted(s3):
    url = put_url(s3, "digest-ok.jpg", ChecksumSHA256=sha256(BODY))
    assert put(url, **{"x-amz-checksum-sha256": sha256(BODY)}).status_code == 200


def test_a_presigned_get_works_and_a_tampered_one_does_not(s3):
    s3.put_object(Bucket=BUCKET, Key="get.jpg", Body=BODY)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "get.jpg"}, ExpiresIn=60)
    response = requests.get(url, timeout=10)
    assert (response.status_code, response.content) == (200, BODY)
    assert refusal(requests.get(url.replace("get.jpg", "other.jpg"), timeout=10)) == SIGNATURE_DOES_NOT_MATCH
    assert requests.head(url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"), timeout=10).status_code == 403


def test_calls_signed_in_headers_preflights_and_moto_api_pass_untouched(s3, endpoint):
    rule = {"AllowedOrigins": ["*"], "AllowedMethods": ["PUT"], "AllowedHeaders": ["*"]}
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [rule]})
    s3.put_object(Bucket=BUCKET, Key="sdk.jpg", Body=BODY, ContentType="image/png")
    assert s3.head_object(Bucket=BUCKET, Key="sdk.jpg")["ContentType"] == "image/png"
    # A browser sends the preflight of a presigned PUT to the presigned URL itself, query included.
    # (moto answers 403 to a preflight of an existing key: the page PUTs new ones.)
    preflight = requests.options(
        put_url(s3, "new.jpg"),
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"]
    assert requests.get(f"{endpoint}/moto-api/data.json", timeout=10).status_code == 200


def test_a_refusal_is_readable_by_a_browser_page(s3):
    response = put(put_url(s3, "page.jpg"), content_type="text/plain", Origin="http://localhost:3000")
    assert response.status_code == 403
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_the_projects_presigner_makes_urls_the_front_accepts(endpoint, s3):
    # The functions' client (see uploads_core/images_bucket.py), whose URLs the presigner signs itself.
    session = botocore.session.get_session()
    session.set_credentials("testing", "testing", "testing")
    functions_client = session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    presigner = Presigner(functions_client, BUCKET)
    key = "datasets/1/images/voiture été (1)+.jpg"
    put_response = put(presigner.put(key, "image/jpeg", len(BODY), 300))
    assert put_response.status_code == 200, put_response.text
    assert presigner.fast  # signed by presign.py, not by botocore
    assert refusal(put(presigner.put(key, "image/jpeg", len(BODY) - 1, 300))) == SIGNATURE_DOES_NOT_MATCH

    version = put_response.headers.get("x-amz-version-id") or None
    download = requests.get(presigner.get(key, 300, version_id=version), timeout=10)
    assert (download.status_code, download.content) == (200, BODY)
