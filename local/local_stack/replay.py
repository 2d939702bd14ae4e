"""`python -m local_stack replay-failures`: replay the failed S3 events of the running local stack.

The events that still failed after Lambda's retries wait in the function's OnFailure SQS destination
(its EventInvokeConfig: ProcessUploadFailures for ProcessUploadFunction). Each one is invoked again
as `invoke` does (a worker of this process, synchronously) and the outcome printed; its message is
deleted only when the invocation succeeded. ops/replay_failures.py does the same against AWS (its
queue-draining loop is shared; it needs `ops` on PYTHONPATH, as `make replay-failures` sets).

Exit status: 0 every message replayed (or --dry-run), 1 some kept, 2 bad arguments (unknown function,
no SQS OnFailure destination), 3 no local stack on the AWS port.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import boto3
from replay_failures import drain, replayer, report

from local_stack.async_invoke import event_invoke_config
from local_stack.invoke import (
    EXIT_USAGE,
    InvokeError,
    check_stack,
    function_template,
    local_runtime,
    run,
    stack_parser,
)
from local_stack.oidc import auth_parameters


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = stack_parser("python -m local_stack replay-failures", __doc__)
    parser.add_argument("--function", default="ProcessUploadFunction", metavar="FUNCTION_LOGICAL_ID")
    parser.add_argument("--max", type=int, metavar="N", help="replay at most N messages")
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    return parser.parse_args(argv)


def replay(args: argparse.Namespace) -> int:
    template = function_template(args)
    parameters = auth_parameters(args.auth, f"http://{args.host}:{args.api_port}")
    names = {"stack_name": args.stack_name, "region": args.region, "parameters": parameters}
    destination = event_invoke_config(template, args.function, **names).on_failure
    if destination is None or destination.type != "SQS":
        message = f"{args.function} has no SQS OnFailure destination in its EventInvokeConfig"
        raise InvokeError(message, EXIT_USAGE)
    check_stack(args.host, args.aws_port)
    sqs = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        region_name=args.region,
    ).client("sqs", endpoint_url=f"http://{args.host}:{args.aws_port}")
    queue_url = sqs.get_queue_url(QueueName=destination.arn.rsplit(":", 1)[-1])["QueueUrl"]
    runtime = local_runtime(args, template)
    handle = replayer(lambda payload: json.dumps(runtime.invoke(args.function, payload)), args.dry_run)
    try:
        return report(drain(sqs, queue_url, handle, args.max), args.dry_run)
    finally:
        runtime.close()


def main(argv: Sequence[str]) -> int:
    return run("replay-failures", replay, parse_args(argv))
