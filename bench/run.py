"""`make bench`: the hot paths' speed and memory, each next to a reference measured in the same run.

Runs on a laptop against moto, in-process or as a server process (no AWS, no network). Prints one
table; exits 1 when a row misses its target. Ratios, not absolute times, are what the targets hold:
they travel between machines.
"""

import base64
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
# As pyproject's pytest pythonpath, plus the root for tests/sample_images.py.
PATHS = ["layers/common", "functions/api", "functions/process_upload", "functions/cleanup", "local", "."]
sys.path[:0] = [str(ROOT / p) for p in PATHS]

# Lambda's Python runtime has no awscrt: botocore signs with its pure-Python signer there, and here.
os.environ["BOTO_DISABLE_CRT"] = "true"

import boto3  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.client  # noqa: E402
from moto import mock_aws  # noqa: E402

from local_stack.template import Names, create_resources, function_environment, load_template  # noqa: E402

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    # Lambda's role credentials always carry a session token, ~1 KB of base64 (with + / = to escape).
    "AWS_SESSION_TOKEN": base64.b64encode(b"".join(bytes([i % 251]) * 3 for i in range(256))).decode(),
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
FUNCTIONS = {  # logical id → (code dir, handler module)
    "ApiFunction": ("functions/api", "images_api.handler"),
    "ProcessUploadFunction": ("functions/process_upload", "upload_processor.handler"),
    "CleanupFunction": ("functions/cleanup", "upload_cleanup.handler"),
}
BATCH = 1000
KIB = 1024


@dataclass
class Row:
    figure: str
    ours: str
    reference: str
    ratio: str
    target: str
    ok: bool | None  # None: reported, no target


def median_of(n: int, measure) -> float:
    return statistics.median(measure() for _ in range(n))


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# --- presigning -------------------------------------------------------------------------------------


def frozen_clocks(at: datetime):
    """Both botocore signers and ours read the same instant."""
    from uploads_core import presign

    def current(remove_tzinfo=True):
        return at.replace(tzinfo=None) if remove_tzinfo else at

    patches = [mock.patch.object(botocore.auth, "get_current_datetime", current)]
    if "botocore.crt.auth" in sys.modules:
        patches.append(mock.patch("botocore.crt.auth.get_current_datetime", current))
    patches.append(mock.patch.object(presign, "_clock", at.timestamp))
    return patches


def presign_rows() -> list[Row]:
    from uploads_core import images_bucket
    from uploads_core.keys import image_key

    client, bucket = images_bucket._s3(), images_bucket._bucket()
    keys = [image_key(7, f"voiture été ({i}).jpg") for i in range(BATCH)]

    def ours():
        for key in keys:
            images_bucket.generate_presigned_upload_url(key, "image/jpeg", 1_048_576, 3600)

    def boto():
        for key in keys:
            params = {"Bucket": bucket, "Key": key, "ContentType": "image/jpeg", "ContentLength": 1_048_576}
            client.generate_presigned_url("put_object", Params=params, ExpiresIn=3600)

    ours()  # first use learns the client's URL shape
    runs = [(seconds(ours), seconds(boto)) for _ in range(5)]  # interleaved: same machine state
    t_ours = statistics.median(r[0] for r in runs) / BATCH * 1e6
    t_boto = statistics.median(r[1] for r in runs) / BATCH * 1e6

    patches = frozen_clocks(datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC))
    for patch in patches:
        patch.start()
    try:
        same = sum(
            images_bucket.generate_presigned_upload_url(k, "image/jpeg", 1_048_576, 3600)
            == client.generate_presigned_url(
                "put_object",
                Params={"Bucket": bucket, "Key": k, "ContentType": "image/jpeg", "ContentLength": 1_048_576},
                ExpiresIn=3600,
            )
            and images_bucket.generate_presigned_download_url(k, 600)
            == client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=600)
            for k in keys
        )
    finally:
        for patch in patches:
            patch.stop()
    signer = "CRT" if "botocore.crt.auth" in sys.modules else "pure-Python"
    token = FAKE_AWS["AWS_SESSION_TOKEN"]
    return [
        Row(
            f"presign one upload URL, µs/URL (batch of {BATCH}, {len(token)}-char session token)",
            f"{t_ours:.1f}",
            f"{t_boto:.1f} (boto3, {signer} signer)",
            f"{t_boto / t_ours:.1f}x faster",
            "≥ 35x faster",
            t_boto / t_ours >= 35,
        ),
        Row(
            "same URLs as botocore (PUT and GET, frozen clock, session token)",
            f"{same}/{BATCH}",
            f"{BATCH}/{BATCH}",
            "",
            "all",
            same == BATCH,
        ),
    ]


# --- prepare-upload through the handler -------------------------------------------------------------


