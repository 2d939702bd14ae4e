"""Command line: `image-uploads upload|ls|get|rm|datasets` (or `python -m image_uploads_cli`)."""

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from image_uploads_cli.api import DEFAULT_API, ROLES, Api, ApiError, ApiUnreachable, BadToken
from image_uploads_cli.output import (
    print_datasets,
    print_images,
    print_members,
    print_plan,
    print_summary,
    progress_bar,
)
from image_uploads_cli.upload import Uploader, dry_run, plan_upload

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """Bulk-upload images into a dataset of the image-uploads API, list, inspect and delete them,
and (when the API runs with AuthMode=jwt) create datasets and share them."""
EPILOG = """With AuthMode=jwt every API call needs a token: --token, or better $IMAGE_UPLOADS_TOKEN (a command
line is visible to the other users of the machine). It is sent to the API only, never to S3, and never
printed. Exit status: 0 done; 1 files rejected or failed, images not deleted, or not found (404);
2 the API is unreachable, or refused the token (401) or the request (403, 409...); 130 interrupted."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _sub(text: str) -> str:
    # The API takes the member in its path (/members/{sub}); API Gateway decodes %2F there, so a sub
    # with a `/` cannot be named. Refused here rather than sent and answered with a confusing 422.
    if not text or "/" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a sub must be non-empty and have no '/'")
    return text


def _common() -> argparse.ArgumentParser:
    """`--api` and `--token`, taken before or after the command's name.

    No defaults here (SUPPRESS): a subcommand's default would overwrite the value given before its
    name; `_connection` applies the environment's afterwards.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=argparse.SUPPRESS,
        help=f"API base URL (default: $IMAGE_UPLOADS_API or {DEFAULT_API})",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token for the API (AuthMode=jwt), sent as `Authorization: Bearer` to the API only "
        "(default: $IMAGE_UPLOADS_TOKEN, which other local users cannot see in the process list)",
    )
    return common


def _connection(args: argparse.Namespace) -> tuple[str, str | None]:
    """(API base URL, token): the options, else the environment."""
    api = args.api if "api" in args else os.environ.get("IMAGE_UPLOADS_API", DEFAULT_API)
    token = args.token if "token" in args else os.environ.get("IMAGE_UPLOADS_TOKEN")
    return api, token  # `--token ""` sends no token whatever the environment says


# What argparse's error messages must not repeat: a token given in the wrong place, e.g.
# `image-uploads --tokn eyJ... ls` ("invalid choice: 'eyJ...'").
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")


def _secrets(argv: list[str]) -> list[str]:
    found = [os.environ.get("IMAGE_UPLOADS_TOKEN", "").strip()]
    for i, arg in enumerate(argv):
        if arg == "--token" and i + 1 < len(argv):
            found.append(argv[i + 1].strip())
        elif arg.startswith("--token="):
            found.append(arg.removeprefix("--token=").strip())
    return sorted(filter(None, found), key=len, reverse=True)


def _datasets_parser(commands, common: argparse.ArgumentParser) -> None:
    datasets = commands.add_parser(
        "datasets",
        parents=[common],
        help="create datasets, list yours, share them (AuthMode=jwt)",
        description="Datasets and their members. These need the API to run with AuthMode=jwt and a token "
        "(--token or $IMAGE_UPLOADS_TOKEN); with AuthMode=open the API answers 409. Roles: viewer "
        "(list, get, download), editor (also upload and delete images), owner (also members).",
    )
    actions = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        parents=[common],
        help="create dataset N, you its owner",
        description="Create dataset N with you as its owner (nothing to do when it is yours already). "
        "A dataset somebody else created is refused (409).",
    )
    create.add_argument("dataset", type=_positive, metavar="N", help="dataset id (a positive integer)")

    actions.add_parser(
        "ls",
        parents=[common],
        help="your datasets and your role in each",
        description="The datasets you are a member of, with your role in each.",
    )

    members = actions.add_parser(
        "members",
        parents=[common],
        help="dataset N's members and their roles (owner)",
        description="The members of dataset N and their roles; only an owner may see them.",
    )
    members.add_argument("dataset", type=_positive, metavar="N", help="dataset id")

    share = actions.add_parser(
        "share",
        parents=[common],
        help="give SUB a role in dataset N (owner)",
        description="Give SUB (the `sub` of their tokens) a role in dataset N, or change the one they have. "
        "Only an owner may; the change applies from their next request.",
    )
    share.add_argument("dataset", type=_positive, metavar="N", help="dataset id")
    share.add_argument("sub", type=_sub, metavar="SUB", help="the member: the `sub` claim of their tokens")
    share.add_argument("--role", choices=ROLES, default="viewer", help="(default: %(default)s)")

    unshare = actions.add_parser(
        "unshare",
        parents=[common],
        help="remove SUB from dataset N (owner)",
        description="Remove SUB from dataset N: from their next request the dataset does not exist for them. "
        "Only an owner may; the last owner cannot be removed (make another member owner first).",
    )
    unshare.add_argument("dataset", type=_positive, metavar="N", help="dataset id")
    unshare.add_argument("sub", type=_sub, metavar="SUB", help="the member: the `sub` claim of their tokens")


