"""The local presigner makes byte for byte the URLs botocore makes, and falls back to it otherwise.

botocore reads the clock through `get_current_datetime` (one binding in botocore.auth, one in
botocore.crt.auth when awscrt is installed, which changes the query parameter order): both are frozen,
and our signer gets the same instant. Both botocore signers (pure Python, as deployed, and CRT) are
the reference.
"""

from datetime import UTC, datetime, timedelta

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ParamValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uploads_core import presign
from uploads_core.presign import Presigner

NOW = datetime(2026, 11, 26, 23, 59, 58, tzinfo=UTC)

KEYS = [
    "datasets/1/images/0b1c2d3e-aaaa-bbbb-cccc-000000000000_car1.jpg",
    "datasets/7/images/u_voiture été (1).jpg",
    "a b+c~d(e)f!g*h'i@j$k&l=m,n;o:p?q#r[s]t%u^v`w{x}y|z<>\"\\.png",
    "日本語/写真 №2.webp",
    "emoji 🚗🚙.gif",
    "/leading/slash//double",
    "./dots/../x",
    "Ünïcödé NFD e\u0301.jpg",
    "tab\tand\nnewline.jpg",
    "x" * 900,
]

CREDENTIALS = {
    "with token": ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2lu/+=token=="),
    "no token": ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None),
}

# (region, endpoint, addressing style)
ENDPOINTS = {
    "virtual us-east-1": ("us-east-1", None, "virtual"),
    "virtual eu-west-3": ("eu-west-3", None, "virtual"),
    "path local": ("us-east-1", "http://127.0.0.1:4566", "path"),
    "path https default port": ("eu-west-1", "https://s3.example.test:443", "path"),
    "path with a base path": ("eu-west-1", "http://localhost:4566/base", "path"),
}

SIGNERS = {"python": botocore.auth.S3SigV4QueryAuth}
try:
    from botocore.crt.auth import CrtS3SigV4QueryAuth

    SIGNERS["crt"] = CrtS3SigV4QueryAuth
except ImportError:  # awscrt absent, as in Lambda
    pass


@pytest.fixture(params=sorted(SIGNERS))
def frozen(request, monkeypatch):
    """botocore signs at NOW with the given signer; returns a setter to move the clock."""
    clock = {"now": NOW}

    def current(remove_tzinfo=True):
        return clock["now"].replace(tzinfo=None) if remove_tzinfo else clock["now"]

    monkeypatch.setattr(botocore.auth, "get_current_datetime", current)
    if "crt" in SIGNERS:
        monkeypatch.setattr("botocore.crt.auth.get_current_datetime", current)
    monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "s3v4-query", SIGNERS[request.param])
    monkeypatch.setattr(presign, "_clock", lambda: clock["now"].timestamp())
    return clock


def make_client(endpoint="virtual us-east-1", credentials="with token", **config):
    region, url, style = ENDPOINTS[endpoint]
    access, secret, token = CREDENTIALS[credentials]
    session = boto3.Session(
        aws_access_key_id=access, aws_secret_access_key=secret, aws_session_token=token, region_name=region
    )
    config = Config(signature_version="s3v4", s3={"addressing_style": style}, **config)
    return session.client("s3", endpoint_url=url, config=config)


def reference_put(client, bucket, key, content_type="image/jpeg", length=1024, expires=3600, checksum=None):
    params = {"Bucket": bucket, "Key": key, "ContentType": content_type, "ContentLength": length}
    if checksum is not None:
        params["ChecksumSHA256"] = checksum
    return client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)


CHECKSUMS = [
    None,
    "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
]


def reference_get(client, bucket, key, expires=3600):
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )


@pytest.mark.parametrize("credentials", sorted(CREDENTIALS))
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_urls_are_botocores_byte_for_byte(frozen, endpoint, credentials):
    client = make_client(endpoint, credentials)
    presigner = Presigner(client, "images-bucket-123")
    assert presigner.fast

    for key in KEYS:
        for content_type, length, expires in [
            ("image/jpeg", 1024, 3600),
            ("image/webp", 0, 1),
            ("image/png", 10 << 20, 604800),
        ]:
            for checksum in CHECKSUMS:
                assert presigner.put(key, content_type, length, expires, checksum_sha256=checksum) == (
                    reference_put(client, "images-bucket-123", key, content_type, length, expires, checksum)
                )
        assert presigner.get(key, 600) == reference_get(client, "images-bucket-123", key, 600)
        assert presigner.head(key, 300) == client.generate_presigned_url(
            "head_object", Params={"Bucket": "images-bucket-123", "Key": key}, ExpiresIn=300
        )
        # The explicit instant gives the same URL as the (frozen) clock.
        assert presigner.get(key, 600, now=NOW) == presigner.get(key, 600)