class CallMeter:
    """Counts AWS calls and the CPU time spent inside them (request building, moto, parsing)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.cpu = 0.0
        self._original = botocore.client.BaseClient._make_api_call

    def __enter__(self):
        meter, original = self, self._original

        def metered(client, operation, params):
            meter.calls[client.meta.service_model.service_name] += 1
            start = time.process_time()
            try:
                return original(client, operation, params)
            finally:
                meter.cpu += time.process_time() - start

        botocore.client.BaseClient._make_api_call = metered
        return self

    def __exit__(self, *exc) -> None:
        botocore.client.BaseClient._make_api_call = self._original


def prepare_event(dataset_id: int, n: int) -> dict:
    event = json.loads((ROOT / "events/api/prepare_upload.json").read_text())
    files = [{"filename": f"car {i}.jpg", "file_size": 1024 + i, "mime_type": "image/jpeg"} for i in range(n)]
    event["rawPath"] = event["requestContext"]["http"]["path"] = (
        f"/datasets/{dataset_id}/images/prepare-upload"
    )
    event["pathParameters"] = {"dataset_id": str(dataset_id)}
    event["body"], event["isBase64Encoded"] = json.dumps({"files": files}), False
    return event


CONTEXT = SimpleNamespace(
    function_name="ApiFunction",
    function_version="$LATEST",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ApiFunction",
    memory_limit_in_mb=512,
    aws_request_id="bench",
    log_group_name="/aws/lambda/ApiFunction",
    log_stream_name="bench",
    get_remaining_time_in_millis=lambda: 29_000,
)


def prepare_rows() -> list[Row]:
    from images_api.handler import lambda_handler
    from uploads_core.presign import Presigner

    def invoke() -> CallMeter:
        with CallMeter() as meter:
            start = time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):  # the metrics' EMF line
                reply = lambda_handler(prepare_event(1, BATCH), CONTEXT)
            meter.total = time.process_time() - start
        assert reply["statusCode"] == 200, reply
        return meter

    invoke()  # cold path (pynamodb's and the presigner's first use) not counted
    counted = invoke()
    ddb, s3 = counted.calls["dynamodb"], counted.calls["s3"]
    want_ddb = 1 + math.ceil(BATCH / 25)

    def handler_cpu() -> float:
        meter = invoke()
        return (meter.total - meter.cpu) * 1000

    ours = median_of(5, handler_cpu)
    with mock.patch.object(Presigner, "_fast", return_value=None):  # every URL through boto3
        boto = median_of(5, handler_cpu)
    return [
        Row(
            f"prepare-upload of {BATCH} files: DynamoDB / S3 calls",
            f"{ddb} / {s3}",
            f"{want_ddb} / 0",
            "",
            "exactly",
            (ddb, s3) == (want_ddb, 0),
        ),
        Row(
            f"handler CPU ms, prepare-upload of {BATCH} files (AWS calls excluded)",
            f"{ours:.0f}",
            f"{boto:.0f} (boto3 presign per URL)",
            f"{ours / boto:.2f}x",
            "report both",
            None,
        ),
    ]


# --- confirm-upload of 1000 ids, with AWS latency ---------------------------------------------------

# Per-call latency added in front of moto: HeadObject and UpdateItem as measured from a Lambda in the
# bucket's region (issue 15); BatchGetItem (100 keys) and ListObjectVersions (a page of 1000) assumed.
AWS_LATENCY = {
    "HeadObject": 0.015,
    "UpdateItem": 0.0065,
    "BatchGetItem": 0.010,
    "ListObjectVersions": 0.150,
}


def seed_images(dataset: int, ids, status, file_size: int) -> list:
    """Records of `ids` in `dataset` with `status`, written straight to the table (no API call)."""
    from uploads_core import images_table
    from uploads_core.keys import image_key
    from uploads_core.models import Image, utc_now

    now = utc_now()
    images = [
        Image(
            id=i,
            dataset_id=dataset,
            filename=f"car{i}.jpg",
            s3_key=image_key(dataset, f"car{i}.jpg"),  # random, as the API's: spread over the listing
            file_size=file_size,
            mime_type="image/jpeg",
            status=status,
            created_at=now,
            updated_at=now,
        )
        for i in ids
    ]
    images_table.put_new(images)
    return images


def confirm_event(dataset_id: int, image_ids: list[int]) -> dict:
    event = json.loads((ROOT / "events/api/confirm_upload.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = (
        f"/datasets/{dataset_id}/images/confirm-upload"
    )
    event["pathParameters"] = {"dataset_id": str(dataset_id)}
    event["body"], event["isBase64Encoded"] = json.dumps({"image_ids": image_ids}), False
    return event


_CALLS_PATH = "/__bench/calls"  # the latency server's request counts (and its CPU time); reading resets


def _operation(environ: dict) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # DynamoDB: "DynamoDB_20120810.UpdateItem"
        return target.rpartition(".")[2]
    if environ["REQUEST_METHOD"] == "HEAD":  # S3: only objects are HEADed here
        return "HeadObject"
    if environ["REQUEST_METHOD"] == "GET" and "versions" in environ.get("QUERY_STRING", "").split("&"):
        return "ListObjectVersions"
    return f"S3 {environ['REQUEST_METHOD']}"


def serve_moto(port: int, latency: dict[str, float]) -> None:
    """moto's server with `latency` slept in front of each request (in the server, so it is time
    the client waits on its socket, whatever sent the request: botocore or a presigned HEAD), and a
    count of the requests that reached it, by operation."""
    from moto import backends
    from moto.server import DomainDispatcherApplication, create_backend_app
    from waitress import serve

    from local_stack.stack import keep_no_dead_objects, list_versions_without_copying_bytes

    # moto's dispatcher lists its own package folder (listdir + ~180 stat calls) on every request,
    # ~45% of its CPU per HEAD: the folder does not change, list it once. Routing stays moto's.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    # The local stack's moto (local_stack/stack.py): a listing copies no object bytes, and keeps nothing.
    keep_no_dead_objects()
    list_versions_without_copying_bytes()
    moto_app = DomainDispatcherApplication(create_backend_app)
    calls: Counter[str] = Counter()
    cpu: Counter[str] = Counter()  # moto's CPU time per operation (its threads' time answering them)
    lock = threading.Lock()

    def app(environ, start_response):
        if environ["PATH_INFO"] == _CALLS_PATH:
            with lock:
                body = json.dumps({"calls": dict(calls), "cpu": dict(cpu)}).encode()
                calls.clear()
                cpu.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        operation = _operation(environ)
        with lock:
            calls[operation] += 1
        time.sleep(latency.get(operation, 0.0))
        started = time.thread_time()
        answer = list(moto_app(environ, start_response))
        with lock:
            cpu[operation] += time.thread_time() - started
        return answer

    # waitress, not moto_server's werkzeug: werkzeug closes the connection after every request (a
    # new TCP connection and server thread per call), where AWS keeps them alive for the client's pool.
    serve(app, host="127.0.0.1", port=port, threads=64, connection_limit=256, _quiet=True)


def server_calls(endpoint: str) -> tuple[Counter[str], Counter[str]]:
    """The requests that reached the latency server since the last look, and moto's CPU time (s) on
    them, by operation."""
    import urllib.request

    with urllib.request.urlopen(endpoint + _CALLS_PATH) as reply:  # noqa: S310 - our own local server
        answer = json.loads(reply.read())
    return Counter(answer["calls"]), Counter(answer["cpu"])


@contextlib.contextmanager
def moto_server(template: dict, latency: bool = False):
    """A moto server process and the template's resources (with AWS_LATENCY in front of each request,
    if asked); yields the environment that points at it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(  # noqa: S603 - this script, as the latency server
        [sys.executable, __file__, "moto-server", str(port), "latency" if latency else "none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = FAKE_AWS | {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.1)
        with mock.patch.dict(os.environ, env):
            create_resources(Names(template), boto3.client("dynamodb"), boto3.client("s3"))
        yield env
    finally:
        server.terminate()
        server.wait()


def confirm_rows_against_moto_server(template: dict) -> list[Row]:
    """In a fresh interpreter whose AWS is a moto server of its own process: moto's work (its CPU)
    is then not on the measured process's GIL, as AWS's is not in Lambda."""
    with moto_server(template, latency=True) as env:
        api = function_environment(template, "ApiFunction", parameters={"AuthMode": "open"})
        env = os.environ | env | api
        out = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "confirm"],
            env=env | {"POWERTOOLS_LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            check=True,
        )
    return [Row(**row) for row in json.loads(out.stdout)]


def confirm_rows() -> list[Row]:
    from images_api.handler import lambda_handler
    from uploads_core import images_bucket, images_table
    from uploads_core.keys import images_prefix
    from uploads_core.models import ImageStatus
    from uploads_core.settings import get_settings

    dataset = 11

    def records(present: bool) -> list[int]:
        ids = images_table.reserve_ids(BATCH)
        images = seed_images(dataset, ids, ImageStatus.UPLOADING, file_size=4)
        if present:
            for image in images:
                images_bucket.put_file(image.s3_key, b"\xff\xd8\xff\xd9", "image/jpeg")
        return list(ids)

    endpoint = os.environ["AWS_ENDPOINT_URL"]

    def confirm(ids: list[int]) -> tuple[float, float, Counter[str], Counter[str], dict]:
        server_calls(endpoint)
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            reply = lambda_handler(confirm_event(dataset, ids), CONTEXT)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        calls, server_cpu = server_calls(endpoint)
        assert reply["statusCode"] == 200, reply
        return wall, cpu, calls, server_cpu, json.loads(reply["body"])

    # The wait for verdicts is the trigger's time, not confirm's: the present row stops at once.
    os.environ["CONFIRM_WAIT_SECONDS"] = "0"
    get_settings.cache_clear()
    confirm(records(True)[:10])  # first use of the clients, not counted; 1000 objects already there
    rows = []
    for present, what in [(True, "present, unjudged"), (False, "missing")]:
        # Paired: ours, then the path before issue 15 (botocore's HeadObject per key, no listing).
        ids = records(present)
        pages = (
            images_bucket._s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=get_settings().images_bucket, Prefix=images_prefix(dataset))
        )
        objects = sum(page["KeyCount"] for page in pages)
        wall, cpu, counts, server_cpu, body = confirm(ids)  # each takes seconds: one run
        with (
            mock.patch.object(images_bucket, "_head_presigned", images_bucket.head),
            mock.patch.object(images_bucket, "_LIST_WORTH", math.inf),
        ):
            ref_wall, ref_cpu, ref_counts, ref_server_cpu, ref_body = confirm(records(present))
        for reply in (body, ref_body):
            if present:
                assert reply["pending_count"] == BATCH, reply
            else:
                assert (reply["updated_count"], reply["pending_count"]) == (0, 0), reply

        def listed(counts: Counter[str], server_cpu: Counter[str]) -> str:
            """Each operation's count and moto's CPU on them: what the wall time cannot go below."""
            each = ", ".join(f"{n} {op} {server_cpu[op]:.2f} s" for op, n in counts.most_common())
            return f"moto {server_cpu.total():.2f} s: {each}"

        rows.append(
            Row(
                f"confirm-upload of {BATCH} {what} ids in a dataset of {objects} objects,"
                " wall s with AWS latency",
                f"{wall:.2f} (CPU {cpu:.2f} s; {listed(counts, server_cpu)})",
                f"{ref_wall:.2f} (botocore HeadObject; CPU {ref_cpu:.2f} s;"
                f" {listed(ref_counts, ref_server_cpu)})",
                f"{wall / ref_wall:.2f}x",
                "≤ 1.5 s",
                wall <= 1.5,
            )
        )
    os.environ.pop("CONFIRM_WAIT_SECONDS")
    get_settings.cache_clear()
    return rows


