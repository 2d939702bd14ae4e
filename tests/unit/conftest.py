"""Unit-test fixtures: moto's in-process AWS with the table and bucket built from template.yaml."""

import base64
import copy
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import boto3
import botocore.client
import pytest
from moto import mock_aws
from moto.core.custom_responses_mock import reset_responses_mock
from moto.core.models import MockAWS, responses_mock

from local_stack.stack import make_dynamodb_writes_atomic
from local_stack.template import Names, create_resources, function_environment, load_template
from tests import sample_images

EVENTS = Path(__file__).parents[2] / "events"
OPEN = {"AuthMode": "open"}


@dataclass
class FakeContext:
    function_name: str = "ApiFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    log_group_name: str = "/aws/lambda/ApiFunction"
    log_stream_name: str = "2026/11/26/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@pytest.fixture(scope="session")
def template() -> dict:
    return load_template()


def _clear_caches() -> None:
    from uploads_core import images_bucket
    from uploads_core.settings import get_settings

    get_settings.cache_clear()
    images_bucket._s3.cache_clear()


class _SearchPaths(list):
    """A shared loader's search paths: each boto3.Session appends boto3's data folder once more."""

    def append(self, path) -> None:
        if path not in self:
            super().append(path)


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader():
    """Every botocore session of the test process shares one loader of the JSON service models.

    A session loads and parses each model it uses (~70 ms for S3's), and the code under test makes a
    session per client (pynamodb's connections, images_bucket after each settings change, each
    transaction): the unit tests spent most of their time parsing the same JSON. The models are
    read-only data; a Lambda container (one client of each) is not what these tests measure.
    """
    from botocore import loaders
    from botocore import session as botocore_session

    shared: dict = {}

    def create_loader(search_path_string=None):
        if search_path_string not in shared:
            loader = loaders.create_loader(search_path_string)
            loader._search_paths = _SearchPaths(loader.search_paths)
            shared[search_path_string] = loader
        return shared[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore_session, "create_loader", create_loader)
        yield


class _Same(list):
    """A list equal to another holding the same objects."""

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a is b for a, b in zip(self, other, strict=True))

    __hash__ = None


class World:
    """One moto for the whole session: the template's tables and bucket, built once and emptied
    before each test that uses them.

    Emptying is a few dict operations; building them (two tables with their indexes, the bucket
    with its versioning and CORS, through moto's API) costs ~30 ms. Moto's patching is on only
    during those tests: others start a moto of their own or talk to real servers. When something
    else than items and objects changed meanwhile (one of those tests reset moto, a test touched the
    bucket's configuration or used another service), the world is built again from the template.
    """

    def __init__(self, template: dict) -> None:
        self.template = template
        self.mock = mock_aws()
        self.names: dict[str, str] = {}
        self._built: list = []
        self.builds = self.empties = 0

    def enter(self) -> dict[str, str]:
        self.mock.start(reset=False)
        try:
            if self._built and self._state() == self._built:
                self._empty()
            else:
                self._build()
        except BaseException:
            self.exit()
            raise
        return dict(self.names)

    def exit(self) -> None:
        self.mock.stop(remove_data=False)
        if not MockAWS._nested_count:
            # start() registers moto's URL patterns with `responses` again; stop() keeps them.
            reset_responses_mock(responses_mock)

    def _build(self) -> None:
        self.mock.stop()  # removes every service's data, as the end of a `with mock_aws()`
        self.mock.start()
        self.names = create_resources(Names(self.template), boto3.client("dynamodb"), boto3.client("s3"))
        self._built = self._state()
        self.builds += 1

    @staticmethod
    def _backends():
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"], s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def _state(self) -> tuple:
        """What else than items and objects could change: the tables' keys and indexes (a failed
        transaction puts back a copy of a table), the services moto has in use, the buckets and every
        attribute of theirs (a configuration change replaces one), compared by identity."""
        from moto.core.base_backend import BackendDict

        dynamodb, s3 = self._backends()
        tables = {
            name: (t.schema, t.attr, [i.name for i in (*t.indexes, *t.global_indexes)], t.ttl, t.billing_mode)
            for name, t in dynamodb.tables.items()
        }
        objects = [*BackendDict._instances]
        for bucket in s3.buckets.values():
            objects += [bucket, *(v for k, v in vars(bucket).items() if k not in ("keys", "multiparts"))]
        return tables, _Same(objects)

    def _empty(self) -> None:
        from moto.core.model_instances import reset_model_data
        from moto.s3.models import FakeKey

        dynamodb, s3 = self._backends()
        for table in dynamodb.tables.values():
            table.items.clear()
        for bucket in s3.buckets.values():
            for _, versions in bucket.keys.iterlists():
                for key in versions:
                    if isinstance(key, FakeKey):
                        key.dispose()  # its temporary file
            for upload in bucket.multiparts.values():
                upload.dispose()
            bucket.keys.clear()
            bucket.multiparts.clear()
        reset_model_data()  # moto's list of every object it made, which would grow all session
        self.empties += 1

    def save(self) -> dict:
        """The tables' items and the buckets' objects (every version), for `restore`."""
        dynamodb, s3 = self._backends()
        return {
            "tables": {name: copy.deepcopy(table.items) for name, table in dynamodb.tables.items()},
            "buckets": {
                name: {key: copy.deepcopy(versions) for key, versions in bucket.keys.iterlists()}
                for name, bucket in s3.buckets.items()
            },
        }

    def restore(self, saved: dict) -> None:
        """Puts back what `save` returned, into the world a test's `aws` just emptied."""
        dynamodb, s3 = self._backends()
        for name, items in saved["tables"].items():
            assert not dynamodb.tables[name].items
            dynamodb.tables[name].items = copy.deepcopy(items)
        for name, keys in saved["buckets"].items():
            assert not s3.buckets[name].keys
            for key, versions in keys.items():
                s3.buckets[name].keys.setlist(key, copy.deepcopy(versions))