def test_virtual_host_and_path_style_urls_look_as_expected(frozen):
    virtual = Presigner(make_client("virtual eu-west-3"), "bkt").get("a b.jpg", 60)
    assert virtual.startswith(
        "https://bkt.s3.eu-west-3.amazonaws.com/a%20b.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
    )
    local = Presigner(make_client("path local"), "bkt").put("a b.jpg", "image/png", 5, 60)
    assert local.startswith("http://127.0.0.1:4566/bkt/a%20b.jpg?")
    assert "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost" in local
    assert "&X-Amz-Security-Token=IQoJb3JpZ2lu%2F%2B%3Dtoken%3D%3D&" in local


def test_url_follows_the_clock_second_by_second(frozen):
    client = make_client()
    presigner = Presigner(client, "bkt")
    for step in (0, 1, 2, 3600 * 24):  # the last one crosses midnight: a new signing key
        frozen["now"] = NOW + timedelta(seconds=step)
        assert presigner.get("k.jpg", 60) == reference_get(client, "bkt", "k.jpg", 60)


def test_signing_key_is_derived_once_per_day_region_service_and_secret(frozen):
    presign.signing_key.cache_clear()
    presigner = Presigner(make_client(), "bkt")
    for i in range(200):
        presigner.put(f"k{i}.jpg", "image/jpeg", i + 1, 60)
    assert presign.signing_key.cache_info().misses == 1
    frozen["now"] = NOW + timedelta(days=1)
    presigner.get("k.jpg", 60)
    assert presign.signing_key.cache_info().misses == 2


class RotatingCredentials:
    """Stands for a role's RefreshableCredentials: what get_frozen_credentials returns changes."""

    def __init__(self, *sets: tuple[str, str, str | None]) -> None:
        self.current = ReadOnlyCredentials(*sets[0])
        self.method = "assume-role"

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self.current


def test_rotated_credentials_are_picked_up(frozen):
    client = make_client("path local")
    rotating = RotatingCredentials(("ASIAFIRST", "secret-one", "token-one"))
    client._request_signer._credentials = rotating
    presigner = Presigner(client, "bkt")

    first = presigner.put("k.jpg", "image/jpeg", 10, 60)
    assert first == reference_put(client, "bkt", "k.jpg", "image/jpeg", 10, 60)
    assert "ASIAFIRST" in first

    rotating.current = ReadOnlyCredentials("ASIASECOND", "secret-two", None)
    second = presigner.put("k.jpg", "image/jpeg", 10, 60)
    assert second == reference_put(client, "bkt", "k.jpg", "image/jpeg", 10, 60)
    assert "ASIASECOND" in second
    assert "X-Amz-Security-Token" not in second
    assert presigner.fast


@pytest.mark.parametrize(
    ("content_type", "length", "expires"),
    [
        ("image/jpeg; charset=é", 10, 60),  # not ASCII
        ("  image/jpeg", 10, 60),  # botocore trims header values
        ("application/x-www-form-urlencoded; charset=utf-8", 10, 60),  # botocore drops this one
        ("image/jpeg", 10, 604801),  # beyond SigV4's week
        ("image/jpeg", 10, 0),
    ],
)
def test_unusual_arguments_go_to_botocore(frozen, content_type, length, expires):
    client = make_client()
    ours = outcome(Presigner(client, "bkt").put, "k.jpg", content_type, length, expires)
    assert ours == outcome(reference_put, client, "bkt", "k.jpg", content_type, length, expires)


def outcome(function, *args):
    """The URL, or the type of error (the CRT signer refuses an expiry of 0)."""
    try:
        return function(*args)
    except Exception as exc:
        return type(exc)


def test_invalid_key_raises_botocores_error(frozen):
    with pytest.raises(ParamValidationError):
        Presigner(make_client(), "bkt").get("", 60)


@pytest.mark.parametrize("bucket", ["my.dotted.bucket", "Not_DNS_Compatible", "a" * 63])
def test_odd_bucket_names_give_botocores_url(frozen, bucket):
    client = make_client()
    assert Presigner(client, bucket).get("k.jpg", 60) == reference_get(client, bucket, "k.jpg", 60)


def test_unsigned_client_falls_back(frozen):
    client = boto3.client("s3", region_name="us-east-1", config=Config(signature_version=UNSIGNED))
    presigner = Presigner(client, "bkt")
    assert not presigner.fast
    assert presigner.get("k.jpg", 60) == reference_get(client, "bkt", "k.jpg", 60)