# --- content-addressed prepare-upload ----------------------------------------------------------------


def empty_tables() -> None:
    from moto.dynamodb.models import dynamodb_backends

    for backend in dynamodb_backends["123456789012"].values():
        for table in backend.tables.values():
            table.items.clear()


def hashed_prepare_rows() -> list[Row]:
    """prepare-upload of BATCH files with a `sha256` each: calls per batch (new bytes, then the same
    bytes again), and the handler's CPU against the same batch without hashes."""
    from images_api.handler import lambda_handler

    def invoke(dataset_id: int, hashed: bool, empty: bool = True) -> CallMeter:
        if empty:
            empty_tables()  # moto copies a whole table for each transaction: keep them small
        event = prepare_event(dataset_id, BATCH)
        if hashed:
            body = json.loads(event["body"])
            for i, file in enumerate(body["files"]):
                file["sha256"] = f"{i:064x}"
            event["body"] = json.dumps(body)
        ops: Counter[str] = Counter()
        with CallMeter() as meter:
            metered = botocore.client.BaseClient._make_api_call

            def by_operation(client, operation, params):
                ops[operation] += 1
                return metered(client, operation, params)

            botocore.client.BaseClient._make_api_call = by_operation
            start = time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):
                reply = lambda_handler(event, CONTEXT)
            meter.total = time.process_time() - start
        assert reply["statusCode"] == 200, reply
        meter.ops = ops
        return meter

    # prepare_rows ran first: pynamodb's and the presigner's first use are behind us. Few runs: moto
    # deep-copies a table for each item of a transaction (its cost, outside the CPU figure, grows as n²).
    new = invoke(101, hashed=True)  # bytes nobody holds
    again = invoke(101, hashed=True, empty=False)  # the same bytes, being uploaded: the same images back
    want_new = {
        "BatchGetItem": math.ceil(BATCH / 100),
        "UpdateItem": 1,
        "TransactWriteItems": math.ceil(BATCH / 50),
    }
    want_again = {"BatchGetItem": math.ceil(BATCH / 100)}

    datasets = iter(range(200, 300))

    def cpu(hashed: bool) -> float:
        meter = invoke(next(datasets), hashed)
        return (meter.total - meter.cpu) * 1000

    runs = [(cpu(True), cpu(False))]
    with_hash = statistics.median(r[0] for r in runs)
    without = statistics.median(r[1] for r in runs)
    show = lambda ops: " + ".join(f"{n} {op}" for op, n in sorted(ops.items()))  # noqa: E731
    return [
        Row(
            f"prepare-upload of {BATCH} hashed files, new bytes: DynamoDB calls",
            show(new.ops),
            show(want_new),
            "",
            "exactly",
            dict(new.ops) == want_new and new.calls["s3"] == 0,
        ),
        Row(
            f"prepare-upload of the same {BATCH} hashed files again: DynamoDB calls",
            show(again.ops),
            show(want_again),
            "",
            "exactly",
            dict(again.ops) == want_again,
        ),
        Row(
            f"handler CPU ms, prepare-upload of {BATCH} hashed files (AWS calls excluded)",
            f"{with_hash:.0f}",
            f"{without:.0f} (no hashes)",
            f"{with_hash / without:.2f}x",
            "report both",
            None,
        ),
    ]


