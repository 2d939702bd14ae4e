"""What the CLI prints: rich tables on stdout, progress on stderr."""

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from image_uploads_cli.upload import Plan, Summary

DETAIL_ROWS = 50  # a folder of 10 000 bad files should not flood the terminal


def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.fields[files]}/{task.fields[nfiles]} files"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def _details(title: str, rows: list[tuple[str, str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("file", "outcome", "reason"):
        table.add_column(name, overflow="fold")
    for row in rows[:DETAIL_ROWS]:
        table.add_row(*(Text(cell) for cell in row))  # Text: no rich markup in file names
    if len(rows) > DETAIL_ROWS:
        table.add_row(Text(f"... and {len(rows) - DETAIL_ROWS} more"), "", "")
    return table


def print_plan(console: Console, plan: Plan) -> None:
    table = Table(title="Would send", title_justify="left")
    for name in ("file", "size", "type"):
        table.add_column(name, overflow="fold")
    for f in plan.to_send:
        table.add_row(Text(f.name), decimal(f.size), f.mime_type)
    if plan.to_send:
        console.print(table)
    if plan.refused:
        console.print(_details("Refused locally", [(r.name, "skipped", r.reason) for r in plan.refused]))
    console.print(
        f"dry run: would send {len(plan.to_send)} ({decimal(sum(f.size for f in plan.to_send))}), "
        f"already uploaded {len(plan.already)}, refused locally {len(plan.refused)}; nothing sent",
        highlight=False,
        soft_wrap=True,
    )


def print_summary(console: Console, summary: Summary) -> None:
    plan = summary.plan
    shown = ("uploaded", "already")
    rows = [(o.file.name, o.status, o.reason) for o in summary.outcomes if o.status not in shown] + [
        (r.name, "skipped", r.reason) for r in plan.refused
    ]
    if rows:
        console.print(_details("Not uploaded, or not yet checked", rows))
    counts = {
        "uploaded": summary.count("uploaded"),
        "unverified": summary.count("unverified"),
        "already uploaded": len(plan.already) + summary.count("already"),
        "rejected": summary.count("rejected"),
        "failed": summary.count("failed"),
        "skipped locally": len(plan.refused),
        "rejected before": summary.count("rejected before"),
    }
    table = Table(title="Summary", title_justify="left")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for name, value in counts.items():
        table.add_row(
            name,
            str(value),
            style="red" if value and name in ("rejected", "failed", "rejected before") else None,
        )
    console.print(table)
    if summary.interrupted:
        console.print("interrupted: run the same command again to upload the rest")
    # One plain line for logs and scripts.
    console.print(
        ", ".join(f"{name} {value}" for name, value in counts.items()), highlight=False, soft_wrap=True
    )


def print_images(console: Console, images: list[dict]) -> None:
    table = Table()
    for name, justify in (("id", "right"), ("filename", "left"), ("size", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.add_column("status")
    table.add_column("dims", justify="right")
    for image in images:
        status = image["status"]
        if image.get("error_reason"):
            status += f" ({image['error_reason']['code']})"
        # As shown (after the orientation); the stored size for records from before display sizes.
        width = image.get("display_width") or image.get("width")
        height = image.get("display_height") or image.get("height")
        dims = f"{width}x{height}" if width else ""
        table.add_row(str(image["id"]), Text(image["filename"]), decimal(image["file_size"]), status, dims)
    console.print(table)
    console.print(f"{len(images)} image(s)", highlight=False)


def print_datasets(console: Console, datasets: list[dict]) -> None:
    table = Table()
    table.add_column("dataset", justify="right")
    table.add_column("role")
    for access in sorted(datasets, key=lambda a: a["dataset_id"]):
        table.add_row(str(access["dataset_id"]), access["role"])
    console.print(table)
    console.print(f"{len(datasets)} dataset(s)", highlight=False)


def print_members(console: Console, members: list[dict]) -> None:
    table = Table()
    table.add_column("sub", overflow="fold")
    table.add_column("role")
    for member in members:
        table.add_row(Text(member["sub"]), member["role"])  # Text: a sub is not rich markup
    console.print(table)
    console.print(f"{len(members)} member(s)", highlight=False)
