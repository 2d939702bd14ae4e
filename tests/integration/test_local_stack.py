"""The local stack's servers and triggers over HTTP, with a stub template: the API end to end, S3 events,
Lambda's retries and on-failure queue, schedules, `invoke` and `replay-failures` against a running stack,
and how the stack and its workers stop."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from local_stack.__main__ import main
from local_stack.lambda_runtime import FunctionError
from local_stack.stack import LocalStack
from local_stack.triggers import Sequencer

ROOT = Path(__file__).parents[2]

STUB = """
    import json
    import os
    import time

    import boto3

    TICKS = []


    def _append(name, entry):
        with open(os.path.join(os.environ["OUT_DIR"], name), "a") as fh:
            fh.write(json.dumps(entry) + "\\n")


    def echo(event, context):
        tables = boto3.client("dynamodb").list_tables()["TableNames"]  # the stack's moto
        return {"statusCode": 200, "body": json.dumps({"event": event, "tables": tables})}


    def record(event, context):
        _append("record.jsonl", {"time": time.time(), "event": event, "request_id": context.aws_request_id})
        return {"ok": True}


    def always_fail(event, context):
        _append("fail.jsonl", {"time": time.time(), "request_id": context.aws_request_id})
        raise ValueError("boom")


    def tick(event, context):
        TICKS.append(event)
        _append("tick.jsonl", {"time": time.time(), "event": event})
        if len(TICKS) == 1:
            raise RuntimeError("the first tick fails")


    def meet(event, context):
        # Waits for another invocation (deadline 10 s): S3 events run concurrently.
        arrivals = os.path.join(os.environ["OUT_DIR"], "arrivals")
        os.makedirs(arrivals, exist_ok=True)
        open(os.path.join(arrivals, context.aws_request_id), "w").close()
        deadline = time.monotonic() + 10
        while len(os.listdir(arrivals)) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no other invocation came")
            time.sleep(0.01)
        _append("meet.jsonl", {"key": event["Records"][0]["s3"]["object"]["key"]})


    def describe(event, context):
        print("printed by the function")
        return {"buckets": [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]], "event": event}


    def wait_for_file(event, context):
        args = event.get("queryStringParameters") or event  # also behind the HTTP API
        with open(args["started"] + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(args["started"] + ".tmp", args["started"])  # appears with its content
        deadline = time.monotonic() + float(args.get("seconds", 10))
        while not os.path.exists(args["file"]):
            if time.monotonic() > deadline:
                raise TimeoutError(args["file"])
            time.sleep(0.005)
        return {"pid": os.getpid()}
"""


def stub_template(module: str, out_dir: Path) -> dict:
    def function(handler: str, events: dict | None = None, **props: object) -> dict:
        properties = {"CodeUri": "fn/", "Handler": f"{module}.{handler}", "Runtime": "python3.13", **props}
        return {"Type": "AWS::Serverless::Function", "Properties": {**properties, "Events": events or {}}}

    def s3_event(prefix: str) -> dict:
        rules = [{"Name": "prefix", "Value": prefix}]
        props = {
            "Bucket": {"Ref": "Bucket"},
            "Events": "s3:ObjectCreated:*",
            "Filter": {"S3Key": {"Rules": rules}},
        }
        return {"Type": "S3", "Properties": props}

    def on_failure(retries: int) -> dict:
        failures = {"Type": "SQS", "Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}
        return {"MaximumRetryAttempts": retries, "DestinationConfig": {"OnFailure": failures}}

    def route(method: str, path: str) -> dict:
        return {"Type": "HttpApi", "Properties": {"Method": method, "Path": path}}

    return {
        "Globals": {"Function": {"Timeout": 10, "Environment": {"Variables": {"OUT_DIR": str(out_dir)}}}},
        "Resources": {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
            },
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                },
            },
            "Failures": {"Type": "AWS::SQS::Queue"},
            "Echo": function("echo", {"Get": route("GET", "/things/{id}")}),
            "Waiter": function("wait_for_file", {"Wait": route("GET", "/wait")}),
            "Recorder": function("record", {"Uploads": s3_event("in/")}, EventInvokeConfig=on_failure(2)),
            "Failing": function(
                "always_fail", {"Uploads": s3_event("fail/")}, EventInvokeConfig=on_failure(1)
            ),
            "Ticker": function(
                "tick",
                {"Tick": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}}},
                EventInvokeConfig={"MaximumRetryAttempts": 0},
            ),
            "Describer": function("describe"),
            "Meeter": function(
                "meet", {"Uploads": s3_event("meet/")}, EventInvokeConfig={"MaximumRetryAttempts": 0}
            ),
        },
    }


def wait_for(condition: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {timeout}s")
        time.sleep(0.02)
    return result


def in_thread(call: Callable[[], object]) -> Callable[[], object]:
    """Run ``call()`` in a thread; the returned function joins it and returns or raises its outcome."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> object:
        thread.join(30)
        assert not thread.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    return join


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Stub:
    def __init__(self, stack: LocalStack, out_dir: Path, template_path: Path, started: float) -> None:
        self.stack, self.out_dir, self.template_path, self.started = stack, out_dir, template_path, started
        self.s3, self.sqs = stack.client("s3"), stack.client("sqs")
        self.bucket = stack.resources["Bucket"]

    def calls(self, name: str) -> list[dict]:
        path = self.out_dir / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def cli(self, *argv: str) -> int:
        """`python -m local_stack COMMAND ...` in this process, against this stack."""
        options = ["--template", str(self.template_path), "--stack-name", self.stack.stack_name]
        return main([*argv, *options, "--aws-port", str(self.stack.aws_endpoint.rsplit(":", 1)[1])])


@pytest.fixture
def stub_dir(tmp_path) -> Path:
    """tmp_path with the stub's code in fn/, its output dir out/ and its template.yaml."""
    module = f"stub_stack_{uuid.uuid4().hex}"
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / f"{module}.py").write_text(textwrap.dedent(STUB))
    (tmp_path / "out").mkdir()
    (tmp_path / "template.yaml").write_text(
        json.dumps(stub_template(module, tmp_path / "out"))
    )  # JSON is YAML
    return tmp_path