def trigger_hash_rows() -> list[Row]:
    """The trigger's SHA-256 of the bytes it reads: inspect() through the hashing reader, against bare."""
    from PIL import Image

    from upload_processor.inspection import inspect
    from upload_processor.logic import HashingReader

    out = io.BytesIO()
    Image.effect_noise((2400, 1600), 40).convert("RGB").save(out, "JPEG", quality=92)
    data = out.getvalue()

    def run(hashed: bool) -> float:
        source = io.BytesIO(data)
        start = time.process_time()
        reader = HashingReader(source, len(data)) if hashed else source
        inspect(reader, size=len(data), declared_mime="image/jpeg", declared_size=len(data))
        if hashed:
            assert reader.hexdigest() is not None
        return (time.process_time() - start) * 1000

    runs = [(run(True), run(False)) for _ in range(5)]
    ours, bare = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    return [
        Row(
            f"trigger CPU ms, a {len(data) / KIB / KIB:.1f} MiB 3.8 MP JPEG, hashed while inspected",
            f"{ours:.0f}",
            f"{bare:.0f} (inspection alone)",
            f"{ours / bare:.2f}x",
            "≤ 1.2x",
            ours / bare <= 1.2,
        )
    ]


# --- list page depth --------------------------------------------------------------------------------


def list_rows() -> list[Row]:
    from images_api import cursor as cursors
    from images_api.access import Caller
    from images_api.logic import list_images

    OPEN = Caller(sub=None)  # AuthMode=open: no role check
    from uploads_core import images_table
    from uploads_core.models import ImageStatus

    dataset, total, limit, depth = 9, 10_000, 100, 9_900
    ids = images_table.reserve_ids(total)
    seed_images(dataset, ids, ImageStatus.UPLOADED, file_size=1024)
    cursor = cursors.encode(dataset, None, ids[depth - 1])
    deep_page = list_images(OPEN, dataset, None, 0, limit, cursor).items
    assert [i.id for i in deep_page] == list(ids[depth:]), "the cursor page is not the 9,901st to 10,000th"

    def page(cursor: str | None) -> tuple[float, float, int]:
        """(CPU ms outside AWS calls, wall ms including moto, DynamoDB calls) of one page."""
        with CallMeter() as meter:
            cpu, wall = time.process_time(), time.perf_counter()
            list_images(OPEN, dataset, None, 0, limit, cursor)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return (cpu - meter.cpu) * 1000, wall * 1000, meter.calls["dynamodb"]

    runs = [(page(None), page(cursor)) for _ in range(7)]  # interleaved
    first_cpu, deep_cpu = (statistics.median(r[i][0] for r in runs) for i in (0, 1))
    first_wall, deep_wall = (statistics.median(r[i][1] for r in runs) for i in (0, 1))
    calls = runs[-1][1][2]
    return [
        Row(
            f"list page at depth {depth:,} with the cursor ({total:,} images): CPU ms, AWS calls excluded",
            f"{deep_cpu:.1f} ({calls} Query)",
            f"{first_cpu:.1f} (first page)",
            f"{deep_cpu / first_cpu:.2f}x",
            "≤ 1.2x",
            deep_cpu / first_cpu <= 1.2,
        ),
        Row(
            "the same pages, wall ms including moto's Query (moto scans the whole partition)",
            f"{deep_wall:.0f}",
            f"{first_wall:.0f} (first page)",
            f"{deep_wall / first_wall:.2f}x",
            "report",
            None,
        ),
    ]


