"""`python -m local_stack`: run the template's HTTP API, S3, DynamoDB and SQS on localhost until stopped.

The template's S3 events and rate(...) schedules invoke their functions as in AWS (asynchronously,
with Lambda's retries and on-failure SQS destination).

Commands:
  python -m local_stack [serve] [options]        start the stack (what `make run` does)
  python -m local_stack invoke FUNCTION EVENT    run one function with a JSON event file against a
                                                 running stack (`make invoke`); see `invoke --help`
  python -m local_stack replay-failures          replay the failed S3 events of a running stack
                                                 (`make replay-failures`; needs ops/ on PYTHONPATH)
  python -m local_stack token --sub alice        print a token of a stack started with --auth jwt
                                                 (`make token SUB=alice`)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from local_stack import invoke, oidc
from local_stack.invoke import add_auth_argument
from local_stack.template import DEFAULT_TEMPLATE, PSEUDO_DEFAULTS, load_template

READY_LINE = "local_stack ready: api={api} aws={aws}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "3000")))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_PORT", "4566")))
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--stack-name", default=PSEUDO_DEFAULTS["stack_name"])
    parser.add_argument("--region", default=PSEUDO_DEFAULTS["region"])
    add_auth_argument(parser)
    parser.add_argument(
        "--schedule-period",
        type=float,
        default=_optional_float(os.environ.get("LOCAL_SCHEDULE_PERIOD")),
        metavar="SECONDS",
        help="run every rate(...) schedule this often instead (env LOCAL_SCHEDULE_PERIOD); "
        "default: the template's rates, first run one period after start",
    )
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=float(os.environ.get("LOCAL_RETRY_DELAY", "1")),
        metavar="SECONDS",
        help="wait between Lambda's retries of a failed asynchronous invocation (env LOCAL_RETRY_DELAY, "
        "default 1; minutes in AWS)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also log moto's requests and the SDKs' info messages"
    )
    return parser.parse_args(argv)


def _optional_float(text: str | None) -> float | None:
    return float(text) if text else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["invoke"]:
        return invoke.main(argv[1:])
    if argv[:1] == ["replay-failures"]:
        from local_stack import replay  # imports ops/replay_failures.py, which `serve` does not need

        return replay.main(argv[1:])
    if argv[:1] == ["token"]:
        return oidc.main(argv[1:])
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    return serve(argv)


def serve(argv: Sequence[str]) -> int:
    from local_stack.stack import LocalStack  # moto's server is only needed here

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if not args.verbose:
        # moto (werkzeug) logs every S3/DynamoDB call; the SDKs chat about credentials and settings.
        for name in ("werkzeug", "botocore", "pynamodb"):
            logging.getLogger(name).setLevel(logging.WARNING)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    stack = LocalStack(
        load_template(args.template),
        host=args.host,
        api_port=args.api_port,
        aws_port=args.aws_port,
        stack_name=args.stack_name,
        region=args.region,
        base_dir=invoke.template_dir(args.template),
        retry_delay=args.retry_delay,
        schedule_period=args.schedule_period,
        auth=args.auth,
    )
    try:
        stack.start()
        print(f"API (HTTP API, payload 2.0):      {stack.api_url}")
        print(f"Upload page (web/):               {stack.api_url}/")
        print(f"AWS endpoint (S3, DynamoDB, SQS): {stack.aws_endpoint}  (credentials: testing/testing)")
        if stack.issuer is None:
            print("Auth: open (AuthMode=open): no token, anyone may call every route")
        else:
            print("Auth: jwt (AuthMode=jwt): data routes need `Authorization: Bearer <token>`")
            print(f"  Issuer (local OIDC, audience {oidc.CLIENT_ID}): {stack.issuer.url}")
            dev_token = f'POST {{"sub": "alice"}} to {stack.issuer.url}/dev/token'
            print(f"  Token: make token SUB=alice [TTL=3600], or {dev_token}")
        for logical_id, name in stack.resources.items():
            print(f"  {logical_id}: {name}")
        for subscription in stack.s3_subscriptions:
            print(f"Trigger: {subscription.describe()}")
        for schedule in stack.schedules:
            print(f"Trigger: {schedule.describe(args.schedule_period)}")
        print(READY_LINE.format(api=stack.api_url, aws=stack.aws_endpoint), flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handlers run promptly
            pass
    finally:
        print("local_stack stopping", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