@pytest.fixture
def stub_stack(stub_dir) -> Iterator[Callable[..., Stub]]:
    """Starts a LocalStack of the stub template (its own stack name: moto's state is per process)."""
    stacks: list[LocalStack] = []

    def start(**options: object) -> Stub:
        stack = LocalStack(
            json.loads((stub_dir / "template.yaml").read_text()),
            api_port=0,
            aws_port=0,
            base_dir=stub_dir,
            stack_name=f"t{uuid.uuid4().hex[:10]}",
            retry_delay=0.1,
            **options,  # type: ignore[arg-type]
        )
        started = time.time()
        stacks.append(stack.start())
        return Stub(stack, stub_dir / "out", stub_dir / "template.yaml", started)

    yield start
    for stack in stacks:
        stack.stop()


def test_the_api_invokes_the_function_in_its_worker_against_the_stacks_aws(stub_stack):
    stub = stub_stack()
    response = requests.get(f"{stub.stack.api_url}/things/a%2Fb?x=1", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["event"]["pathParameters"] == {"id": "a/b"}
    assert body["event"]["queryStringParameters"] == {"x": "1"}
    assert stub.stack.resources["Table"] in body["tables"]  # the stack's moto
    assert requests.get(f"{stub.stack.api_url}/nothing", timeout=10).status_code == 404


def test_a_put_invokes_the_function_with_the_s3_event_within_a_second(stub_stack):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="out/ignored.jpg", Body=b"x")  # outside the prefix
    key = "in/voiture été 1.jpg"
    put_at = time.time()
    etag = stub.s3.put_object(Bucket=stub.bucket, Key=key, Body=b"abc")["ETag"]
    (call,) = wait_for(lambda: stub.calls("record"), timeout=5)
    assert call["time"] - put_at < 2.0  # a cold start included: a new worker process imports boto3
    (record,) = call["event"]["Records"]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == stub.bucket
    obj = record["s3"]["object"]
    assert obj["key"] == "in/voiture+%C3%A9t%C3%A9+1.jpg"
    assert (obj["size"], obj["eTag"]) == (3, etag.strip('"'))
    assert len(obj["sequencer"]) == Sequencer.WIDTH
    event_time = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    assert event_time == pytest.approx(put_at, abs=2)

    put_at = time.time()
    stub.s3.put_object(Bucket=stub.bucket, Key=key, Body=b"abc")  # the same bytes again
    first, second = wait_for(lambda: len(calls := stub.calls("record")) == 2 and calls, timeout=3)
    assert second["time"] - put_at < 1.0  # warm
    assert first["request_id"] != second["request_id"]
    # The versioned bucket's events name their versions; sequencers follow the order of the writes.
    versions = stub.s3.list_object_versions(Bucket=stub.bucket, Prefix="in/")["Versions"]
    older, latest = (
        next(v["VersionId"] for v in versions if v["IsLatest"] is flag) for flag in (False, True)
    )
    objects = {
        c["event"]["Records"][0]["s3"]["object"]["versionId"]: c["event"]["Records"][0]["s3"]["object"]
        for c in (first, second)
    }
    assert set(objects) == {older, latest}
    assert objects[older]["sequencer"] < objects[latest]["sequencer"]


