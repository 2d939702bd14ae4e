"""CI gate: prove what `sam build` packaged, not just the source tree.

1. Every native extension in the arm64 build (.aws-sam/build) is an aarch64 ELF for CPython
   3.13 (or abi3): what Lambda's python3.13/arm64 runtime can load.
2. Those binaries cannot run on an x86_64 CI machine, so a twin of the template with
   x86_64 functions is built into .aws-sam/import-check, and each function's handler is
   imported in a fresh, isolated interpreter whose path holds only that function's artifact
   and its layers' `python/` folders: a missing requirement or a wrong Handler fails here.

Usage: python local/build_check.py   (after `sam build`; `make import-check` runs both)
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

from local_stack.template import (
    REPO_ROOT,
    function_environment,
    functions,
    load_template,
    resources_of_type,
)

BUILD = REPO_ROOT / ".aws-sam" / "build"
TWIN_BUILD = REPO_ROOT / ".aws-sam" / "import-check"
TWIN_TEMPLATE = REPO_ROOT / ".aws-sam" / "template.import-check.yaml"
_AARCH64 = 0xB7  # ELF e_machine


def _elf_machine(path: Path) -> int | None:
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def check_native_extensions(build: Path) -> list[str]:
    problems = []
    extensions = [p for p in build.rglob("*.so*") if p.is_file()]
    for path in extensions:
        name = path.name
        if _elf_machine(path) != _AARCH64:
            problems.append(f"{path.relative_to(build)}: not an aarch64 binary")
        elif ".cpython-" in name and "cpython-313" not in name:
            problems.append(f"{path.relative_to(build)}: built for another CPython than 3.13")
    print(f"native extensions checked: {len(extensions)} (aarch64, CPython 3.13)")
    return problems


def _twin_template() -> None:
    """template.yaml with x86_64 functions and layers, paths still relative to the repo root."""
    text = (REPO_ROOT / "template.yaml").read_text()
    text = text.replace("[arm64]", "[x86_64]").replace(
        "BuildArchitecture: arm64", "BuildArchitecture: x86_64"
    )
    # CodeUri/ContentUri are relative to the template's folder: make them absolute.
    for folder in ("functions/", "layers/"):
        text = text.replace(f"Uri: {folder}", f"Uri: {REPO_ROOT / folder}/")
    TWIN_TEMPLATE.parent.mkdir(exist_ok=True)
    TWIN_TEMPLATE.write_text(text)


def build_twin() -> None:
    _twin_template()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "sam"), "build", "--cached",
            "--template-file", str(TWIN_TEMPLATE),
            "--build-dir", str(TWIN_BUILD),
            "--cache-dir", str(REPO_ROOT / ".aws-sam" / "import-check-cache"),
        ],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )  # fmt: skip


def import_handlers(template: dict, build: Path) -> list[str]:
    layer_ids = {
        str(props.get("Properties", {}).get("ContentUri", "")).rstrip("/"): logical_id
        for logical_id, props in resources_of_type(template, "AWS::Serverless::LayerVersion").items()
    }
    problems = []
    for logical_id, info in functions(template).items():
        paths = [str(build / logical_id)] + [
            str(build / layer_ids[layer.rstrip("/")] / "python") for layer in info.layers
        ]
        module, _, attribute = info.handler.rpartition(".")
        code = (
            "import sys; sys.path[:0] = sys.argv[1:]; import importlib; "
            f"handler = getattr(importlib.import_module({module!r}), {attribute!r}); "
            "assert callable(handler); print('ok', handler.__module__)"
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            **function_environment(template, logical_id),
        }
        # -I: no user site, no PYTHONPATH, no CWD; -S: not even this venv's site-packages.
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, *paths],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        status = result.stdout.strip() or result.stderr.strip().splitlines()[-1:]
        print(f"{logical_id}: {info.handler} -> {status}")
        if result.returncode != 0:
            problems.append(f"{logical_id}: {result.stderr.strip()[-2000:]}")
    return problems


def main() -> int:
    if not BUILD.exists():
        print("run `sam build` first", file=sys.stderr)
        return 2
    template = load_template()
    problems = check_native_extensions(BUILD)
    if platform.machine() in ("aarch64", "arm64"):
        problems += import_handlers(template, BUILD)
    else:
        build_twin()
        problems += import_handlers(template, TWIN_BUILD)
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