@pytest.fixture(scope="session")
def _moto_world(template) -> World:
    return World(template)


@pytest.fixture
def aws(template, _moto_world, monkeypatch):
    """Moto AWS with the template's resources, empty; the function's environment as Lambda would set it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    make_dynamodb_writes_atomic()  # as DynamoDB's are: the tests run real code in threads
    names = _moto_world.enter()
    try:
        # The note's open API; the `auth` fixture switches to AuthMode=jwt.
        for name, value in function_environment(template, "ApiFunction", parameters=OPEN).items():
            monkeypatch.setenv(name, value)
        # No S3 trigger runs by itself here: confirm-upload does not wait for one unless a test says so.
        monkeypatch.setenv("CONFIRM_WAIT_SECONDS", "0")
        _clear_caches()
        yield names
    finally:
        _moto_world.exit()
    _clear_caches()


@pytest.fixture(scope="module")
def _built() -> dict:
    return {}


@pytest.fixture
def built_once(aws, _moto_world, _built):
    """`built_once(key, build)`: in the module's first test that asks, `build()` (through the API)
    and its result; in every later one, the same tables and bucket put back as that build left them
    (every item, every object version) and the same result, without building them again."""

    def once(key: str, build):
        if key not in _built:
            value = build()
            _built[key] = (copy.deepcopy(value), _moto_world.save())
            return value
        value, saved = _built[key]
        _moto_world.restore(saved)
        return copy.deepcopy(value)

    return once


@pytest.fixture
def s3(aws):
    return boto3.client("s3")


@pytest.fixture
def bucket(aws, template):
    return function_environment(template, "ApiFunction")["IMAGES_BUCKET"]


@pytest.fixture
def aws_calls(monkeypatch):
    """Counts every AWS API call, whatever client makes it (boto3's or pynamodb's), and the presigned
    HEADs that images_bucket sends on the S3 client's HTTP session (each attempt) as HeadObject."""
    from uploads_core import images_bucket

    calls: Counter[tuple[str, str]] = Counter()
    original = botocore.client.BaseClient._make_api_call
    send_head = images_bucket._send_head

    def counting(self, operation_name, api_params):
        calls[(self.meta.service_model.service_name, operation_name)] += 1
        return original(self, operation_name, api_params)

    def counting_head(client, url):
        calls[("s3", "HeadObject")] += 1
        return send_head(client, url)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    monkeypatch.setattr(images_bucket, "_send_head", counting_head)
    return calls