def test_s3_events_invoke_their_function_concurrently(stub_stack):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="meet/a.jpg", Body=b"a")
    wait_for(lambda: (stub.out_dir / "arrivals").exists(), timeout=5)  # the first one runs, and waits
    stub.s3.put_object(Bucket=stub.bucket, Key="meet/b.jpg", Body=b"b")
    calls = wait_for(lambda: len(calls := stub.calls("meet")) == 2 and calls, timeout=10)
    assert sorted(c["key"] for c in calls) == ["meet/a.jpg", "meet/b.jpg"]


def test_a_failing_function_is_retried_then_its_event_goes_to_the_on_failure_queue(stub_stack, caplog):
    stub = stub_stack()
    stub.s3.put_object(Bucket=stub.bucket, Key="fail/x.jpg", Body=b"x")
    queue_url = stub.sqs.get_queue_url(QueueName=stub.stack.resources["Failures"])["QueueUrl"]

    def receive() -> list[dict]:
        return stub.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])

    (message,) = wait_for(receive, timeout=5)
    attempts = stub.calls("fail")
    assert len(attempts) == 2  # MaximumRetryAttempts: 1
    assert attempts[0]["request_id"] == attempts[1]["request_id"]  # one request id across retries
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestContext"]["requestId"] == attempts[0]["request_id"]
    assert record["requestContext"]["functionArn"].endswith(":function:Failing:$LATEST")
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "fail/x.jpg"
    assert record["responseContext"]["functionError"] == "Unhandled"
    payload = record["responsePayload"]
    assert (payload["errorType"], payload["errorMessage"]) == ("ValueError", "boom")
    assert not receive()  # exactly one record
    assert "Failing ObjectCreated:Put s3://" in caplog.text
    assert "attempt 1 of 2, retry in 0.1s" in caplog.text
    assert 'raise ValueError("boom")' in caplog.text  # the function's traceback is logged


def test_schedules_run_every_period_with_a_scheduled_event_and_survive_errors(stub_stack):
    period = 0.3
    stub = stub_stack(schedule_period=period)
    assert "rate(1 day) -> Ticker (every 0.3s locally)" in stub.stack.triggers
    first, second, third = wait_for(lambda: len(ticks := stub.calls("tick")) >= 3 and ticks[:3], timeout=8)
    assert first["time"] - stub.started >= period * 0.9  # one period after start, like EventBridge
    # The first run raised, and the next ones still come, a period apart (a busy machine may delay one).
    assert period * 0.9 <= third["time"] - second["time"] < period * 4
    event = second["event"]
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    rule = f"arn:aws:events:us-east-1:123456789012:rule/{stub.stack.stack_name}-TickerTick"
    assert event["resources"] == [rule]
    assert first["event"]["id"] != event["id"]


def test_stop_ends_schedules_servers_and_workers_promptly(stub_stack, stub_dir):
    stub = stub_stack(schedule_period=60)
    threads = [t for t in threading.enumerate() if t.name in ("schedule-Ticker", "api-server", "aws-server")]
    assert len(threads) == 3
    idle = stub.stack.invoke("Describer", {})  # a warm worker
    started = stub_dir / "started"
    busy = in_thread(
        lambda: stub.stack.invoke("Waiter", {"started": str(started), "file": str(stub_dir / "never")})
    )
    wait_for(started.exists, timeout=30)
    began = time.monotonic()
    stub.stack.stop()
    assert time.monotonic() - began < 3  # not the waiting invocation's 10 s
    assert not any(t.is_alive() for t in threads)
    with pytest.raises(FunctionError, match="Runtime exited"):
        busy()
    assert idle["event"] == {}
    assert not is_running(int(started.read_text()))


def test_the_stacks_own_calls_stay_out_of_moto_recordings(stub_stack, tmp_path, monkeypatch):
    from moto.moto_api import recorder

    monkeypatch.setattr(recorder, "_location", str(tmp_path / "recording"))
    stub = stub_stack()
    aws = stub.stack.aws_endpoint
    requests.post(f"{aws}/moto-api/recorder/start-recording", timeout=5)
    try:
        stub.s3.put_object(Bucket=stub.bucket, Key="fail/x.jpg", Body=b"x")
        wait_for(lambda: len(stub.calls("fail")) == 2, timeout=5)
        time.sleep(0.5)  # the RetriesExhausted record goes to its queue
    finally:
        requests.post(f"{aws}/moto-api/recorder/stop-recording", timeout=5)
    lines = (tmp_path / "recording").read_text().splitlines()
    assert [json.loads(line)["method"] for line in lines] == ["PUT"]  # the client's, not the destination's
    queue_url = stub.sqs.get_queue_url(QueueName=stub.stack.resources["Failures"])["QueueUrl"]
    assert stub.sqs.receive_message(QueueUrl=queue_url)["Messages"]


# --- `invoke` and `replay-failures` against a running stack ---------------------------------------------