# --- bytes read by the processor --------------------------------------------------------------------


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int, /) -> bytes:
        chunk = self._data.read(size)
        self.read_bytes += len(chunk)
        return chunk


def big_png_bomb(side: int = 30_000) -> bytes:
    """A 900 MP PNG whose (zero) pixel data is really there, compressed: a few hundred KiB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row_block = zlib.compressobj(9), b"\0" * ((side + 1) * 100)  # grey, 8-bit: filter byte + side
    idat = b"".join(packer.compress(row_block) for _ in range(side // 100)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bytes_read_rows() -> list[Row]:
    from tests.sample_images import HTML
    from upload_processor.inspection import Rejected, inspect

    cases = {
        "a 10 MB non-image": (HTML * (10_000_000 // len(HTML) + 1))[:10_000_000],
        "a 900 MP PNG bomb": big_png_bomb(),
    }
    rows = []
    for name, data in cases.items():
        source = CountingSource(data)
        try:
            inspect(source, size=len(data), declared_mime="image/png", declared_size=len(data))
        except Rejected as exc:
            code = exc.code
        else:
            code = "accepted!"
        rows.append(
            Row(
                f"bytes read by the processor to reject {name} ({code})",
                f"{source.read_bytes / KIB:.0f} KiB",
                f"{len(data) / KIB:,.0f} KiB (object)",
                f"{source.read_bytes / len(data):.2%}",
                "≤ 64 KiB",
                source.read_bytes <= 64 * KIB and code != "accepted!",
            )
        )
    return rows


# --- fresh interpreters -----------------------------------------------------------------------------


def child(args: list[str], pythonpath: list[str], env: dict[str, str]) -> float:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    full_env |= env | {"PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in pythonpath)}
    out = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / "bench/child.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


# Like Lambda: the `make build` artifact (with its bytecode), this machine's builds of its native
# distributions first on the path (local/build_check.py), a moto server as AWS. function -> (reference
# clients, reference first call, target).
INIT = {
    "ApiFunction": ("s3,dynamodb", "dynamodb.get_item", 1.5),
    "ProcessUploadFunction": ("s3,dynamodb", "dynamodb.query", 1.3),
    "CleanupFunction": ("dynamodb", "dynamodb.query", 1.3),
}


# Pairs (ours, reference) per row; the ratio is the median of the pairs' ratios, the range beside it.
INIT_RUNS = 7

TRACE_ID = "Root=1-6745c0de-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


def init_rows(template: dict) -> list[Row]:
    import build_check

    if not build_check.BUILD.exists():
        return [
            Row("init + first invocation from the build", "no .aws-sam/build", "", "", "make build", False)
        ]
    paths = build_check.artifact_paths(template, build_check.BUILD)
    natives = build_check.host_natives(
        build_check.native_distributions(p for ps in paths.values() for p in ps)
    )
    rows = []
    with moto_server(template) as aws, tempfile.TemporaryDirectory() as tmp:
        events = init_events(template, aws, Path(tmp))
        for function, (services, call, target) in INIT.items():
            handler = build_check.functions(template)[function].handler
            path = [str(p) for p in natives + paths[function]]
            base = aws | function_environment(template, function, parameters={"AuthMode": "open"})
            base |= {
                "AWS_LAMBDA_FUNCTION_NAME": function,
                "ORPHAN_RECHECK_SECONDS": "0",
                "PATH": os.environ["PATH"],
            }
            traced = base | {
                "LAMBDA_TASK_ROOT": path[-len(paths[function])],
                "_X_AMZN_TRACE_ID": TRACE_ID,
                "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            }

            def run(args: list[str], env: dict[str, str], path: list[str] = path) -> dict[str, float]:
                out = subprocess.run(  # noqa: S603 - our own interpreter and script
                    [sys.executable, "-I", "-S", str(ROOT / "bench/child.py"), *args, *path],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                return json.loads(out.stdout.strip().splitlines()[-1])

            ours_args = ["init", handler, str(events[function])]
            ref_args = ["init-reference", services, call]
            run(ours_args, base)  # warm the disk cache
            for label, env in [("", base), (", Tracing: Active", traced)]:
                # Interleaved pairs: a burst of load on the shared machine hits both sides of a pair.
                runs = [(run(ours_args, env), run(ref_args, base)) for _ in range(INIT_RUNS)]
                # CPU seconds aside: less swayed by the other engineers' load than wall time.
                cpu = statistics.median(r[0].pop("cpu") / r[1].pop("cpu") for r in runs)
                ours = {k: statistics.median(r[0][k] for r in runs) * 1000 for k in runs[0][0]}
                ref = {k: statistics.median(r[1][k] for r in runs) * 1000 for k in runs[0][1]}
                total = statistics.median(sum(r[0].values()) for r in runs) * 1000
                ref_total = statistics.median(sum(r[1].values()) for r in runs) * 1000
                ratios = sorted(sum(r[0].values()) / sum(r[1].values()) for r in runs)
                ratio = statistics.median(ratios)
                rows.append(
                    Row(
                        f"init + first invocation of {function}{label}, ms from the build",
                        f"{total:.0f} (" + ", ".join(f"{k} {v:.0f}" for k, v in ours.items()) + ")",
                        f"{ref_total:.0f} (boto3: " + ", ".join(f"{k} {v:.0f}" for k, v in ref.items()) + ")",
                        f"{ratio:.2f}x ({ratios[0]:.2f} to {ratios[-1]:.2f}; CPU {cpu:.2f}x)",
                        f"≤ {target}x",
                        ratio <= target,
                    )
                )
    return rows


def init_events(template: dict, aws: dict[str, str], folder: Path) -> dict[str, Path]:
    """A prepare-upload of one file; an S3 event of an object with no record (an orphan, removed);
    the schedule's event."""
    bucket = function_environment(template, "ProcessUploadFunction")["IMAGES_BUCKET"]
    with mock.patch.dict(os.environ, aws):
        version = boto3.client("s3").put_object(Bucket=bucket, Key="datasets/1/images/orphan.jpg", Body=b"x")
    s3_event = json.loads((ROOT / "events/s3/object_created.json").read_text())
    s3_event["Records"][0]["s3"]["bucket"]["name"] = bucket
    s3_event["Records"][0]["s3"]["object"] |= {
        "key": "datasets/1/images/orphan.jpg",
        "size": 1,
        "versionId": version["VersionId"],
    }
    events = {
        "ApiFunction": prepare_event(1, 1),
        "ProcessUploadFunction": s3_event,
        "CleanupFunction": json.loads((ROOT / "events/schedule/scheduled_event.json").read_text()),
    }
    files = {}
    for function, event in events.items():
        files[function] = folder / f"{function}.json"
        files[function].write_text(json.dumps(event))
    return files


