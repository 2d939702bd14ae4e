"""ops/replay_failures.py: the failed S3 events of the ProcessUploadFailures queue, invoked again."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from replay_failures import drain, invoke_async, main, replayer, report

FUNCTION = "image-uploads-ProcessUploadFunction-AbC123"


def s3_event(key: str) -> dict:
    return {"Records": [{"s3": {"bucket": {"name": "images"}, "object": {"key": key}}}]}


def failure_record(event: dict) -> str:
    """What Lambda sends to the OnFailure destination (the invocation record, abridged)."""
    return json.dumps(
        {
            "version": "1.0",
            "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": event,
            "responsePayload": {"errorType": "ClientError", "errorMessage": "throttled"},
        }
    )


class FakeLambda:
    """The Invoke API: accepts (202) every event, except those of the keys in ``refused``."""

    def __init__(self, refused: tuple[str, ...] = ()) -> None:
        self.refused = refused
        self.calls: list[dict] = []

    def invoke(self, **kwargs):
        self.calls.append(kwargs)
        if json.loads(kwargs["Payload"])["Records"][0]["s3"]["object"]["key"] in self.refused:
            raise ClientError(
                {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, "Invoke"
            )
        return {"StatusCode": 202}


@pytest.fixture
def sqs(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


@pytest.fixture
def queue(sqs) -> str:
    return sqs.create_queue(QueueName="image-uploads-ProcessUploadFailures")["QueueUrl"]


def send(sqs, queue: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)


def remaining(sqs, queue: str) -> list[str]:
    """The bodies still in the queue (all visible again: nothing is left hidden)."""
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(m["Body"] for m in messages.get("Messages", []))


def test_events_are_invoked_again_asynchronously_and_their_messages_deleted(sqs, queue, capsys):
    events = [s3_event(f"datasets/1/images/{i}.jpg") for i in range(12)]  # more than one batch
    send(sqs, queue, *map(failure_record, events))
    fake = FakeLambda()
    counts = drain(sqs, queue, replayer(invoke_async(fake, FUNCTION)))
    assert counts == {"replayed": 12}
    assert sorted(
        json.loads(call["Payload"])["Records"][0]["s3"]["object"]["key"] for call in fake.calls
    ) == sorted(e["Records"][0]["s3"]["object"]["key"] for e in events)
    assert {(call["FunctionName"], call["InvocationType"]) for call in fake.calls} == {(FUNCTION, "Event")}
    assert remaining(sqs, queue) == []
    assert "replayed s3://images/datasets/1/images/0.jpg: accepted" in capsys.readouterr().out


def test_a_replay_lambda_refuses_keeps_its_message(sqs, queue, capsys):
    kept, replayed = failure_record(s3_event("refused.jpg")), failure_record(s3_event("fine.jpg"))
    send(sqs, queue, kept, replayed)
    counts = drain(sqs, queue, replayer(invoke_async(FakeLambda(refused=("refused.jpg",)), FUNCTION)))
    assert counts == {"replayed": 1, "kept": 1}
    assert remaining(sqs, queue) == [kept]
    out = capsys.readouterr().out
    assert "not replayed s3://images/refused.jpg: ClientError" in out
    assert report(counts, dry_run=False) == 1


def test_malformed_messages_are_reported_and_kept(sqs, queue, capsys):
    bad = ["not json", json.dumps({"no": "requestPayload"}), json.dumps(["a", "list"])]
    send(sqs, queue, *bad, failure_record(s3_event("fine.jpg")))
    fake = FakeLambda()
    counts = drain(sqs, queue, replayer(invoke_async(fake, FUNCTION)))
    assert counts == {"replayed": 1, "malformed": 3}
    assert len(fake.calls) == 1
    assert remaining(sqs, queue) == sorted(bad)
    assert capsys.readouterr().out.count("malformed message") == 3


def test_max_stops_after_n_messages(sqs, queue):
    send(sqs, queue, *(failure_record(s3_event(f"{i}.jpg")) for i in range(5)))
    assert drain(sqs, queue, replayer(invoke_async(FakeLambda(), FUNCTION)), max_messages=3) == {
        "replayed": 3
    }
    assert len(remaining(sqs, queue)) == 2


def test_the_script_with_dry_run_changes_nothing(sqs, queue, capsys, monkeypatch):
    bodies = [failure_record(s3_event("a.jpg")), failure_record(s3_event("b.jpg")), "not json"]
    send(sqs, queue, *bodies)
    # The real Lambda client: a dry run must not call it (moto's Lambda has no such function).
    assert (
        main(["--queue-url", queue, "--function-name", FUNCTION, "--region", "us-east-1", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    assert "would replay s3://images/a.jpg" in out
    assert "dry run: 2 to replay, 1 malformed; nothing changed" in out
    assert remaining(sqs, queue) == sorted(bodies)  # all there, and visible right away


def test_the_script_reports_failures_in_its_exit_status(sqs, queue, capsys, monkeypatch):
    import replay_failures

    fake = FakeLambda(refused=("a.jpg",))  # instead of moto's heavy Lambda
    monkeypatch.setattr(replay_failures, "invoke_async", lambda _client, name: invoke_async(fake, name))
    send(sqs, queue, failure_record(s3_event("a.jpg")), failure_record(s3_event("b.jpg")))
    assert main(["--queue-url", queue, "--function-name", FUNCTION, "--region", "us-east-1"]) == 1
    out = capsys.readouterr().out
    assert "not replayed s3://images/a.jpg: ClientError" in out
    assert "1 replayed, 1 failed, 0 malformed (kept)" in out
    assert len(remaining(sqs, queue)) == 1
    assert main(["--queue-url", queue, "--function-name", FUNCTION, "--region", "us-east-1"]) == 1
    fake.refused = ()
    assert main(["--queue-url", queue, "--function-name", FUNCTION, "--region", "us-east-1"]) == 0
    assert remaining(sqs, queue) == []
