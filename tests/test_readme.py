"""Every Python block of the README runs, and the quick-start example works as a script."""

from __future__ import annotations

import ast
import importlib.util
import re
import runpy
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_readme_has_python_blocks() -> None:
    assert len(_blocks()) >= 1  # the rest of the examples live in docs/ (tests/test_docs.py)


@pytest.mark.parametrize(("line", "code"), _blocks(), ids=[f"L{line}" for line, _ in _blocks()])
def test_readme_block_runs(
    line: int, code: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = _missing_imports(code)
    if missing:  # e.g. the Dask recipe without the dask extra installed
        pytest.skip(f"needs {', '.join(missing)} (install the matching extra)")
    # A real module, so dataclasses and pickling can find the block's namespace.
    module = types.ModuleType(f"readme_block_{line}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, f"README.md:{line}", "exec"), module.__dict__)


def _missing_imports(code: str) -> list[str]:
    """Top-level packages the block imports that are not installed."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_quickstart_example_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["quickstart.py"])
    runpy.run_path(str(ROOT / "examples" / "quickstart.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "load" in out
    assert out.strip().splitlines()[-1] == "SUCCESS"


def test_quick_start_commands_are_the_ci_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert 'python -m pip install -e ".[test]" && python -m pytest' in text
    assert "python -m pip install -e . && flowrun run examples/daily_etl.py" in text