def test_invoke_prints_the_result_of_a_function_run_against_the_running_stack(stub_stack, tmp_path):
    stub = stub_stack()
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"hello": "world"}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local")}
    env.pop("AWS_ENDPOINT_URL", None)
    options = ["--template", str(stub.template_path), "--stack-name", stub.stack.stack_name]
    aws_port = stub.stack.aws_endpoint.rsplit(":", 1)[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "local_stack",
            "invoke",
            "Describer",
            str(event_file),
            *options,
            "--aws-port",
            aws_port,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the result only
    assert result["event"] == {"hello": "world"}
    assert stub.bucket in result["buckets"]  # the function reached the stack's moto
    assert "printed by the function" in done.stderr


def test_invoke_exits_1_with_the_traceback_when_the_function_raises(stub_stack, tmp_path, capsys):
    stub = stub_stack()
    (tmp_path / "event.json").write_text("{}")
    assert stub.cli("invoke", "Failing", str(tmp_path / "event.json")) == 1
    captured = capsys.readouterr()
    assert "Failing raised ValueError: boom" in captured.err
    assert "Traceback" in captured.err
    assert captured.out == ""


def failure_record(key: str) -> str:
    """An OnFailure invocation record as the stack sends it, abridged."""
    event = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]}
    return json.dumps({"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": event})


@pytest.fixture
def failures(stub_stack) -> Callable[..., tuple[list[str], int]]:
    """Puts messages in the stub's OnFailure queue, then runs `replay-failures` with the given options;
    returns the bodies left in the queue and the exit status."""
    stub = stub_stack()
    queue_url = stub.sqs.get_queue_url(QueueName=stub.stack.resources["Failures"])["QueueUrl"]

    def replay(bodies: list[str], *options: str) -> tuple[list[str], int]:
        for body in bodies:
            stub.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        status = stub.cli("replay-failures", *options)
        left = stub.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
        return sorted(m["Body"] for m in left.get("Messages", [])), status

    replay.stub = stub  # type: ignore[attr-defined]
    return replay


def test_replay_failures_invokes_each_event_again_and_deletes_its_message(failures, capsys):
    bodies = [failure_record("in/a.jpg"), failure_record("in/b.jpg")]
    assert failures(bodies, "--function", "Recorder") == ([], 0)
    keys = sorted(c["event"]["Records"][0]["s3"]["object"]["key"] for c in failures.stub.calls("record"))
    assert keys == ["in/a.jpg", "in/b.jpg"]
    out = capsys.readouterr().out
    assert 'replayed s3://b/in/a.jpg: {"ok": true}' in out
    assert "2 replayed, 0 failed, 0 malformed (kept)" in out


def test_replay_failures_keeps_the_messages_of_failed_and_malformed_events(failures, capsys):
    bodies = [failure_record("fail/a.jpg"), "not a record"]
    assert failures(bodies, "--function", "Failing") == (sorted(bodies), 1)
    assert len(failures.stub.calls("fail")) == 1  # replayed once, synchronously: no retries
    out = capsys.readouterr().out
    assert "not replayed s3://b/fail/a.jpg: ValueError: boom" in out
    assert "malformed message" in out


def test_replay_failures_dry_run_changes_nothing(failures, capsys):
    bodies = [failure_record("in/a.jpg")]
    assert failures(bodies, "--function", "Recorder", "--dry-run") == (bodies, 0)
    assert failures.stub.calls("record") == []
    assert "would replay s3://b/in/a.jpg" in capsys.readouterr().out


# --- `python -m local_stack` as a process ----------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)])
def test_the_workers_end_with_the_stack_process(stub_dir, signum, status):
    """SIGTERM: the stack stops cleanly (exit status 0). SIGKILL: its workers end anyway."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "local")}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "local_stack", "--template", str(stub_dir / "template.yaml")),
            *("--api-port", "0", "--aws-port", "0"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = []
        for line in process.stdout:
            banner.append(line)
            if line.startswith("local_stack ready:"):
                api = line.split("api=", 1)[1].split()[0]
                break
        else:
            pytest.fail("the stack did not start")
        assert "Data: in memory only; it is gone when the stack stops\n" in banner
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe flowing
        started = stub_dir / "started"
        params = {"started": str(started), "file": str(stub_dir / "never"), "seconds": "60"}
        request = in_thread(lambda: requests.get(f"{api}/wait", params=params, timeout=60))
        wait_for(started.exists, timeout=30)
        worker = int(started.read_text())
        process.send_signal(signum)
        assert process.wait(timeout=15) == status
        if signum == signal.SIGTERM:
            assert request().status_code == 500  # the running invocation failed
        wait_for(lambda: not is_running(worker), timeout=5)
    finally:
        process.kill()
        process.wait()
