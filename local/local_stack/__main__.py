"""`python -m local_stack`: run the template's HTTP API, S3 and DynamoDB on localhost until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from local_stack.stack import LocalStack
from local_stack.template import DEFAULT_TEMPLATE, PSEUDO_DEFAULTS, load_template

READY_LINE = "local_stack ready: api={api} aws={aws}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "3000")))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_PORT", "4566")))
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--stack-name", default=PSEUDO_DEFAULTS["stack_name"])
    parser.add_argument("--region", default=PSEUDO_DEFAULTS["region"])
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also log moto's requests and the SDKs' info messages"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
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
    )
    try:
        stack.start()
        print(f"API (HTTP API, payload 2.0): {stack.api_url}")
        print(f"S3 / DynamoDB endpoint:      {stack.aws_endpoint}  (credentials: testing/testing)")
        for logical_id, name in stack.resources.items():
            print(f"  {logical_id}: {name}")
        print(READY_LINE.format(api=stack.api_url, aws=stack.aws_endpoint), flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handlers run promptly
            pass
    finally:
        print("local_stack stopping", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