def test_a_replaced_generate_presigned_url_is_honoured(frozen):
    client = make_client()
    calls = []
    client.generate_presigned_url = lambda *args, **kwargs: calls.append((args, kwargs)) or "spied"
    assert Presigner(client, "bkt").get("k.jpg", 60) == "spied"
    assert calls


def test_images_bucket_uses_the_fast_path_with_the_functions_client(aws, frozen, monkeypatch):
    from uploads_core import images_bucket

    for endpoint in (None, "http://127.0.0.1:4566"):
        if endpoint:
            monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        images_bucket._s3.cache_clear()
        from uploads_core.settings import get_settings

        get_settings.cache_clear()
        client, bucket = images_bucket._s3(), images_bucket._bucket()
        key = "datasets/1/images/x_voiture été (1).jpg"
        assert images_bucket._presigner().fast
        assert images_bucket.generate_presigned_upload_url(key, "image/jpeg", 99, 600) == reference_put(
            client, bucket, key, "image/jpeg", 99, 600
        )
        assert images_bucket.generate_presigned_download_url(key, 600) == reference_get(
            client, bucket, key, 600
        )


VERSION_IDS = ["3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo", "null", "a/b=c d~é"]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_urls_of_one_object_version_are_botocores_byte_for_byte(frozen, endpoint):
    client = make_client(endpoint)
    presigner = Presigner(client, "images-bucket-123")
    for key in KEYS[:4]:
        for version_id in VERSION_IDS:
            reference = client.generate_presigned_url(
                "get_object",
                Params={"Bucket": "images-bucket-123", "Key": key, "VersionId": version_id},
                ExpiresIn=600,
            )
            assert presigner.get(key, 600, version_id=version_id) == reference
            assert "versionId=" in reference


_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.~%&"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.one_of(st.none(), st.text(_TOKEN_CHARS, min_size=1, max_size=1200)),
    requests=st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200),
            st.sampled_from([1, 60, 3600, 604800]),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_any_key_and_token_give_botocores_url(frozen, token, requests):
    # Several URLs of one second: the query formatted for one expiry and method is reused only for them.
    session = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        region_name="eu-west-1",
    )
    client = session.client("s3", config=Config(signature_version="s3v4"))
    presigner = Presigner(client, "images-bucket-123")
    for key, expires, put in requests:
        if put:
            checksum = CHECKSUMS[expires % 3]
            ours = presigner.put(key, "image/jpeg", 1024, expires, checksum_sha256=checksum)
            theirs = reference_put(client, "images-bucket-123", key, "image/jpeg", 1024, expires, checksum)
        else:
            ours, theirs = (
                presigner.get(key, expires),
                reference_get(client, "images-bucket-123", key, expires),
            )
        assert ours == theirs


def test_checksum_urls_are_signed_here_after_the_probe(frozen, monkeypatch):
    client = make_client()
    presigner = Presigner(client, "images-bucket-123")
    assert presigner.fast  # the probe: botocore signs its URLs once
    calls = []
    original = type(client).generate_presigned_url

    def counted(self, *args, **kwargs):
        calls.append(kwargs["Params"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(client), "generate_presigned_url", counted)
    for i in range(20):
        presigner.put(f"k{i}.jpg", "image/jpeg", 10, 600, checksum_sha256=CHECKSUMS[1])
    assert calls == []


def test_a_botocore_that_signs_checksums_otherwise_gets_every_url_to_sign(frozen, monkeypatch):
    client = make_client()
    original = type(client).generate_presigned_url

    def other_checksum_signing(self, operation, Params, ExpiresIn):
        url = original(self, operation, Params=Params, ExpiresIn=ExpiresIn)
        return (
            url.replace("X-Amz-Date=", "x-amz-sdk-checksum-algorithm=SHA256&X-Amz-Date=")
            if ("ChecksumSHA256" in Params)
            else url
        )

    monkeypatch.setattr(type(client), "generate_presigned_url", other_checksum_signing)
    presigner = Presigner(client, "images-bucket-123")

    assert not presigner.fast
    url = presigner.put("a.jpg", "image/jpeg", 1, 60, checksum_sha256=CHECKSUMS[1])
    assert "x-amz-sdk-checksum-algorithm" in url  # botocore's own URL


def test_the_escape_cache_stays_bounded_whatever_the_keys(frozen, monkeypatch):
    monkeypatch.setattr(presign, "_ESCAPED", {})
    client = make_client()
    presigner = Presigner(client, "images-bucket-123")
    for first in range(0x4E00, 0x4E00 + 5000, 250):  # 5000 distinct characters, 250 a key
        key = "datasets/1/images/" + "".join(map(chr, range(first, first + 250)))
        assert presigner.get(key, 60) == reference_get(client, "images-bucket-123", key, 60)
    assert len(presign._ESCAPED) == presign._ESCAPED_MAX
