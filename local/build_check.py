"""CI gate: prove what `sam build` packaged, not just the source tree.

1. Every native extension in the arm64 build (.aws-sam/build) is an aarch64 ELF for CPython
   3.13 (or abi3): what Lambda's python3.13/arm64 runtime can load.
2. Each function's handler is imported from that build in a fresh, isolated interpreter whose
   path holds only that function's artifact and its layers' `python/` folders: a missing
   requirement or a wrong Handler fails here. So is every top-level module of the distributions
   the artifact itself holds: a function imports some only when it needs them (pi-heif, when a
   HEIF file arrives), and those must load too. Its aarch64 binaries cannot load on an x86_64
   machine: there, each distribution of the build that carries native code (its RECORD lists a
   shared object) is installed for this machine, same name and version, with `pip install
   --no-deps --only-binary=:all: --target` into .aws-sam/host-natives/ (kept between runs), and
   put first on that path. Everything else the handler imports is the artifact's own files; an
   aarch64 binary that was not replaced fails to load, and so fails the check.

Usage: python local/build_check.py   (after `sam build`; `make import-check` runs both)
"""

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

from local_stack.template import (
    REPO_ROOT,
    function_environment,
    functions,
    load_template,
)

BUILD = REPO_ROOT / ".aws-sam" / "build"
HOST_NATIVES = REPO_ROOT / ".aws-sam" / "host-natives"
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


def check_bytecode(build: Path) -> list[str]:
    """Every module of the build ships its bytecode, hash-based and unchecked (a .pyc whose flags say
    so): Lambda cannot write __pycache__, and the zip's timestamps must not make it stale."""
    problems = []
    sources = sorted(build.rglob("*.py"))
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        flags = int.from_bytes(cached.read_bytes()[4:8], "little") if cached.exists() else None
        if flags != 0b01:  # bit 0: hash-based; bit 1 (check_source) clear
            problems.append(f"{source.relative_to(build)}: no unchecked-hash bytecode (run `make build`)")
    print(f"bytecode checked: {len(sources)} modules")
    return problems[:20]


def artifact_paths(template: dict, build: Path) -> dict[str, list[Path]]:
    """Function logical id -> its artifact folder and its layers' `python/` folders in `build`."""
    return {
        logical_id: [build / logical_id, *(build / layer / "python" for layer in info.layers)]
        for logical_id, info in functions(template).items()
    }


def native_distributions(folders: Iterable[Path]) -> list[tuple[str, str]]:
    """(name, version) of each distribution installed in these folders whose files include a shared
    object (from its RECORD), sorted."""
    found = set()
    for folder in folders:
        for info in sorted(folder.glob("*.dist-info")):
            dist = importlib.metadata.Distribution.at(info)
            if any(".so" in Path(str(f)).suffixes for f in dist.files or ()):
                found.add((dist.metadata["Name"], dist.version))
    return sorted(found)


def host_natives(dists: Iterable[tuple[str, str]], root: Path = HOST_NATIVES) -> list[Path]:
    """A folder per distribution with its build for this interpreter and machine, installed once."""
    machine = f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}"
    folders = []
    for name, version in dists:
        target = root / machine / f"{name.lower()}-{version}"
        if not (target / ".installed").exists():
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--only-binary=:all:", "--target", str(partial), f"{name}=={version}",
                ],
                check=True,
            )  # fmt: skip
            (partial / ".installed").touch()
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        folders.append(target)
    return folders


def artifact_modules(artifact: Path) -> list[str]:
    """Top-level modules of the distributions installed in a function's own artifact, sorted."""
    names = set()
    for info in artifact.glob("*.dist-info"):
        top_level = info / "top_level.txt"
        if top_level.exists():
            names.update(line.strip() for line in top_level.read_text().splitlines() if line.strip())
    return sorted(names)


def import_handlers(
    template: dict,
    build: Path,
    first_on_path: Callable[[list[Path]], list[Path]] = lambda folders: [],
) -> list[str]:
    """Imports each function's handler from `build`, in parallel isolated interpreters.

    `first_on_path(folders)`: what goes before a function's artifact and layer folders."""
    runs = {}
    for logical_id, folders in artifact_paths(template, build).items():
        info = functions(template)[logical_id]
        paths = [str(p) for p in first_on_path(folders) + folders]
        module, _, attribute = info.handler.rpartition(".")
        code = (
            "import sys; sys.path[:0] = sys.argv[1:]; import importlib; "
            f"handler = getattr(importlib.import_module({module!r}), {attribute!r}); "
            "assert callable(handler); "
            f"[importlib.import_module(name) for name in {artifact_modules(folders[0])!r}]; "
            "print('ok', handler.__module__)"
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            **function_environment(template, logical_id),
        }
        # -I: no user site, no PYTHONPATH, no CWD; -S: not even this venv's site-packages.
        runs[logical_id, info.handler] = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", code, *paths],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    problems = []
    for (logical_id, handler), run in runs.items():
        stdout, stderr = run.communicate()
        status = stdout.strip() or stderr.strip().splitlines()[-1:]
        print(f"{logical_id}: {handler} -> {status}")
        if run.returncode != 0:
            problems.append(f"{logical_id}: {stderr.strip()[-2000:]}")
    return problems


def main() -> int:
    if not BUILD.exists():
        print("run `sam build` first", file=sys.stderr)
        return 2
    template = load_template()
    problems = check_native_extensions(BUILD) + check_bytecode(BUILD)
    # On another machine, each function's native distributions built for this one go first on its path.
    host = platform.machine() not in ("aarch64", "arm64")
    try:
        problems += import_handlers(
            template, BUILD, lambda folders: host_natives(native_distributions(folders)) if host else []
        )
    except subprocess.CalledProcessError as error:
        print(
            f"FAIL no build for this machine of the artifact's native distributions: {error}", file=sys.stderr
        )
        return 1
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
