"""`python -m local_stack`: the template's API, functions, tables, buckets, queues and triggers on localhost.

  python -m local_stack [serve] [options]        start the stack (`make run`)
  python -m local_stack invoke FUNCTION EVENT    run one function with a JSON event file ("-": stdin) against
                                                 the running stack, like `sam local invoke -e` (`make invoke`)
  python -m local_stack replay-failures          replay the failed S3 events of the running stack (needs ops/
                                                 on PYTHONPATH, as `make replay-failures` sets)
  python -m local_stack token --sub alice        print a token of a stack run with --auth jwt (`make token`)

invoke, replay-failures and token exit with 0 done, 1 the function raised (replay-failures: messages were
kept), 2 bad arguments (unknown function, unreadable event...), 3 no local stack there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import traceback
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from local_stack.auth import CLIENT_ID, DEFAULT_TTL, auth_parameters, issuer_url
from local_stack.lambda_runtime import LambdaRuntime
from local_stack.template import DEFAULT_TEMPLATE, REPO_ROOT, Names, functions, load_template, unsupported

READY_LINE = "local_stack ready: api={api} aws={aws}"


class Exit(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    env = os.environ.get
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default=env("HOST", "127.0.0.1"))
    common.add_argument("--api-port", type=int, default=int(env("API_PORT", "3000")))
    common.add_argument("--aws-port", type=int, default=int(env("AWS_PORT", "4566")))
    common.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    common.add_argument("--stack-name", default="local")
    common.add_argument("--auth", choices=("open", "jwt"), default=env("AUTH", "open"), help="the AuthMode")
    parser = argparse.ArgumentParser(
        "python -m local_stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", parents=[common])
    period = float(env("LOCAL_SCHEDULE_PERIOD") or 0) or None
    serve.add_argument("--schedule-period", type=float, default=period, help="run every schedule every N s")
    delay = float(env("LOCAL_RETRY_DELAY", "1"))
    serve.add_argument("--retry-delay", type=float, default=delay, help="wait N s between Lambda's retries")
    serve.add_argument("-v", "--verbose", action="store_true", help="also log moto's requests and the SDKs'")
    invoke = commands.add_parser("invoke", parents=[common])
    invoke.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    invoke.add_argument("event_file", metavar="EVENT_FILE")
    replay = commands.add_parser("replay-failures", parents=[common])
    replay.add_argument("--function", default="ProcessUploadFunction", metavar="FUNCTION_LOGICAL_ID")
    replay.add_argument("--max", type=int, metavar="N", help="replay at most N messages")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")
    token = commands.add_parser("token", parents=[common])
    token.add_argument("--sub", required=True, help="the user (the token's sub claim)")
    token.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="the token's life in seconds")
    if not argv or argv[0] not in (*commands.choices, "-h", "--help"):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    if args.command != "serve" and args.host in ("0.0.0.0", "", "::"):
        args.host = "127.0.0.1"  # where a stack listens, not an address to call
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "serve":
        return serve(args)
    # Like Lambda's runtime: the root logger writes warnings and worse (here to stderr).
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s")
    try:
        return {"invoke": invoke, "replay-failures": replay, "token": print_token}[args.command](args)
    except Exit as error:
        print(f"local_stack {args.command}: {error}", file=sys.stderr)
        return error.status


def serve(args: argparse.Namespace) -> int:
    from local_stack.stack import LocalStack  # moto's server is only needed here

    template = load_template(args.template)
    if problems := unsupported(template):
        print("\n".join(f"local_stack: {args.template.name}: {p}" for p in problems), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.verbose:  # moto (werkzeug) logs every call; the SDKs chat about credentials
        for name in ("werkzeug", "botocore", "pynamodb"):
            logging.getLogger(name).setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = LocalStack(
        template,
        host=args.host,
        api_port=args.api_port,
        aws_port=args.aws_port,
        stack_name=args.stack_name,
        base_dir=(REPO_ROOT / args.template).parent,
        retry_delay=args.retry_delay,
        schedule_period=args.schedule_period,
        auth=args.auth,
    )
    try:
        stack.start()
        print(f"API (HTTP API, payload 2.0):      {stack.api_url}")
        print(f"Upload page (web/):               {stack.api_url}/")
        print(f"AWS endpoint (S3, DynamoDB, SQS): {stack.aws_endpoint}  (credentials: testing/testing)")
        print("  Presigned S3 requests are checked as S3 does: signature, signed headers, expiry, checksum")
        print("Data: in memory only; it is gone when the stack stops")
        if stack.issuer is None:
            print("Auth: open (AuthMode=open): no token, anyone may call every route")
        else:
            print("Auth: jwt (AuthMode=jwt): data routes need `Authorization: Bearer <token>`")
            print(f"  Issuer (local OIDC, audience {CLIENT_ID}): {stack.issuer.url}")
            dev_token = f'POST {{"sub": "alice"}} to {stack.issuer.url}/dev/token'
            print(f"  Token: make token SUB=alice [TTL=3600], or {dev_token}")
        for logical_id, name in stack.resources.items():
            print(f"  {logical_id}: {name}")
        print("".join(f"Trigger: {trigger}\n" for trigger in stack.triggers), end="")
        print(READY_LINE.format(api=stack.api_url, aws=stack.aws_endpoint), flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handlers run promptly
            pass
    finally:
        print("local_stack stopping", flush=True)
        stack.stop()
    return 0


def _names(args: argparse.Namespace, function: str) -> Names:
    """The template's Names; the template must have ``function``."""
    try:
        template = load_template(args.template)
    except OSError as error:
        raise Exit(f"cannot read the template {args.template}: {error.strerror}", 2) from None
    if function not in (known := sorted(functions(template))):
        raise Exit(f"no function {function} in {args.template}; functions: {', '.join(known) or 'none'}", 2)
    parameters = auth_parameters(args.auth, f"http://{args.host}:{args.api_port}")
    return Names(template, stack_name=args.stack_name, parameters=parameters)


