"""Command line: `image-uploads upload|ls|get|rm` (or `python -m image_uploads_cli`)."""

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from image_uploads_cli.api import DEFAULT_API, Api, ApiError, ApiUnreachable
from image_uploads_cli.output import print_images, print_plan, print_summary, progress_bar
from image_uploads_cli.upload import Uploader, plan_upload

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get("IMAGE_UPLOADS_API", DEFAULT_API),
        help="API base URL (default: $IMAGE_UPLOADS_API or %(default)s)",
    )
    parser = argparse.ArgumentParser(prog="image-uploads", description="Bulk-upload images into a dataset.")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser(
        "upload",
        parents=[common],
        help="upload a folder (recursively); files already uploaded are skipped",
        description="Upload every JPEG/PNG/WebP/GIF of DIR (1 byte..10 MiB) into a dataset. "
        "Files are named by their path relative to DIR; a run skips those already uploaded, "
        "so running it again resumes an interrupted upload.",
    )
    up.add_argument("directory", type=Path, metavar="DIR")
    up.add_argument("--dataset", type=_positive, required=True)
    up.add_argument("--concurrency", type=_positive, default=8, help="parallel PUTs (default: 8)")
    up.add_argument("--dry-run", action="store_true", help="list what would be sent or refused; send nothing")
    up.add_argument("--magic", action="store_true", help="judge types by content, not extension")
    up.add_argument("--limit", type=_positive, help="send at most N files this run")
    up.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the server's verdicts (default: 30)"
    )
    up.add_argument("--no-progress", action="store_true", help="no progress bar")

    ls = commands.add_parser("ls", parents=[common], help="list a dataset's images")
    ls.add_argument("--dataset", type=_positive, required=True)
    ls.add_argument("--status", choices=["uploading", "uploaded", "error"])

    get = commands.add_parser("get", parents=[common], help="one image record, as JSON")
    get.add_argument("image_id", type=_positive, metavar="ID")

    rm = commands.add_parser("rm", parents=[common], help="delete images (record, object, thumbnail)")
    rm.add_argument("image_ids", type=_positive, nargs="+", metavar="ID")
    return parser


def _upload(args: argparse.Namespace, api: Api, out: Console, err: Console) -> int:
    if not args.directory.is_dir():
        err.print(f"error: {args.directory} is not a directory")
        return EXIT_ERROR
    plan = plan_upload(api, args.dataset, args.directory, args.magic, args.limit)
    if args.dry_run:
        print_plan(out, plan)
        return EXIT_OK
    with progress_bar(err, enabled=not args.no_progress) as progress:
        summary = Uploader(api, args.dataset, args.concurrency, args.wait, progress).run(plan)
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
            err.print(f"image {image_id}: {exc}", highlight=False)
            status = EXIT_PROBLEMS
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    api = Api(args.api, pool_size=getattr(args, "concurrency", 1) + 2)
    try:
        if args.command == "upload":
            return _upload(args, api, out, err)
        if args.command == "ls":
            print_images(out, list(api.images(args.dataset, args.status)))
        elif args.command == "get":
            print(json.dumps(api.get(args.image_id), indent=2, ensure_ascii=False))
        else:
            return _rm(args, api, out, err)
    except ApiUnreachable as exc:
        err.print(f"error: {exc}", highlight=False)
        return EXIT_ERROR
    except ApiError as exc:
        err.print(f"error: the API answered {exc}", highlight=False)
        return EXIT_PROBLEMS if exc.status == 404 else EXIT_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
