"""Presigned S3 GET and PUT URLs, byte for byte what the client's `generate_presigned_url` returns.

botocore spends over 100 µs per URL resolving endpoint rules, building and serialising a request and
deriving the SigV4 key; a batch of 1000 upload URLs pays that 1000 times. Here the URL prefix, host,
signing region and query parameter order are learnt once per client and credentials from URLs that
botocore signs itself (a probe, checked by reproducing it exactly), the derived signing key is cached per
(secret, date, region, service), and each URL costs one SHA-256, one HMAC and some string formatting.

Covered: SigV4 query signing of GetObject (optionally of one version) and HeadObject, and of PutObject with
Content-Type and Content-Length (and x-amz-checksum-sha256 when given), for whatever addressing the
client uses. Anything else (a probe we
cannot reproduce, unusual arguments, no credentials, a client whose `generate_presigned_url` was
replaced) goes to the client's own method.
"""

import hashlib
import hmac
import re
import time
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

_ALGORITHM = "AWS4-HMAC-SHA256"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_PUT_SIGNED = "content-length;content-type;host"
_PUT_CHECKSUM_SIGNED = "content-length;content-type;host;x-amz-checksum-sha256"
_MAX_EXPIRES = 604_800  # SigV4's limit; botocore does not check it, S3 refuses the URL
# Spaces, accents and every character botocore escapes in a key: the probe checks our encoding too.
_PROBE_KEY = "presign-probe/a b+é(1)~!*'@$&=,;:?#[].jpg"
_PROBE_TYPE = "image/jpeg"
_PROBE_CHECKSUM = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256 of nothing, in base64

# The clock botocore reads (datetime.now(timezone.utc)) is the system's real-time clock, like this one.
_clock = time.time


class _Shape(NamedTuple):
    """What the probe taught about one client, valid for the credentials it was signed with."""

    credentials: Any  # botocore ReadOnlyCredentials (access_key, secret_key, token)
    url_prefix: str  # everything before the encoded key: "https://bucket.s3.amazonaws.com/"
    path_prefix: str  # the canonical URI before the key: "/" or "/bucket/"
    host: str
    region: str
    service: str
    order: tuple[str, ...]  # auth parameter names in the order botocore writes them (Signature last)


class _Day(NamedTuple):
    """Everything that only changes with the date: key, scope and query templates ({0} date, {1} expiry)."""

    shape: _Shape
    date: str  # YYYYMMDD
    scope: str
    mac: hmac.HMAC  # keyed with the derived signing key; copied for each URL
    canonical_query: dict[str, str]  # by signed headers: the sorted query SigV4 hashes
    url_query: dict[str, str]  # by signed headers: the same parameters in botocore's order


@lru_cache(maxsize=16)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key: four HMACs, done once per day, region, service and secret."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


# The characters botocore leaves as they are in a key: a key's leading run of them (its prefix,
# "datasets/7/images/<uuid>_") is copied, and only the rest is percent-encoded.
_NEEDS_ENCODING = re.compile(r"[^A-Za-z0-9_.~/-]")


# Each character's escape in a key (its UTF-8 bytes percent-encoded, unreserved ones as they are),
# learnt as met: a third of quote()'s cost. Bounded, so that hostile file names cannot grow it.
_ESCAPED: dict[str, str] = {}
_ESCAPED_MAX = 4096


def _escape(char: str) -> str:
    escaped = quote(char.encode(), safe="/~")
    if len(_ESCAPED) < _ESCAPED_MAX:
        _ESCAPED[char] = escaped
    return escaped


def _encode_key(key: str) -> str:
    """botocore's encoding of a greedy URI label."""
    first = _NEEDS_ENCODING.search(key)
    if first is None:
        return key
    start, escaped = first.start(), _ESCAPED
    return key[:start] + "".join([escaped.get(char) or _escape(char) for char in key[start:]])


def _encode_value(value: str) -> str:
    return quote(value.encode(), safe="-_.~")  # botocore's percent_encode of a query value


def _plain_header_value(value: object) -> bool:
    """Values both botocore signers canonicalise to themselves (no folding, trimming or escaping)."""
    return (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and " ".join(value.split()) == value
        and value != "application/x-www-form-urlencoded; charset=utf-8"  # botocore drops that one
    )


