"""The packaging gate itself must be able to fail."""

import shutil
import sysconfig
from pathlib import Path

import build_check

from local_stack.template import REPO_ROOT, load_template


def _elf(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 11 + machine.to_bytes(2, "little") + b"\0" * 40


def test_native_extensions_must_be_aarch64_for_cpython_313(tmp_path):
    (tmp_path / "ok.cpython-313-aarch64-linux-gnu.so").write_bytes(_elf(0xB7))
    (tmp_path / "abi3.abi3.so").write_bytes(_elf(0xB7))
    (tmp_path / "x86.cpython-313-x86_64-linux-gnu.so").write_bytes(_elf(0x3E))
    (tmp_path / "old.cpython-312-aarch64-linux-gnu.so").write_bytes(_elf(0xB7))

    problems = build_check.check_native_extensions(tmp_path)

    assert sorted(p.split(":")[0] for p in problems) == [
        "old.cpython-312-aarch64-linux-gnu.so",
        "x86.cpython-313-x86_64-linux-gnu.so",
    ]


def test_a_function_whose_artifact_lacks_its_code_fails_the_import_check(tmp_path):
    template = load_template()
    problems = build_check.import_handlers(template, tmp_path)
    assert len(problems) == len(build_check.functions(template))
    assert all("ModuleNotFoundError" in p for p in problems)


def test_the_import_runs_with_only_the_artifact_and_its_layers_on_the_path(tmp_path):
    # An artifact without its requirements fails, though this venv has them all; with them first
    # on the path (as this machine's native builds are), the same artifact imports.
    template = load_template()
    folders = build_check.artifact_paths(template, tmp_path)["ApiFunction"]
    shutil.copytree(REPO_ROOT / "functions" / "api", folders[0])
    shutil.copytree(REPO_ROOT / "layers" / "common", folders[1])

    (alone,) = [p for p in build_check.import_handlers(template, tmp_path) if p.startswith("ApiFunction:")]
    assert "ModuleNotFoundError" in alone

    venv = sysconfig.get_paths()["purelib"]
    with_requirements = build_check.import_handlers(template, tmp_path, lambda paths: [venv])
    assert not [p for p in with_requirements if p.startswith("ApiFunction:")]


def _dist(folder, name: str, version: str, *files: str) -> None:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
    for file in files:
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).touch()


def test_the_distributions_with_native_code_are_found_by_their_record(tmp_path):
    _dist(tmp_path / "fn", "fast", "1.0", "fast/__init__.py", "fast/_speed.cpython-313-aarch64-linux-gnu.so")
    _dist(tmp_path / "fn", "pure", "2.0", "pure/__init__.py", "pure/so.py")
    _dist(tmp_path / "layer", "bundled", "3.0", "bundled/__init__.py", "bundled.libs/libz-ab12.so.1.3")

    found = build_check.native_distributions([tmp_path / "fn", tmp_path / "layer"])

    assert found == [("bundled", "3.0"), ("fast", "1.0")]


def test_a_host_build_is_installed_once_then_reused(tmp_path, monkeypatch):
    installs = []

    def pip(args, **kwargs):
        installs.append(args[-1])
        (Path(args[args.index("--target") + 1]) / "fast").mkdir(parents=True)

    monkeypatch.setattr(build_check.subprocess, "run", pip)
    (first,) = build_check.host_natives([("Fast", "1.0")], tmp_path)
    (again,) = build_check.host_natives([("Fast", "1.0")], tmp_path)

    assert first == again
    assert (first / "fast").is_dir()
    assert installs == ["Fast==1.0"]


def test_modules_a_function_imports_only_when_needed_are_imported_too(tmp_path):
    # pi-heif is imported when a HEIF file arrives, not with the handler: an artifact whose copy of a
    # distribution cannot load fails the check, though its handler imports.
    template = load_template()
    folders = build_check.artifact_paths(template, tmp_path)["ProcessUploadFunction"]
    shutil.copytree(REPO_ROOT / "functions" / "process_upload", folders[0])
    shutil.copytree(REPO_ROOT / "layers" / "common", folders[1])
    info = folders[0] / "lazy_native-1.0.dist-info"
    info.mkdir()
    (info / "top_level.txt").write_text("lazy_native\n")
    (folders[0] / "lazy_native.py").write_text("raise ImportError('built for another machine')\n")
    assert build_check.artifact_modules(folders[0]) == ["lazy_native"]

    venv = sysconfig.get_paths()["purelib"]
    problems = build_check.import_handlers(template, tmp_path, lambda paths: [venv])
    (failed,) = [p for p in problems if p.startswith("ProcessUploadFunction:")]
    assert "built for another machine" in failed
    (info / "top_level.txt").write_text("")
    problems = build_check.import_handlers(template, tmp_path, lambda paths: [venv])
    assert not [p for p in problems if p.startswith("ProcessUploadFunction:")]


def test_every_module_must_ship_unchecked_hash_bytecode(tmp_path):
    import compileall
    import py_compile

    for name in ("shipped", "timestamped", "missing"):
        (tmp_path / "pkg").mkdir(exist_ok=True)
        (tmp_path / "pkg" / f"{name}.py").write_text("x = 1\n")
    unchecked = py_compile.PycInvalidationMode.UNCHECKED_HASH
    py_compile.compile(str(tmp_path / "pkg" / "shipped.py"), invalidation_mode=unchecked)
    py_compile.compile(str(tmp_path / "pkg" / "timestamped.py"))

    problems = build_check.check_bytecode(tmp_path)

    assert sorted(p.split(":")[0] for p in problems) == ["pkg/missing.py", "pkg/timestamped.py"]
    compileall.compile_dir(tmp_path, quiet=1, invalidation_mode=unchecked, force=True)
    assert build_check.check_bytecode(tmp_path) == []