def _parser(secrets: list[str] | None = None) -> argparse.ArgumentParser:
    class Parser(argparse.ArgumentParser):  # the subcommands' parsers are of the same class
        def error(self, message: str) -> NoReturn:
            for secret in secrets or ():
                message = message.replace(secret, "<token>")
            super().error(_JWT.sub("<token>", message))

    common = _common()
    parser = Parser(
        prog="image-uploads",
        parents=[common],
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "upload",
        parents=[common],
        help="upload a folder (recursively); files already uploaded are skipped",
        description="Upload every image of DIR the API accepts into a dataset. Each file is judged by its "
        "bytes, as the server judges it, never by its name (a camera's .mpo is a JPEG; HTML named .png is "
        "refused), against the types and sizes the API publishes (GET /limits). Files are named by their "
        "path relative to DIR. Files are known by their content (SHA-256): a run skips those already in "
        "the dataset, under any name, and those the server rejected before, so running it again resumes "
        "an interrupted upload and sends nothing twice. With AuthMode=jwt it needs the editor role.",
    )
    up.add_argument("directory", type=Path, metavar="DIR")
    up.add_argument("--dataset", type=_positive, required=True)
    up.add_argument("--concurrency", type=_positive, default=8, help="parallel PUTs (default: 8)")
    up.add_argument("--dry-run", action="store_true", help="list what would be sent or refused; send nothing")
    # Types are always judged by content now; the option stays accepted for older scripts.
    up.add_argument("--magic", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--limit", type=_positive, help="send at most N files this run")
    up.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for the server's next verdict while it judges the batch (default: 30)",
    )
    up.add_argument("--no-progress", action="store_true", help="no progress bar")

    ls = commands.add_parser("ls", parents=[common], help="list a dataset's images")
    ls.add_argument("--dataset", type=_positive, required=True)
    ls.add_argument("--status", choices=["uploading", "uploaded", "error"])

    get = commands.add_parser("get", parents=[common], help="one image record, as JSON")
    get.add_argument("image_id", type=_positive, metavar="ID")

    rm = commands.add_parser("rm", parents=[common], help="delete images (record, object, thumbnail)")
    rm.add_argument("image_ids", type=_positive, nargs="+", metavar="ID")

    _datasets_parser(commands, common)
    return parser


def _print_api_error(err: Console, exc: ApiError | ApiUnreachable | BadToken) -> None:
    # One line, whatever the terminal's width; the API's text is not rich markup.
    line = exc.line() if isinstance(exc, ApiError) else str(exc)
    err.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)


def _exit_status(exc: ApiError | ApiUnreachable | BadToken) -> int:
    return EXIT_PROBLEMS if isinstance(exc, ApiError) and exc.status == 404 else EXIT_ERROR


def _upload(args: argparse.Namespace, api: Api, out: Console, err: Console) -> int:
    if not args.directory.is_dir():
        err.print(f"error: {args.directory} is not a directory")
        return EXIT_ERROR
    # A dataset the caller may not read fails here (404), before anything is sent.
    plan = plan_upload(api, args.dataset, args.directory, args.limit)
    if args.dry_run:
        print_plan(out, dry_run(api, args.dataset, plan))
        return EXIT_OK
    uploader = None
    try:
        with progress_bar(err, enabled=not args.no_progress) as progress:
            uploader = Uploader(api, args.dataset, args.concurrency, args.wait, progress)
            # A dataset the caller may read but not write fails at the first prepare-upload (403),
            # once for the whole batch, before any PUT.
            summary = uploader.run(plan)
    except (ApiError, ApiUnreachable) as exc:
        _print_api_error(err, exc)
        if uploader is not None and uploader.files_sent:  # e.g. the token expired during a long run
            err.print(
                f"{uploader.files_sent} file(s) were stored before that and are checked all the same: "
                "run the same command again to resume",
                highlight=False,
                soft_wrap=True,
            )
        return _exit_status(exc)
    print_summary(out, summary)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.ok else EXIT_PROBLEMS


def _rm(args: argparse.Namespace, api: Api, out: Console, err: Console) -> int:
    status = EXIT_OK
    for image_id in args.image_ids:
        try:
            api.delete(image_id)
            out.print(f"deleted {image_id}", highlight=False)
        except ApiError as exc:
            if exc.status == 401:  # the same for every image: say it once
                raise
            err.print(f"image {image_id}: {exc}", highlight=False, markup=False, soft_wrap=True)
            status = EXIT_PROBLEMS
    return status


def _datasets(args: argparse.Namespace, api: Api, out: Console) -> int:
    if args.action == "create":
        access, created = api.create_dataset(args.dataset)
        dataset, role = access["dataset_id"], access["role"]
        if created:
            line = f"created dataset {dataset}: you are its {role}"
        else:
            line = f"dataset {dataset} is already yours ({role})"
        out.print(line, highlight=False)
    elif args.action == "ls":
        print_datasets(out, api.datasets())
    elif args.action == "members":
        print_members(out, api.members(args.dataset))
    elif args.action == "share":
        member = api.share(args.dataset, args.sub, args.role)
        line = f"{member['sub']} now has the {member['role']} role in dataset {args.dataset}"
        out.print(line, highlight=False, markup=False)
    else:
        out.print(api.unshare(args.dataset, args.sub)["message"], highlight=False, markup=False)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(_secrets(argv)).parse_args(argv)
    out, err = Console(), Console(stderr=True)
    base_url, token = _connection(args)
    try:
        api = Api(base_url, pool_size=getattr(args, "concurrency", 1) + 2, token=token)
        if args.command == "upload":
            return _upload(args, api, out, err)
        if args.command == "datasets":
            return _datasets(args, api, out)
        if args.command == "ls":
            print_images(out, list(api.images(args.dataset, args.status)))
        elif args.command == "get":
            print(json.dumps(api.get(args.image_id), indent=2, ensure_ascii=False))
        else:
            return _rm(args, api, out, err)
    except (ApiError, ApiUnreachable, BadToken) as exc:
        _print_api_error(err, exc)
        return _exit_status(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
