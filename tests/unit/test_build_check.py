"""The packaging gate itself must be able to fail."""

import build_check

from local_stack.template import load_template


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
