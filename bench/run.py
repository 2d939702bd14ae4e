"""`make bench`: the hot paths' speed and memory, each next to a reference measured in the same run.

Runs on a laptop against moto in-process (no AWS, no network). Prints one table; exits 1 when a row
misses its target. Ratios, not absolute times, are what the targets hold: they travel between machines.
"""

import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
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

import boto3  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.client  # noqa: E402
from moto import mock_aws  # noqa: E402

from local_stack.template import Names, create_resources, function_environment, load_template  # noqa: E402

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing-session-token",  # Lambda's role credentials always carry one
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
    return [
        Row(
            f"presign one upload URL, µs/URL (batch of {BATCH})",
            f"{t_ours:.1f}",
            f"{t_boto:.1f} (boto3, {signer} signer)",
            f"{t_boto / t_ours:.1f}x faster",
            "≥ 10x faster",
            t_boto / t_ours >= 10,
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


# --- list page depth --------------------------------------------------------------------------------


def list_rows() -> list[Row]:
    from images_api import cursor as cursors
    from images_api.access import Caller
    from images_api.logic import list_images

    OPEN = Caller(sub=None)  # AuthMode=open: no role check
    from uploads_core import images_table
    from uploads_core.models import Image, ImageStatus, utc_now

    dataset, total, limit, depth = 9, 10_000, 100, 9_900
    ids = images_table.reserve_ids(total)
    now = utc_now()
    images_table.put_new(
        [
            Image(
                id=i,
                dataset_id=dataset,
                filename=f"car{i}.jpg",
                s3_key=f"datasets/{dataset}/images/{i}.jpg",
                file_size=1024,
                mime_type="image/jpeg",
                status=ImageStatus.UPLOADED,
                created_at=now,
                updated_at=now,
            )
            for i in ids
        ]
    )
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


def cold_import_rows(template: dict) -> list[Row]:
    # Like Lambda: only the layer and the function's code on the path, its environment, a Lambda name
    # (Powertools' Tracer then really loads the X-Ray SDK).
    def env(function: str) -> dict[str, str]:
        return FAKE_AWS | function_environment(template, function) | {"AWS_LAMBDA_FUNCTION_NAME": function}

    def reference() -> float:
        return child(["import", "boto3-s3"], ["layers/common"], env("ApiFunction"))

    rows = []
    for function, (code_dir, module) in FUNCTIONS.items():
        paths = ["layers/common", code_dir]
        child(["import", module], paths, env(function))  # warm the disk cache and .pyc files
        runs = [(child(["import", module], paths, env(function)), reference()) for _ in range(5)]
        ours = statistics.median(r[0] for r in runs) * 1000
        boto = statistics.median(r[1] for r in runs) * 1000
        rows.append(
            Row(
                f"cold import of {module}, ms",
                f"{ours:.0f}",
                f"{boto:.0f} (import boto3 + client('s3'))",
                f"{ours / boto:.2f}x",
                "≤ 1.5x",
                ours / boto <= 1.5,
            )
        )
    return rows


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
    rows: list[Row] = []
    with mock_aws():
        create_resources(Names(template), boto3.client("dynamodb"), boto3.client("s3"))
        # The note's open API (AuthMode=jwt adds one GetItem per request: the caller's role).
        os.environ.update(function_environment(template, "ApiFunction", parameters={"AuthMode": "open"}))
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # one INFO line per request would drown the table
        rows += presign_rows()
        rows += prepare_rows()
        rows += list_rows()
    rows += cold_import_rows(template)
    rows += bytes_read_rows()
    rows += rss_rows()
    print(f"Machine: {machine}\n")
    print_table(rows)
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
