"""Replay the S3 events that still failed after Lambda's retries (the ProcessUploadFailures queue).

Each message of the queue is a Lambda invocation record whose ``requestPayload`` is the original S3
event. The event is invoked again asynchronously (Invoke API, InvocationType "Event"), so a new failure
goes through Lambda's retries and back to the queue; the message is deleted only once Lambda accepted
the invocation (202). Messages that are not such records are reported and kept. Replaying twice is
harmless: the function handles duplicate and late events.

    python ops/replay_failures.py --queue-url URL --function-name NAME \\
        [--region R] [--endpoint-url U] [--max N] [--dry-run]

The stack's outputs name both: ProcessUploadFailuresQueue (the URL) and the function
(<stack>-ProcessUploadFunction-...: `aws lambda list-functions`). Exit status: 0 when every message was
replayed (or with --dry-run), 1 when some were kept. Standard library and boto3 only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import boto3

BATCH = 10  # SQS's maximum per receive
# Longer than replaying a batch takes, so that no message is received twice meanwhile; the messages
# kept are made visible again at the end.
VISIBILITY_SECONDS = 900


def describe(payload: Any) -> str:
    """The objects of an S3 event, e.g. "s3://bucket/key"."""
    try:
        objects = [(r["s3"]["bucket"]["name"], r["s3"]["object"]["key"]) for r in payload["Records"]]
        return " ".join(f"s3://{bucket}/{key}" for bucket, key in objects)
    except (KeyError, TypeError):
        return json.dumps(payload)[:200]


def drain(
    sqs_client: Any,
    queue_url: str,
    handle: Callable[[Any], bool],
    max_messages: int | None = None,
) -> Counter[str]:
    """Hand every message's ``requestPayload`` to ``handle``, which returns True to delete the message.

    Receives batches of 10 (1 s long polls) until the queue has nothing visible or ``max_messages``
    were received; malformed messages are reported and kept. Returns counts of "replayed", "kept" and
    "malformed" messages.
    """
    counts: Counter[str] = Counter()
    kept: list[str] = []
    try:
        while max_messages is None or counts.total() < max_messages:
            batch = BATCH if max_messages is None else min(BATCH, max_messages - counts.total())
            messages = sqs_client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=1,
                VisibilityTimeout=VISIBILITY_SECONDS,
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    payload = json.loads(message["Body"])["requestPayload"]
                except (ValueError, KeyError, TypeError) as error:
                    print(f"malformed message {message['MessageId']} kept: {type(error).__name__} {error}")
                    counts["malformed"] += 1
                    kept.append(message["ReceiptHandle"])
                    continue
                if handle(payload):
                    sqs_client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                    counts["replayed"] += 1
                else:
                    counts["kept"] += 1
                    kept.append(message["ReceiptHandle"])
    finally:
        for receipt in kept:  # visible again now, not in 15 minutes
            sqs_client.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
    return counts


def replayer(replay: Callable[[Any], str], dry_run: bool = False) -> Callable[[Any], bool]:
    """``drain``'s ``handle``: one line per event. ``replay(payload)`` says how it went, or raises."""

    def handle(payload: Any) -> bool:
        what = describe(payload)
        if dry_run:
            print(f"would replay {what}")
            return False
        try:
            outcome = replay(payload)
        except Exception as error:
            print(f"not replayed {what}: {type(error).__name__}: {error}")
            return False
        print(f"replayed {what}: {outcome}")
        return True

    return handle


def invoke_async(lambda_client: Any, function_name: str) -> Callable[[Any], str]:
    """An asynchronous invocation of the function with the event (a failure gets Lambda's retries)."""

    def replay(payload: Any) -> str:
        status = lambda_client.invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode()
        )["StatusCode"]
        if status != 202:
            raise RuntimeError(f"Lambda answered {status}, not 202")
        return "accepted"

    return replay


def report(counts: Counter[str], dry_run: bool) -> int:
    """Print the summary; the exit status: 1 when messages were kept (except with --dry-run)."""
    if dry_run:
        print(f"dry run: {counts['kept']} to replay, {counts['malformed']} malformed; nothing changed")
        return 0
    print(f"{counts['replayed']} replayed, {counts['kept']} failed, {counts['malformed']} malformed (kept)")
    return 1 if counts["kept"] or counts["malformed"] else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queue-url", required=True, help="the ProcessUploadFailuresQueue output")
    parser.add_argument("--function-name", required=True, help="ProcessUploadFunction's name or ARN")
    parser.add_argument("--region", help="default: the AWS configuration's")
    parser.add_argument("--endpoint-url", help="another endpoint for SQS and Lambda (e.g. a local emulator)")
    parser.add_argument("--max", type=int, metavar="N", help="replay at most N messages")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    sqs = session.client("sqs", endpoint_url=args.endpoint_url)
    lambda_client = session.client("lambda", endpoint_url=args.endpoint_url)
    handle = replayer(invoke_async(lambda_client, args.function_name), args.dry_run)
    return report(drain(sqs, args.queue_url, handle, args.max), args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