def _runtime(args: argparse.Namespace, names: Names) -> LambdaRuntime:
    """One worker per function against the stack on the AWS port; what the functions print goes to stderr."""
    endpoint = f"http://{args.host}:{args.aws_port}"
    try:
        socket.create_connection((args.host, args.aws_port), timeout=2).close()
    except OSError as error:
        hint = "start it first with `make run` (or give its --aws-port)"
        raise Exit(f"no local stack at {endpoint} ({error.strerror or error}): {hint}", 3) from None
    base_dir = (REPO_ROOT / args.template).parent
    return LambdaRuntime(
        names, aws_endpoint=endpoint, base_dir=base_dir, max_concurrency=1, stdout_to_stderr=True
    )


def invoke(args: argparse.Namespace) -> int:
    names = _names(args, args.function)
    try:
        event = json.loads(sys.stdin.read() if args.event_file == "-" else Path(args.event_file).read_text())
    except OSError as error:
        raise Exit(f"cannot read the event file {args.event_file}: {error.strerror}", 2) from None
    except ValueError as error:
        raise Exit(f"the event file {args.event_file} is not JSON: {error}", 2) from None
    runtime = _runtime(args, names)
    try:
        print(json.dumps(runtime.invoke(args.function, event)))
        return 0
    except Exception as error:
        traceback.print_exc()
        raise Exit(f"{args.function} raised {type(error).__name__}: {error}", 1) from None
    finally:
        runtime.close()


def replay(args: argparse.Namespace) -> int:
    """The function's failed events (in its OnFailure queue) invoked again synchronously, as
    ops/replay_failures.py does on AWS; a message is deleted only when its event was replayed."""
    from replay_failures import drain, replayer, report

    from local_stack.stack import aws_client
    from local_stack.triggers import invoke_config

    names = _names(args, args.function)
    if (queue := invoke_config(names, args.function)[1]) is None:
        raise Exit(f"{args.function} has no SQS OnFailure destination in its EventInvokeConfig", 2)
    runtime = _runtime(args, names)
    sqs = aws_client("sqs", runtime.aws_endpoint)  # type: ignore[arg-type]
    handle = replayer(lambda payload: json.dumps(runtime.invoke(args.function, payload)), args.dry_run)
    try:
        return report(
            drain(sqs, sqs.get_queue_url(QueueName=queue)["QueueUrl"], handle, args.max), args.dry_run
        )
    finally:
        runtime.close()


def print_token(args: argparse.Namespace) -> int:
    api = f"http://{args.host}:{args.api_port}"
    body = json.dumps({"sub": args.sub, "ttl": args.ttl}).encode()
    request = urllib.request.Request(
        issuer_url(api) + "/dev/token", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(json.load(response)["token"])
            return 0
    except urllib.error.HTTPError as error:
        if error.code == 404:  # no issuer: the stack runs with --auth open
            message = f"the local stack at {api} runs with AUTH=open, where the API takes no token; "
            raise Exit(message + "restart it with `make run AUTH=jwt`", 2) from None
        raise Exit(f"the issuer refused: {error.read().decode(errors='replace')}", 2) from None
    except urllib.error.URLError as error:
        message = (
            f"no local stack at {api} ({error.reason}): start it with `make run AUTH=jwt` (same API_PORT)"
        )
        raise Exit(message, 3) from None


if __name__ == "__main__":
    sys.exit(main())