class Presigner:
    """Presigned URLs of one bucket through one S3 client; thread-safe (state is replaced whole)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._shape: _Shape | None = None
        self._unsupported: object = None  # the credentials whose probe we could not reproduce
        self._second = (-1, "")  # (epoch second, its X-Amz-Date): formatted once a second
        self._day: _Day | None = None
        # The day's query templates filled in for one X-Amz-Date: (day, date, {(expiry, signed headers):
        # (canonical query, URL query)}). A session token makes them ~1 KB: formatted once a second.
        self._queries: tuple[_Day | None, str, dict] = (None, "", {})

    def put(
        self,
        key: str,
        content_type: str,
        content_length: int,
        expires_in: int,
        now: datetime | None = None,
        checksum_sha256: str | None = None,
    ) -> str:
        """`put_object` URL signing Content-Type and Content-Length (and, given its base64 value,
        x-amz-checksum-sha256), as botocore would sign it now."""
        plain = _plain_header_value(content_type) and type(content_length) is int and content_length >= 0
        if plain and (checksum_sha256 is None or _plain_header_value(checksum_sha256)):
            headers = f"content-length:{content_length}\ncontent-type:{content_type}\n"
            signed, after_host = _PUT_SIGNED, ""
            if checksum_sha256 is not None:
                signed, after_host = _PUT_CHECKSUM_SIGNED, f"x-amz-checksum-sha256:{checksum_sha256}\n"
            url = self._fast("PUT", key, headers, signed, expires_in, now, after_host=after_host)
            if url is not None:
                return url
        params = {
            "Bucket": self._bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": content_length,
        }
        if checksum_sha256 is not None:
            params["ChecksumSHA256"] = checksum_sha256
        return self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in)

    def get(
        self, key: str, expires_in: int, now: datetime | None = None, version_id: str | None = None
    ) -> str:
        """`get_object` URL (of exactly `version_id` when given), as botocore would sign it now."""
        if version_id is None or (type(version_id) is str and version_id):
            url = self._fast("GET", key, "", "host", expires_in, now, version_id)
            if url is not None:
                return url
        params = {"Bucket": self._bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def head(self, key: str, expires_in: int, now: datetime | None = None) -> str:
        """`head_object` URL, as botocore would sign it now: confirm-upload's presence checks."""
        url = self._fast("HEAD", key, "", "host", expires_in, now)
        if url is not None:
            return url
        return self._client.generate_presigned_url(
            "head_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_in
        )

    @property
    def fast(self) -> bool:
        """Whether the next URL would be signed here (learning the client's shape if needed)."""
        return self._current() is not None

    def _fast(
        self,
        method: str,
        key: str,
        headers: str,
        signed: str,
        expires: int,
        now: datetime | None,
        version_id: str | None = None,
        after_host: str = "",
    ) -> str | None:
        if type(key) is not str or not key or type(expires) is not int or not 0 < expires <= _MAX_EXPIRES:
            return None  # botocore validates these (or not) in its own way: let it
        shape = self._current()
        if shape is None:
            return None
        amz_date = self._amz_date(now)
        day = self._day
        if day is None or day.shape is not shape or day.date != amz_date[:8]:
            self._day = day = _day(shape, amz_date[:8])
        cached_day, cached_date, queries = self._queries
        if cached_day is not day or cached_date != amz_date:
            queries = {}
            self._queries = (day, amz_date, queries)
        pair = queries.get((expires, signed))
        if pair is None:
            pair = queries[expires, signed] = _queries(day, signed, expires, amz_date)
        try:
            return _sign(day, method, key, headers, signed, expires, amz_date, version_id, pair, after_host)
        except UnicodeError:  # lone surrogates in the key: botocore raises its own error
            return None

    def _amz_date(self, now: datetime | None) -> str:
        if now is not None:
            return now.strftime(_AMZ_DATE)
        second = int(_clock())
        if second != self._second[0]:
            self._second = (second, time.strftime(_AMZ_DATE, time.gmtime(second)))
        return self._second[1]

    def _current(self) -> _Shape | None:
        # A test spy or an instrumentation wrapper replaced the client's method: honour it.
        if "generate_presigned_url" in vars(self._client):
            return None
        credentials = getattr(getattr(self._client, "_request_signer", None), "_credentials", None)
        if credentials is None:
            return None  # anonymous (UNSIGNED) client, or a botocore without this attribute
        # Refreshable credentials (a role's) refresh here, as they do inside botocore.
        frozen = credentials.get_frozen_credentials()
        shape = self._shape
        if shape is not None and shape.credentials == frozen:
            return shape
        if frozen == self._unsupported:
            return None
        self._shape = shape = self._learn(frozen)
        if shape is None:
            self._unsupported = frozen
        return shape

    def _learn(self, credentials: Any) -> _Shape | None:
        """Asks botocore for PUT (with and without a checksum) and GET URLs and keeps their shape if we
        reproduce each exactly."""
        if not credentials.access_key or not credentials.secret_key or credentials.token == "":
            return None
        params = {"Bucket": self._bucket, "Key": _PROBE_KEY}
        probe_get = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
        params |= {"ContentType": _PROBE_TYPE, "ContentLength": 1}
        probe_put = self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=3600)
        params |= {"ChecksumSHA256": _PROBE_CHECKSUM}
        probe_checked = self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=3600)
        shape = _shape_of(probe_put, credentials)
        if shape is None:
            return None
        headers = f"content-length:1\ncontent-type:{_PROBE_TYPE}\n"
        checksum = f"x-amz-checksum-sha256:{_PROBE_CHECKSUM}\n"
        for url, method, head, signed, after_host in [
            (probe_put, "PUT", headers, _PUT_SIGNED, ""),
            (probe_checked, "PUT", headers, _PUT_CHECKSUM_SIGNED, checksum),
            (probe_get, "GET", "", "host", ""),
        ]:
            date = _query(url).get("X-Amz-Date", "")
            signed_here = _sign(
                _day(shape, date[:8]), method, _PROBE_KEY, head, signed, 3600, date, None, None, after_host
            )
            if signed_here != url:
                return None
        return shape