def rss_rows() -> list[Row]:
    from PIL import Image

    # A photo-like 24 MP JPEG: a gradient with noise, so libjpeg has real work (several MB).
    gradient = Image.linear_gradient("L").resize((6000, 4000))
    noise = Image.effect_noise((6000, 4000), 40)
    img = Image.merge("RGB", (gradient, noise, Image.blend(gradient, noise, 0.5)))
    with tempfile.NamedTemporaryFile(suffix=".jpg", delete=False) as fh:
        img.save(fh, "JPEG", quality=85)
        path = fh.name
    del img, gradient, noise
    try:
        size = os.path.getsize(path)
        paths = ["layers/common", "functions/process_upload"]
        runs = [
            (child(["rss", "thumbnail", path], paths, {}), child(["rss", "decode", path], paths, {}))
            for _ in range(3)
        ]
    finally:
        os.unlink(path)
    ours = statistics.median(r[0] for r in runs) / KIB
    full = statistics.median(r[1] for r in runs) / KIB
    return [
        Row(
            f"peak RSS growth, thumbnail of a 24 MP JPEG ({size / KIB / KIB:.1f} MiB), MiB",
            f"{ours:.1f}",
            f"{full:.1f} (full decode)",
            f"{ours / full:.0%}",
            "≤ 25 %",
            ours / full <= 0.25,
        )
    ]


