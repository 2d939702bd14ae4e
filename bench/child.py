"""One measurement in a fresh interpreter, printed as a number on stdout (run by bench/run.py).

child.py import MODULE       seconds to import MODULE ("boto3-s3": import boto3 + boto3.client("s3"))
child.py rss thumbnail FILE  peak RSS (VmHWM, Linux) growth in KiB, after imports and reading FILE,
                             of the processor's inspect() (checks and thumbnail) of the JPEG FILE
child.py rss decode FILE     the same for Pillow's full decode of FILE
child.py peak FILE MIME     JSON: the process's peak RSS (VmHWM, MiB, everything the trigger holds:
                             interpreter, imports, the object's bytes) and CPU seconds of inspect()
child.py init HANDLER EVENT PATH...     JSON of the seconds a Lambda init and first invocation take:
                             import of HANDLER (module.function), then one call with the JSON EVENT
                             file; only the PATHs (a built artifact and its layers) on sys.path; "cpu":
                             the CPU seconds of both
child.py init-reference SERVICES CALL PATH...   the same for `import boto3`, boto3.client() of each
                             of the comma-separated SERVICES, then the first call CALL
                             ("dynamodb.get_item" on IMAGES_TABLE, or "dynamodb.query")
"""

import sys
import time


def import_seconds(module: str) -> float:
    start = time.perf_counter()
    if module == "boto3-s3":
        import boto3

        boto3.client("s3")
    else:
        __import__(module)
    return time.perf_counter() - start


def peak_rss_growth_kib(case: str, path: str) -> int:
    import io

    from PIL import Image

    from upload_processor import inspection

    data = open(path, "rb").read()  # noqa: SIM115 - read once, before the baseline
    before = peak_rss_kib()
    if case == "thumbnail":
        inspection.inspect(
            io.BytesIO(data), size=len(data), declared_mime="image/jpeg", declared_size=len(data)
        )
    else:
        Image.open(io.BytesIO(data)).load()
    return peak_rss_kib() - before


def inspect_peak(path: str, mime: str) -> dict[str, float]:
    import io

    import upload_processor.handler  # noqa: F401 - what a cold Lambda has loaded before its first event
    from upload_processor import inspection

    data = open(path, "rb").read()  # noqa: SIM115 - read once, as the trigger streams it into memory
    cpu = time.process_time()
    try:
        inspection.inspect(io.BytesIO(data), size=len(data), declared_mime=mime, declared_size=len(data))
        verdict = "accepted"
    except inspection.Rejected as exc:
        verdict = exc.code
    return {"rss_mib": peak_rss_kib() / 1024, "cpu_s": time.process_time() - cpu, "verdict": verdict}


def peak_rss_kib() -> int:
    """VmHWM, this process's RSS high-water mark. Not getrusage's ru_maxrss: a child inherits the
    parent's value at fork, and bench/run.py has just held a 24 MP image in memory."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def init_seconds(handler: str, event_file: str) -> dict[str, float]:
    import json

    start, cpu = time.perf_counter(), time.process_time()
    module, _, name = handler.rpartition(".")
    function = getattr(__import__(module, fromlist=[name]), name)
    imported = time.perf_counter()
    with open(event_file) as fh:
        event = json.load(fh)
    reply = function(event, _Context())
    done = time.perf_counter()
    if isinstance(reply, dict) and reply.get("statusCode", 200) >= 500:
        raise SystemExit(f"first invocation failed: {reply}")
    return {"import": imported - start, "first call": done - imported, "cpu": time.process_time() - cpu}


def init_reference_seconds(services: str, call: str) -> dict[str, float]:
    import os

    start, cpu = time.perf_counter(), time.process_time()
    import boto3

    imported = time.perf_counter()
    clients = {name: boto3.client(name) for name in services.split(",")}
    created = time.perf_counter()
    table = os.environ["IMAGES_TABLE"]
    if call == "dynamodb.get_item":
        clients["dynamodb"].get_item(TableName=table, Key={"id": {"N": "0"}})
    else:
        clients["dynamodb"].query(
            TableName=table,
            IndexName="uploading-index",
            KeyConditionExpression="uploading_shard = :s",
            ExpressionAttributeValues={":s": {"N": "0"}},
        )
    done = time.perf_counter()
    return {
        "import": imported - start,
        "clients": created - imported,
        "first call": done - created,
        "cpu": time.process_time() - cpu,
    }


class _Context:
    function_name = "bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


if __name__ == "__main__":
    if sys.argv[1] in ("init", "init-reference"):
        import json

        sys.path[:0] = sys.argv[4:]
        measure = init_seconds if sys.argv[1] == "init" else init_reference_seconds
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "peak":
        import json

        print(json.dumps(inspect_peak(sys.argv[2], sys.argv[3])))
    elif sys.argv[1] == "import":
        print(import_seconds(sys.argv[2]))
    else:
        print(peak_rss_growth_kib(sys.argv[2], sys.argv[3]))