def load_event(name: str) -> dict:
    return json.loads((EVENTS / "api" / f"{name}.json").read_text())


class Api:
    """Calls the real lambda_handler with the sample events of events/api, adjusted per test.

    `sub`: the caller, as API Gateway's JWT authorizer passes it (claims of a verified token); None:
    no authorizer ran (AuthMode=open).
    """

    def __init__(self, sub: str | None = None) -> None:
        from images_api.handler import lambda_handler

        self._handler = lambda_handler
        self.sub = sub

    def call(
        self,
        event_name: str,
        *,
        path: str | None = None,
        path_params: dict | None = None,
        query: dict | None = None,
        body: object = None,
        raw_body: str | None = None,
    ) -> "Reply":
        event = copy.deepcopy(load_event(event_name))
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        if self.sub is None:
            event["requestContext"].pop("authorizer", None)
            event["headers"].pop("authorization", None)
        else:
            claims = {"sub": self.sub, "iss": "https://issuer.example", "aud": "image-uploads"}
            event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
        if path is not None:
            event["rawPath"] = event["requestContext"]["http"]["path"] = path
        if path_params is not None:
            event["pathParameters"] = path_params
        if query is not None:
            event["rawQueryString"] = urlencode(query)
            event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
            if not query:
                event.pop("queryStringParameters")
        if body is not None or raw_body is not None:
            event["body"] = raw_body if raw_body is not None else json.dumps(body)
            event["isBase64Encoded"] = False
        response = self._handler(event, FakeContext())
        return Reply(response)

    def prepare(self, dataset_id: int, files: list[dict], **query) -> "Reply":
        return self.call(
            "prepare_upload",
            path=f"/datasets/{dataset_id}/images/prepare-upload",
            path_params={"dataset_id": str(dataset_id)},
            query=query,
            body={"files": files},
        )

    def confirm(self, dataset_id: int, image_ids: list[int]) -> "Reply":
        return self.call(
            "confirm_upload",
            path=f"/datasets/{dataset_id}/images/confirm-upload",
            path_params={"dataset_id": str(dataset_id)},
            body={"image_ids": image_ids},
        )

    def lookup(self, dataset_id: int, hashes: list[str]) -> "Reply":
        return self.call(
            "lookup_images",
            path=f"/datasets/{dataset_id}/images/lookup",
            path_params={"dataset_id": str(dataset_id)},
            body={"sha256": hashes},
        )

    def list(self, dataset_id: int, with_urls: bool = False, **query) -> "Reply":
        suffix = "/with-urls" if with_urls else ""
        return self.call(
            "list_images_with_urls" if with_urls else "list_images",
            path=f"/datasets/{dataset_id}/images{suffix}",
            path_params={"dataset_id": str(dataset_id)},
            query=query,
        )

    def image(self, event_name: str, image_id: object, **kwargs) -> "Reply":
        suffix = "/download-url" if event_name == "get_download_url" else ""
        return self.call(
            event_name, path=f"/images/{image_id}{suffix}", path_params={"image_id": str(image_id)}, **kwargs
        )


@dataclass
class Reply:
    raw: dict

    @property
    def status(self) -> int:
        return self.raw["statusCode"]

    @property
    def headers(self) -> dict:
        return {k.lower(): v for k, v in (self.raw.get("headers") or {}).items()}

    @property
    def json(self):
        body = self.raw.get("body") or ""
        if self.raw.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return json.loads(body)


@pytest.fixture
def api(aws) -> Api:
    return Api()


def jpeg_file(name: str = "car1.jpg", size: int = 1024, mime: str = "image/jpeg") -> dict:
    return {"filename": name, "file_size": size, "mime_type": mime}