def trigger_limits(template: dict) -> tuple[int, int, int]:
    """(MemorySize MB, Timeout s, MaxUploadBytes' largest value) of the S3 trigger, from the template."""
    props = template["Resources"]["ProcessUploadFunction"]["Properties"]
    return props["MemorySize"], props["Timeout"], template["Parameters"]["MaxUploadBytes"]["MaxValue"]


def _smooth(megapixels: int):
    """Smooth gradients: they compress small (as a clean photo's sky does), and decode as any other."""
    from PIL import Image

    width = int((megapixels * 1e6 * 3 / 2) ** 0.5)
    gradient = Image.linear_gradient("L").resize((width, int(megapixels * 1e6 / width)))
    return Image.merge(
        "RGB",
        (
            gradient,
            gradient.transpose(Image.Transpose.ROTATE_180),
            gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        ),
    )


def _noisy(megapixels: int):
    """Noise: the most bytes per pixel an encoder writes, so the largest files for a pixel count."""
    from PIL import Image

    width = int((megapixels * 1e6 * 3 / 2) ** 0.5)
    size = (width, int(megapixels * 1e6 / width))
    return Image.merge("RGB", [Image.effect_noise(size, 80) for _ in range(3)])


SAVE = {
    "JPEG": {"quality": 85},
    "PNG": {"compress_level": 1},
    "WEBP": {"quality": 80, "method": 0},
    # The encoders' speed is not what is measured: x265's and libavif's fastest settings.
    "HEIC": {"quality": 60, "enc_params": {"preset": "ultrafast"}},
    "AVIF": {"quality": 60, "speed": 8},
}
MIME = {fmt: f"image/{fmt.lower()}" for fmt in SAVE}


def save(image, path: str, fmt: str, options: dict) -> None:
    from tests import sample_images

    if fmt == "HEIC":  # pillow-heif (dev-only) encodes; the trigger decodes with pi-heif
        with open(path, "wb") as fh:
            fh.write(sample_images.heic(image, **options))
    else:
        image.save(path, fmt, **options)