def _query(url: str) -> dict[str, str]:
    return dict(part.partition("=")[::2] for part in urlsplit(url).query.split("&"))


def _shape_of(url: str, credentials: Any) -> _Shape | None:
    parts = urlsplit(url)
    encoded = _encode_key(_PROBE_KEY)
    if parts.fragment or not parts.path.endswith(encoded):
        return None
    names = tuple(part.partition("=")[0] for part in parts.query.split("&"))
    expected = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"}
    if credentials.token is not None:
        expected.add("X-Amz-Security-Token")
    if names[-1:] != ("X-Amz-Signature",) or set(names[:-1]) != expected or len(names) != len(expected) + 1:
        return None  # other parameters (checksums, another algorithm...): not ours to reproduce
    scope = unquote(_query(url)["X-Amz-Credential"]).split("/")
    if len(scope) != 5 or scope[0] != credentials.access_key or scope[4] != "aws4_request":
        return None
    host = parts.netloc
    if parts.port == {"http": 80, "https": 443}.get(parts.scheme):
        host = host.rsplit(":", 1)[0]  # botocore signs the Host header without a default port
    path_prefix = parts.path[: len(parts.path) - len(encoded)]
    return _Shape(
        credentials=credentials,
        url_prefix=f"{parts.scheme}://{parts.netloc}{path_prefix}",
        path_prefix=path_prefix,
        host=host,
        region=scope[2],
        service=scope[3],
        order=names[:-1],
    )


def _day(shape: _Shape, date: str) -> _Day:
    creds = shape.credentials
    scope = f"{date}/{shape.region}/{shape.service}/aws4_request"
    fixed = {
        "X-Amz-Algorithm": _ALGORITHM,
        "X-Amz-Credential": _encode_value(f"{creds.access_key}/{scope}"),
        "X-Amz-Date": "{0}",
        "X-Amz-Expires": "{1}",
    }
    if creds.token is not None:
        fixed["X-Amz-Security-Token"] = _encode_value(creds.token)
    canonical_query, url_query = {}, {}
    for signed in (_PUT_SIGNED, _PUT_CHECKSUM_SIGNED, "host"):
        # Percent-encoded values hold no braces, so these are safe str.format templates.
        params = fixed | {"X-Amz-SignedHeaders": _encode_value(signed)}
        canonical_query[signed] = "&".join(f"{name}={params[name]}" for name in sorted(params))
        url_query[signed] = "&".join(f"{name}={params[name]}" for name in shape.order)
    key = signing_key(creds.secret_key, date, shape.region, shape.service)
    return _Day(shape, date, scope, hmac.new(key, digestmod=hashlib.sha256), canonical_query, url_query)


def _queries(day: _Day, signed: str, expires: int, amz_date: str) -> tuple[str, str]:
    """The canonical (sorted) query and the URL's query, without the signature."""
    return (
        day.canonical_query[signed].format(amz_date, expires),
        day.url_query[signed].format(amz_date, expires),
    )


def _sign(
    day: _Day,
    method: str,
    key: str,
    headers: str,
    signed: str,
    expires: int,
    amz_date: str,
    version_id: str | None = None,
    queries: tuple[str, str] | None = None,
    after_host: str = "",
) -> str:
    """SigV4 query signing (UNSIGNED-PAYLOAD, S3's unnormalised path), in botocore's parameter order.
    `headers` and `after_host`: the canonical headers sorted before and after `host`."""
    shape = day.shape
    encoded_key = _encode_key(key)
    canonical_query, url_query = queries or _queries(day, signed, expires, amz_date)
    query = canonical_query
    # botocore puts the operation's own parameter first in the URL; sorted, it follows every X-Amz-*.
    own = f"versionId={_encode_value(version_id)}" if version_id is not None else ""
    if own:
        query = f"{query}&{own}"
    canonical_request = (
        f"{method}\n{shape.path_prefix}{encoded_key}\n{query}\n"
        f"{headers}host:{shape.host}\n{after_host}\n{signed}\nUNSIGNED-PAYLOAD"
    )
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    mac = day.mac.copy()
    mac.update(f"{_ALGORITHM}\n{amz_date}\n{day.scope}\n{digest}".encode())
    query = f"{own}&{url_query}" if own else url_query
    return f"{shape.url_prefix}{encoded_key}?{query}&X-Amz-Signature={mac.hexdigest()}"