@pytest.fixture
def uploaded(api, processor):
    """Prepares `n` images of a dataset, PUTs real JPEGs as a client would, lets the S3 trigger
    verify them (unless `judge=False`) and confirms them (unless `confirm=False`)."""

    def make(
        dataset_id: int = 1, n: int = 1, size: int = 1024, confirm: bool = True, judge: bool = True
    ) -> list[dict]:
        tickets = api.prepare(dataset_id, [jpeg_file(f"car{i}.jpg", size) for i in range(n)]).json["uploads"]
        # Other bytes for each image: a dataset keeps one image of the same bytes.
        records = [
            processor.put(ticket["s3_key"], sample_images.jpeg_of_size(size, tag=ticket["image_id"]))
            for ticket in tickets
        ]
        if judge:
            processor.deliver(*records)
        if confirm:
            assert api.confirm(dataset_id, [t["image_id"] for t in tickets]).status == 200
        return tickets

    return make


class Processor:
    """PUTs bytes as a client would and delivers the S3 event to ProcessUploadFunction's handler."""

    _sequence = 0

    def __init__(self, s3, bucket: str) -> None:
        from upload_processor.handler import lambda_handler

        self._handler = lambda_handler
        self.s3 = s3
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str = "image/jpeg") -> dict:
        """Stores the object and returns its S3 event record (key URL-encoded, next sequencer)."""
        from urllib.parse import quote_plus

        response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        Processor._sequence += 1
        record = copy.deepcopy(json.loads((EVENTS / "s3" / "object_created.json").read_text())["Records"][0])
        record["s3"]["bucket"]["name"] = self.bucket
        record["s3"]["object"].update(
            key=quote_plus(key, safe="/"),
            size=len(data),
            eTag=response["ETag"].strip('"'),
            versionId=response["VersionId"],
            sequencer=f"0066F1A2B3C4{Processor._sequence:06X}",
        )
        return record

    def deliver(self, *records: dict) -> dict:
        return self._handler({"Records": list(records)}, FakeContext(function_name="ProcessUploadFunction"))


@pytest.fixture
def processor(aws, s3, bucket, template, monkeypatch) -> Processor:
    for name, value in function_environment(template, "ProcessUploadFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORPHAN_RECHECK_SECONDS", "0")
    _clear_caches()
    return Processor(s3, bucket)


@pytest.fixture
def cleanup(aws, template, monkeypatch):
    """Runs CleanupFunction's handler with the sample Scheduled Event at a given time."""
    for name, value in function_environment(template, "CleanupFunction").items():
        monkeypatch.setenv(name, value)
    _clear_caches()
    from upload_cleanup.handler import lambda_handler

    def run(at: str) -> dict:
        event = json.loads((EVENTS / "schedule" / "scheduled_event.json").read_text())
        event["time"] = at
        return lambda_handler(event, FakeContext(function_name="CleanupFunction"))

    return run


@pytest.fixture
def invariants(aws, s3, bucket):
    """Checks the data-safety invariants over the whole bucket and table (see tests/invariants.py)."""
    from tests import invariants as checks

    def check(kept_uploaded=()) -> list[dict]:
        dynamodb = boto3.client("dynamodb")
        return checks.check(
            s3, bucket, dynamodb, aws["ImagesTable"], kept_uploaded, hashes_table=aws["HashesTable"]
        )

    return check


@pytest.fixture
def auth(aws, template, monkeypatch):
    """AuthMode=jwt: `auth("alice")` is an Api whose calls carry alice's verified token."""
    monkeypatch.setenv("AUTH_MODE", "jwt")
    _clear_caches()
    return Api


@pytest.fixture
def decoding_costs(monkeypatch):
    """Fakes the trigger's CPU clock: time stands still, except that a decode (ImageFile.load, which
    every plugin calls once its decoder is done) charges the seconds set by `decoding_costs(seconds)`."""
    from PIL import ImageFile

    from upload_processor import inspection

    clock = {"now": 0.0, "charge": 0.0}
    monkeypatch.setattr(inspection, "_cpu_time", lambda: clock["now"])
    real_load = ImageFile.ImageFile.load

    def load(self):
        clock["now"] += clock["charge"]
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return lambda seconds: clock.update(charge=seconds)