def format_rows(template: dict) -> list[Row]:
    """Peak RSS and CPU of the trigger's inspect() per format and size, in a fresh interpreter each."""
    memory, timeout, max_upload = trigger_limits(template)
    vcpu = memory / 1769  # Lambda's CPU share: one full vCPU at 1,769 MB
    cases = [
        (f"{mp} MP {fmt}", lambda mp=mp: _smooth(mp), fmt, SAVE[fmt]) for fmt in SAVE for mp in (12, 24, 50)
    ]
    # At MaxUploadBytes' largest value: noise as JPEG (pixels up to the 50 MP cap) and PNG.
    cases += [
        (f"{max_upload / KIB / KIB:.0f} MiB JPEG (50 MP noise)", lambda: _noisy(50), "JPEG", {"quality": 40}),
        (f"{max_upload / KIB / KIB:.0f} MiB PNG (noise)", lambda: _noisy(6), "PNG", {"compress_level": 1}),
    ]
    rows = []
    paths = ["layers/common", "functions/process_upload"]
    with tempfile.TemporaryDirectory() as folder:
        for name, make, fmt, options in cases:
            path = os.path.join(folder, "image")
            image = make()
            save(image, path, fmt, options)
            del image
            size = os.path.getsize(path)
            if "MiB" in name:  # exactly the limit: pad after the image's end (decoders ignore it)
                assert size <= max_upload, (name, size)
                with open(path, "ab") as fh:
                    fh.write(bytes(max_upload - size))
                size = max_upload
            full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
            full_env |= FAKE_AWS | {"PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in paths)}
            out = subprocess.run(  # noqa: S603 - our own interpreter and script
                [sys.executable, str(ROOT / "bench/child.py"), "peak", path, MIME[fmt]],
                env=full_env,
                capture_output=True,
                text=True,
                check=True,
            )
            peak = json.loads(out.stdout.strip().splitlines()[-1])
            lambda_seconds = peak["cpu_s"] / vcpu
            rows.append(
                Row(
                    f"trigger peak RSS, {name} ({size / KIB / KIB:.1f} MiB, {peak['verdict']}), MiB;"
                    f" CPU s (at {memory} MB ≈ {vcpu:.2f} vCPU)",
                    f"{peak['rss_mib']:.0f}; {peak['cpu_s']:.2f} s (≈ {lambda_seconds:.1f} s)",
                    f"{memory} MB; Timeout {timeout} s",
                    f"{peak['rss_mib'] / memory:.0%}",
                    "≤ 50 %, ≤ Timeout/4",
                    peak["rss_mib"] <= memory / 2 and lambda_seconds <= timeout / 4,
                )
            )
    return rows


# --- the bulk CLI end to end ------------------------------------------------------------------------


def cli_rows(n: int = 300) -> list[Row]:
    """`python -m image_uploads_cli upload` of n small distinct JPEGs through the local stack (`make
    run`: its verifying S3 front, the trigger run on each event), from the CLI's start to its summary."""
    import socket

    from PIL import Image

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "IMAGES_"))}
    api_port, aws_port = free_port(), free_port()
    stack = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local_stack", "--api-port", str(api_port), "--aws-port", str(aws_port)],
        cwd=ROOT,
        env=env | {"PYTHONPATH": os.pathsep.join([str(ROOT / "local"), str(ROOT / "ops")])},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in stack.stdout:
            if line.startswith("local_stack ready:"):
                break
        else:
            raise RuntimeError("the local stack did not start")
        # Keep its pipe drained: a full pipe would block the functions' log writes.
        threading.Thread(target=lambda: [None for _ in stack.stdout], daemon=True).start()
        with tempfile.TemporaryDirectory() as folder:
            for i in range(n):  # noise: distinct bytes each (a dataset keeps a picture's bytes once)
                noise = [Image.effect_noise((64, 48), 60) for _ in range(3)]
                Image.merge("RGB", noise).save(f"{folder}/car{i}.jpg", quality=90)
            cli_env = env | {
                "PYTHONPATH": str(ROOT / "cli"),
                "IMAGE_UPLOADS_API": f"http://127.0.0.1:{api_port}",
            }
            start = time.perf_counter()
            result = subprocess.run(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "image_uploads_cli",
                    "upload",
                    folder,
                    "--dataset",
                    "1",
                    "--no-progress",
                ],
                env=cli_env,
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - start
    finally:
        stack.terminate()
        stack.wait(timeout=30)
    summary = result.stdout.strip().splitlines()[-1:] or [result.stderr.strip()[-200:]]
    return [
        Row(
            f"bulk CLI upload of {n} small JPEGs through the local stack, images/s (start to summary)",
            f"{n / elapsed:.1f} ({elapsed:.1f} s)",
            summary[0][:80],
            "",
            "report; all uploaded",
            None if result.returncode == 0 else False,
        )
    ]


# --- table ------------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    header = ("figure", "ours", "reference", "ratio", "target", "result")
    cells = [header] + [
        (r.figure, r.ours, r.reference, r.ratio, r.target, {True: "PASS", False: "FAIL", None: "-"}[r.ok])
        for r in rows
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for line in cells[1:]:
        print("| " + " | ".join(line) + " |")


def main() -> int:
    machine = f"{os.cpu_count()} cores {os.uname().machine}, Python {sys.version.split()[0]}"
    print(f"make bench: {machine}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n", file=sys.stderr)
    os.environ.update(FAKE_AWS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    template = load_template()
    rows: list[Row] = confirm_rows_against_moto_server(template)
    with mock_aws():
        create_resources(Names(template), boto3.client("dynamodb"), boto3.client("s3"))
        # The note's open API (AuthMode=jwt adds one GetItem per request: the caller's role).
        os.environ.update(function_environment(template, "ApiFunction", parameters={"AuthMode": "open"}))
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # one INFO line per request would drown the table
        rows += presign_rows()
        rows += prepare_rows()
        rows += hashed_prepare_rows()
        rows += list_rows()
    rows += init_rows(template)
    rows += bytes_read_rows()
    rows += trigger_hash_rows()
    rows += rss_rows()
    rows += format_rows(template)
    rows += cli_rows()
    print(f"Machine: {machine}\n")
    print_table(rows)
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["confirm"]:
        print(json.dumps([vars(row) for row in confirm_rows()]))
        sys.exit(0)
    if sys.argv[1:2] == ["moto-server"]:
        serve_moto(int(sys.argv[2]), AWS_LATENCY if sys.argv[3] == "latency" else {})
        sys.exit(0)
    if sys.argv[1:] == ["confirm-only"]:  # just the confirm rows, e.g. while working on them
        os.environ.update(FAKE_AWS)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        print_table(confirm_rows_against_moto_server(load_template()))
        sys.exit(0)
    if sys.argv[1:] == ["init"]:  # only the cold-start rows (after `make build`)
        os.environ.update(FAKE_AWS)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        print_table(init_rows(load_template()))
        sys.exit(0)
    sys.exit(main())
