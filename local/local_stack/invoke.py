"""`python -m local_stack invoke FUNCTION EVENT_FILE`: the local twin of `sam local invoke -e`.

Runs one function of the template in a worker process, as the stack does, with the JSON event of
EVENT_FILE ("-" reads stdin), against the moto server of a local stack that is already running
(`make run`), and prints the function's result as JSON on stdout. The function's own output goes to
stderr.

Exit status: 0 done, 1 the function raised (or returned something that is not JSON), 2 bad
arguments (unknown function, event file missing or not JSON), 3 no local stack on the AWS port.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from local_stack.lambda_runtime import LambdaRuntime
from local_stack.oidc import auth_parameters
from local_stack.template import DEFAULT_TEMPLATE, PSEUDO_DEFAULTS, REPO_ROOT, functions, load_template

EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_STACK = 3


class InvokeError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def stack_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The options that find a running stack and its template (also `replay-failures`')."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--aws-port", type=int, default=int(os.environ.get("AWS_PORT", "4566")))
    # Accepted like `serve`'s, so that one set of options works for both; a function does not use it.
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "3000")))
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--stack-name", default=PSEUDO_DEFAULTS["stack_name"])
    parser.add_argument("--region", default=PSEUDO_DEFAULTS["region"])
    add_auth_argument(parser)
    return parser


def add_auth_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--auth",
        choices=("open", "jwt"),
        default=os.environ.get("AUTH", "open"),
        help="the template's AuthMode (env AUTH, default open); jwt: a local OIDC issuer and JWT authorizer",
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = stack_parser("python -m local_stack invoke", __doc__)
    parser.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    parser.add_argument("event_file", metavar="EVENT_FILE", help='a JSON event, or "-" for stdin')
    return parser.parse_args(argv)


def template_dir(path: Path) -> Path:
    """CodeUri/ContentUri are relative to the template's directory (relative paths: the repo root's)."""
    return (path if path.is_absolute() else REPO_ROOT / path).resolve().parent


def read_event(event_file: str) -> Any:
    try:
        text = sys.stdin.read() if event_file == "-" else Path(event_file).read_text(encoding="utf-8")
    except OSError as error:
        raise InvokeError(f"cannot read the event file {event_file}: {error.strerror}", EXIT_USAGE) from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvokeError(f"the event file {event_file} is not JSON: {error}", EXIT_USAGE) from None


def check_stack(host: str, port: int) -> None:
    """Fail early and clearly when nothing listens on the AWS port (before any import or call)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as error:
        raise InvokeError(
            f"no local stack at http://{host}:{port} ({error.strerror or error}): "
            "start it first with `make run` (or pass the --aws-port it uses)",
            EXIT_NO_STACK,
        ) from None


def function_template(args: argparse.Namespace) -> dict[str, Any]:
    """The template, which must have the function ``args.function``."""
    try:
        template = load_template(args.template)
    except OSError as error:
        raise InvokeError(f"cannot read the template {args.template}: {error.strerror}", EXIT_USAGE) from None
    known = sorted(functions(template))
    if args.function not in known:
        raise InvokeError(
            f"no function {args.function} in {args.template}; functions: {', '.join(known) or 'none'}",
            EXIT_USAGE,
        )
    return template


def invoke(args: argparse.Namespace) -> int:
    """Run the function and print its result as JSON."""
    template = function_template(args)
    event = read_event(args.event_file)
    check_stack(args.host, args.aws_port)
    runtime = local_runtime(args, template)
    try:
        result = runtime.invoke(args.function, event)
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        message = f"{args.function} raised {type(error).__name__}: {error}"
        raise InvokeError(message, EXIT_FUNCTION_ERROR) from None
    finally:
        runtime.close()
    print(json.dumps(result))
    return 0


def local_runtime(args: argparse.Namespace, template: dict[str, Any]) -> LambdaRuntime:
    """One worker per function, against the running stack; whatever functions print goes to stderr."""
    return LambdaRuntime(
        template,
        aws_endpoint=f"http://{args.host}:{args.aws_port}",
        stack_name=args.stack_name,
        region=args.region,
        parameters=auth_parameters(args.auth, f"http://{args.host}:{args.api_port}"),
        base_dir=template_dir(args.template),
        max_concurrency=1,
        stdout_to_stderr=True,
    )


def main(argv: Sequence[str]) -> int:
    return run("invoke", invoke, parse_args(argv))


def run(name: str, command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``command(args)``'s exit status; an InvokeError is reported on stderr."""
    if args.host in ("0.0.0.0", "", "::"):  # where a stack listens, not where to connect
        args.host = "127.0.0.1"
    # Like Lambda's runtime: the root logger writes warnings and worse (here to stderr).
    logging.basicConfig(
        level=logging.WARNING, format="[%(levelname)s] %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        return command(args)
    except InvokeError as error:
        print(f"local_stack {name}: {error}", file=sys.stderr)
        return error.status
