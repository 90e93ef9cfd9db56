"""The documentation runs: every code block of ``docs/`` is executed and its output checked.

The conventions a page follows (also told to writers in ``docs/contributing-docs.md``):

- A ````` ```python ````` block runs. The python blocks of one page run in order, in one shared
  namespace: a real module registered in ``sys.modules``, so dataclasses and pickling work.
- A ````` ```text ````` block that directly follows a python block (only blank lines between)
  is that block's expected stdout. A python block with no such block must print nothing.
- A ````` ```console ````` block is a shell session: each ``$ command`` line runs in ``bash``
  (the venv's ``flowrun`` and ``python`` first on ``PATH``), and the lines after it, up to the
  next ``$``, are its expected output (stdout and stderr together). ``$ echo $?`` checks the
  exit code of the command before it; a command not followed by one must exit 0.
  ``<RUN_ID>`` in a command stands for the newest run of the page's state database.
- A block with ``title="some/file.py"`` (python, ini, ...) is a file, not a snippet: it is
  written at that path in the page's working directory, for the console blocks after it.
- Expected output matches exactly, line by line (trailing spaces ignored), except that
  ``...`` inside a line matches any text within that line and a line that is only ``...``
  matches any number of lines (none included): for run ids, timings and paths.
- ``<!-- skip: reason -->`` on the line before a block leaves it out (shown as a skip);
  ``<!-- needs: module -->`` skips it unless the module is installed. A python block that
  imports (at its top level) a package that is not installed (an extra) is skipped too.

Each page runs in its own working directory, a temporary directory holding a copy of
``examples/``, so ``flowrun run examples/daily_etl.py`` works as it does in a fresh checkout
and everything it writes (``.flowrun/``) stays out of the repository. Each block is its own
test, ``page.md:LINE``; the blocks before it on its page run first (once per process), and a
block after a failed one is skipped, naming the block that failed.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"
COMMAND_TIMEOUT_S = 180

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
SKIP = re.compile(r"<!--\s*(?P<kind>skip|needs):\s*(?P<reason>.+?)\s*-->\s*\Z")
TITLE = re.compile(r'\btitle="(?P<title>[^"]+)"')


# -- parsing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One fenced block of a page; ``line`` is the line of its opening fence (from 1)."""

    page: str
    line: int
    lang: str
    info: str
    body: str
    skip: str | None = None  # <!-- skip: reason -->
    needs: tuple[str, ...] = ()  # <!-- needs: module, module -->
    expected: str | None = None  # a python block's output block, if one follows it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def file(self) -> str | None:
        """The path a block with ``title="path"`` is written to (a file, not a snippet)."""
        match = TITLE.search(self.info)
        return match["title"] if match and self.lang != "console" else None

    @property
    def runs(self) -> bool:
        return self.lang in ("python", "console") or self.file is not None


def parse_page(path: Path) -> list[Block]:
    """The blocks of one page, in order; output blocks are attached to their python block."""
    text = path.read_text(encoding="utf-8")
    page = path.relative_to(DOCS).as_posix()
    found: list[Block] = []
    previous_end = 0
    for match in FENCE.finditer(text):
        gap = text[previous_end : match.start()]
        previous_end = match.end()
        info = match["info"].strip()
        lang = info.split(" ", 1)[0] if info else ""
        line = text.count("\n", 0, match.start()) + 1
        last = found[-1] if found else None
        if (
            lang == "text"
            and not TITLE.search(info)
            and last is not None
            and last.lang == "python"
            and last.file is None
            and last.expected is None
            and not gap.strip()
        ):
            found[-1] = Block(**{**last.__dict__, "expected": match["body"]})
            continue
        marker = SKIP.search(gap.rstrip())
        skip = marker["reason"] if marker and marker["kind"] == "skip" else None
        needs = marker["reason"] if marker and marker["kind"] == "needs" else ""
        modules = tuple(n.strip() for n in needs.split(",") if n.strip())
        found.append(Block(page, line, lang, info, match["body"], skip, modules))
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def all_blocks() -> list[Block]:
    return [block for path in pages() for block in parse_page(path)]


RUNNABLE = [block for block in all_blocks() if block.runs]


# -- output matching -------------------------------------------------------------------------
def output_pattern(expected: str) -> re.Pattern[str]:
    """``expected`` as a regex: ``...`` in a line matches within the line, a line of only
    ``...`` matches any number of whole lines."""
    parts: list[str] = []
    for line in expected.rstrip("\n").split("\n"):
        text = line.rstrip()
        if text == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in text.split("...")) + r"\n")
    return re.compile("".join(parts))


def normalize(output: str) -> str:
    lines = [line.rstrip() for line in output.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n" if any(lines) else ""


def matches(expected: str, actual: str) -> bool:
    actual = normalize(actual)
    if not expected.strip():
        return actual == ""
    return output_pattern(expected).fullmatch(actual) is not None


def mismatch(what: str, expected: str, actual: str) -> str:
    return f"{what}: the output differs from the page.\n--- page\n{expected}--- actual\n{actual}"


# -- running ---------------------------------------------------------------------------------
def _missing_imports(code: str) -> list[str]:
    """Top-level packages the block imports (at its top level) that are not installed."""
    names: set[str] = set()
    for node in ast.parse(code).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


@dataclass
class Console:
    """One ``$ command`` of a console block, with what the page shows after it."""

    line: int
    command: str
    expected: str
    exit_code: int = 0


def parse_console(block: Block) -> list[Console]:
    commands: list[Console] = []
    for offset, text in enumerate(block.body.splitlines(), start=block.line + 1):
        if text.startswith("$ "):
            command = text[2:].strip()
            if command == "echo $?" and not commands:
                raise ValueError(f"{block.id}: 'echo $?' before any command")
            commands.append(Console(offset, command, ""))
        elif commands:
            commands[-1].expected += text + "\n"
        elif text.strip():
            raise ValueError(f"{block.id}: output before the first '$ ' command: {text!r}")
    for before, echo in itertools.pairwise(commands):
        if echo.command == "echo $?":
            before.exit_code = int(echo.expected.strip())
    return [c for c in commands if c.command != "echo $?"]


def command_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWRUN_", "PYTEST_", "POLARS_"))
        # pytest prints whole failure messages in its summary when it sees a CI
        and k not in {"COLUMNS", "CI", "BUILD_NUMBER"}
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as on a terminal
    env["COLUMNS"] = "80"  # argparse wraps --help at this width
    env["POLARS_ROWS"] = "20000"
    return env


def newest_run(workdir: Path) -> str:
    """``<RUN_ID>``: the newest run in the page's ``.flowrun/flowrun.sqlite``."""
    from flowrun import PickleSerializer, SqliteStateStore

    database = workdir / ".flowrun" / "flowrun.sqlite"
    if not database.exists():
        raise AssertionError(f"<RUN_ID>: no database at {database}")
    with SqliteStateStore(database, serializer=PickleSerializer()) as store:  # reads JSON too
        runs = store.list_runs(None, None, 1)
    if not runs:
        raise AssertionError(f"<RUN_ID>: no run in {database}")
    return runs[0].run_id


@dataclass(frozen=True)
class Outcome:
    """What running a block gave: ``ok``, ``skip`` (with the reason) or ``fail``."""

    kind: str
    reason: str = ""
    error: BaseException | None = None


@dataclass
class PageRun:
    """The blocks of one page run so far, in one namespace and one working directory."""

    page: str
    workdir: Path
    module: types.ModuleType
    done: dict[int, Outcome] = field(default_factory=dict)  # by line

    def outcome_of(self, target: Block) -> Outcome:
        """Run the page's blocks up to ``target`` (those not run yet), then ``target``."""
        for block in parse_page(DOCS / self.page):
            if not block.runs:
                continue
            outcome = self.done.get(block.line)
            if outcome is None:
                outcome = self.done[block.line] = self._attempt(block)
            if block.line == target.line:
                return outcome
            if outcome.kind == "fail":
                return Outcome("skip", f"an earlier block of the page failed: {block.id}")
        raise AssertionError(f"{target.id}: no such block")

    def _attempt(self, block: Block) -> Outcome:
        try:
            with contextlib.chdir(self.workdir):
                self._run(block)
        except pytest.skip.Exception as skipped:
            return Outcome("skip", str(skipped.msg))
        except Exception as exc:
            return Outcome("fail", error=exc)
        return Outcome("ok")

    def _run(self, block: Block) -> None:
        if block.skip is not None:
            pytest.skip(block.skip)
        missing = [n for n in block.needs if importlib.util.find_spec(n) is None]
        if missing:
            pytest.skip(f"needs {', '.join(missing)} (install the matching extra)")
        if block.lang == "console":
            self._run_console(block)
        elif block.file is not None:
            path = self.workdir / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body, encoding="utf-8")
        else:
            self._run_python(block)

    def _run_python(self, block: Block) -> None:
        missing = _missing_imports(block.body)
        if missing:
            pytest.skip(f"needs {', '.join(missing)} (install the matching extra)")
        # Padded, so tracebacks give the line of the page.
        code = compile("\n" * block.line + block.body, str(DOCS / block.page), "exec")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, self.module.__dict__)
        expected = block.expected or ""
        if not matches(expected, out.getvalue()):
            raise AssertionError(mismatch(block.id, expected, normalize(out.getvalue())))

    def _run_console(self, block: Block) -> None:
        env = command_env()
        for command in parse_console(block):
            line = command.command
            if "<RUN_ID>" in line:
                line = line.replace("<RUN_ID>", newest_run(self.workdir))
            proc = subprocess.run(
                ["bash", "-c", line],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
            where = f"{block.page}:{command.line}: $ {command.command}"
            if not matches(command.expected, proc.stdout):
                raise AssertionError(mismatch(where, command.expected, normalize(proc.stdout)))
            if proc.returncode != command.exit_code:
                raise AssertionError(
                    f"{where}: exit code {proc.returncode}, the page shows "
                    f"{command.exit_code}\n{proc.stdout}"
                )


_RUNS: dict[str, PageRun] = {}


def page_run(page: str, tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    """The page's run in this process, made on first use."""
    run = _RUNS.get(page)
    if run is None:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W+", "_", page))
        shutil.copytree(
            ROOT / "examples",
            workdir / "examples",
            ignore=shutil.ignore_patterns("__pycache__", ".flowrun", ".pytest_cache"),
        )
        name = "docs_" + re.sub(r"\W+", "_", page.removesuffix(".md"))
        module = types.ModuleType(name)
        module.__file__ = str(DOCS / page)
        sys.modules[name] = module  # for the life of the process: later blocks pickle by it
        run = _RUNS[page] = PageRun(page, workdir, module)
    return run


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_docs_block(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    outcome = page_run(block.page, tmp_path_factory).outcome_of(block)
    if outcome.kind == "skip":
        pytest.skip(outcome.reason)
    if outcome.error is not None:
        raise outcome.error


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb\n", "a\nb\n", True),
        ("a\nb\n", "a\nc\n", False),
        ("run ... took ...s\n", "run 3f2a took 0.01s\n", True),
        ("a ... c\n", "a b\nc\n", False),  # ... in a line stays in the line
        ("a\n...\nb\n", "a\nb\n", True),  # a line of ... matches no line
        ("a\n...\nb\n", "a\nx\ny\nb\n", True),  # ... or several
        ("a\n", "a  \n\n", True),  # trailing spaces and blank lines do not count
        ("", "", True),
        ("", "surprise\n", False),  # no output block: nothing may be printed
        ("a\n", "a\nb\n", False),
    ],
)
def test_output_matching(expected: str, actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_console_blocks_parse() -> None:
    body = "$ flowrun run x.py\nout\n$ echo $?\n1\n$ flowrun runs\n"
    commands = parse_console(Block("p.md", 3, "console", "console", body))
    assert [(c.line, c.command, c.expected, c.exit_code) for c in commands] == [
        (4, "flowrun run x.py", "out\n", 1),
        (8, "flowrun runs", "", 0),
    ]


# -- the pages as a whole --------------------------------------------------------------------
def test_every_code_block_is_collected() -> None:
    """A fence the collector does not see (indented: in a list, an admonition) would be
    shown and never run."""
    for path in pages():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"\s+```\s*(python|console|text)", line):
                pytest.fail(f"{path.relative_to(DOCS)}:{number}: an indented code fence")


def test_docs_keep_every_snippet_of_the_old_readme() -> None:
    """The README's 26 python blocks moved here; none of them may get lost."""
    blocks = all_blocks()
    snippets = [b for b in blocks if b.lang == "python" and b.file is None and b.skip is None]
    consoles = [b for b in blocks if b.lang == "console"]
    assert len(snippets) >= 26
    assert len([b for b in consoles if b.page == "cli.md"]) >= 5


def test_every_page_is_in_the_nav() -> None:
    nav = set(re.findall(r"^\s*-\s+(?:[^:\n]+:\s+)?([\w/.-]+\.md)\s*$", _mkdocs(), re.MULTILINE))
    on_disk = {path.relative_to(DOCS).as_posix() for path in pages()}
    assert nav == on_disk


def test_the_docs_extra_builds_the_site() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    docs_extra = re.search(r"^docs = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert docs_extra is not None, "pyproject.toml has no 'docs' extra"
    assert "mkdocs-material" in docs_extra[1]
    assert "mkdocstrings[python]" in docs_extra[1]
    assert "- mkdocstrings:" in _mkdocs()
    assert "name: material" in _mkdocs()


def test_architecture_names_every_module() -> None:
    """The layout of docs/architecture.md is the layout of the code."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    for package in ("flowrun", "pytest_flowrun"):
        for path in sorted((ROOT / package).rglob("*.py")):
            where = path.relative_to(ROOT)
            assert f"`{path.name}`" in text, f"docs/architecture.md: add a row for {where}"
    modules = {p.name for pkg in ("flowrun", "pytest_flowrun") for p in (ROOT / pkg).rglob("*.py")}
    unknown = named - modules - {"conftest.py"}
    assert not unknown, f"docs/architecture.md names modules that do not exist: {unknown}"


def _mkdocs() -> str:
    return (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


# -- the API reference -----------------------------------------------------------------------
DIRECTIVE = re.compile(r"^::: (?P<path>[\w.]+)[ \t]*\n(?P<options>(?:[ \t]+\S.*\n)*)", re.MULTILINE)

# Every API the original product description (the seed) names, by the path it imports from.
SEED_API = [
    "flowrun.build_default_engine",
    "flowrun.Engine",
    "flowrun.Engine.task",
    "flowrun.Engine.task_template",
    "flowrun.Engine.dag",
    "flowrun.Engine.validate",
    "flowrun.Engine.list_dags",
    "flowrun.Engine.list_tasks",
    "flowrun.Engine.display_dag",
    "flowrun.Engine.run_once",
    "flowrun.Engine.run_subgraph",
    "flowrun.Engine.resume",
    "flowrun.Engine.get_run_report",
    "flowrun.Engine.close",
    "flowrun.DagScope",
    "flowrun.DagScope.task",
    "flowrun.DagScope.task_template",
    "flowrun.DagScope.run_once",
    "flowrun.DagScope.run_subgraph",
    "flowrun.DagScope.validate",
    "flowrun.DagScope.display",
    "flowrun.DagScope.list_tasks",
    "flowrun.SchedulerConfig",
    "flowrun.RunContext",
    "flowrun.task",
    "flowrun.task_template",
    "flowrun.TaskRegistry",
    "flowrun.TaskRegistry.activate",
    "flowrun.TaskRegistry.deactivate",
    "flowrun.TaskTemplate",
    "flowrun.TaskTemplate.bind",
    "flowrun.TaskSpec",
    "flowrun.UnknownDagError",
    "flowrun.MissingDependencyError",
    "flowrun.CrossDagDependencyError",
    "flowrun.CycleError",
    "flowrun.RunHook",
    "flowrun.RunHook.on_dag_start",
    "flowrun.RunHook.on_dag_end",
    "flowrun.RunHook.on_task_start",
    "flowrun.RunHook.on_task_success",
    "flowrun.RunHook.on_task_failure",
    "flowrun.RunHook.on_task_retry",
    "flowrun.RunHook.on_task_skip",
    "flowrun.fn_hook",
    "flowrun.DagStartEvent",
    "flowrun.DagEndEvent",
    "flowrun.TaskStartEvent",
    "flowrun.TaskSuccessEvent",
    "flowrun.TaskFailureEvent",
    "flowrun.TaskRetryEvent",
    "flowrun.TaskSkipEvent",
    "flowrun.StateStore",
    "flowrun.InMemoryStateStore",
    "flowrun.StateStoreProtocol",
    "flowrun.SqliteStateStore",
    "flowrun.SqliteStateStore.recover",
    "flowrun.JsonSerializer",
    "flowrun.PickleSerializer",
    "flowrun.ResultSerializer",
    "flowrun.ResultSerializer.serialize",
    "flowrun.ResultSerializer.deserialize",
]
# The plugin's public surface that is not a Python object: (what, how the reference writes it).
PLUGIN_OPTIONS = ["--flowrun", "--flowrun-run"]
PLUGIN_INI = ["flowrun_files", "flowrun_run"]
PLUGIN_MARKERS = ["flowrun", "flowrun_real_time"]
PUBLIC_MODULES = [
    "flowrun",
    "flowrun.state",
    "flowrun.testing",
    "flowrun.executors",
    "flowrun.otel",
]


def reference_entries() -> dict[str, str]:
    """``::: path`` of every reference page, with the options written under it."""
    entries: dict[str, str] = {}
    for path in sorted(REFERENCE.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in DIRECTIVE.finditer(text):
            entries[match["path"]] = match["options"]
    return entries


def resolve(path: str) -> object:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


def _members(entry: str, options: str) -> list[str]:
    """The names a module entry renders: its ``members:`` list, or ``__all__`` with
    ``filters: public``; none otherwise (a module entry must say which)."""
    listed = re.search(r"members:\s*\[(.*?)\]", options)
    if listed:
        return [name.strip() for name in listed[1].split(",")]
    if "filters: public" in options:
        return list(getattr(resolve(entry), "__all__", []))
    return []


def covering_entry(name: str, entries: dict[str, str]) -> str | None:
    """The reference entry that renders ``name``: itself, the class it is a public member of,
    or a module entry that lists it (the same object, re-exported)."""
    target = resolve(name)
    for entry, options in entries.items():
        if entry == name or (resolve(entry) is target and not isinstance(target, str)):
            return entry  # the entry itself, or the same object under its other public path
        obj = resolve(entry)
        rest = name.removeprefix(entry + ".")
        public = not any(part.startswith("_") for part in rest.split("."))
        if rest != name and public and not isinstance(obj, types.ModuleType):
            return entry  # a class entry renders its public members
        if isinstance(obj, types.ModuleType):
            short = name.rsplit(".", 1)[-1]
            if short in _members(entry, options) and getattr(obj, short, None) is target:
                return entry
    return None


def test_every_reference_entry_imports() -> None:
    entries = reference_entries()
    assert len(entries) >= 40
    for entry in entries:
        resolve(entry)  # raises if the reference names something that does not exist


@pytest.mark.parametrize("name", SEED_API)
def test_the_reference_covers_the_seed_api(name: str) -> None:
    resolve(name)
    assert covering_entry(name, reference_entries()), f"docs/reference/ has no entry for {name}"


def _public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{n}" for n in module.__all__ if not n.startswith("__")]
    fixtures = importlib.import_module("pytest_flowrun.fixtures")
    names += [f"pytest_flowrun.fixtures.{n}" for n in fixtures.__all__]
    names.append("pytest_flowrun.hookspecs.pytest_flowrun_context")
    return names


def test_the_reference_covers_every_public_name() -> None:
    entries = reference_entries()
    missing = [name for name in _public_names() if covering_entry(name, entries) is None]
    assert not missing, f"add these to a page of docs/reference/: {missing}"


def test_the_seed_signatures_hold() -> None:
    """The parameters the seed spells out are there, under the names it gives."""
    import inspect

    import flowrun

    engine = inspect.signature(flowrun.build_default_engine).parameters
    for param in ("executor", "max_workers", "max_parallel", "logger", "hooks", "state_store"):
        assert param in engine
    store = inspect.signature(flowrun.SqliteStateStore).parameters
    for param in ("db_path", "serializer", "cache_ttl_s", "recover"):
        assert param in store
    resume = inspect.signature(flowrun.Engine.resume).parameters
    assert list(resume)[1:] == ["run_id", "from_tasks", "context"]
    assert hasattr(flowrun.Engine, "__aenter__")  # async with engine:
    assert hasattr(flowrun.Engine, "__aexit__")


def test_the_reference_covers_the_plugin(pytestconfig: pytest.Config) -> None:
    text = (REFERENCE / "pytest-plugin.md").read_text(encoding="utf-8")
    for option in PLUGIN_OPTIONS:
        assert f"`{option}`" in text
        pytestconfig.getoption(option)  # registered, or ValueError
    for key in PLUGIN_INI:
        assert f"`{key}`" in text
        pytestconfig.getini(key)  # registered, or ValueError
    markers = " ".join(pytestconfig.getini("markers"))
    for marker in PLUGIN_MARKERS:
        assert f"@pytest.mark.{marker}" in text
        assert re.search(rf"(^| ){marker}[(:]", markers), f"marker {marker} is not registered"


def test_the_api_table_names_every_export() -> None:
    import flowrun

    text = (REFERENCE / "index.md").read_text(encoding="utf-8")
    table = text.split("## Public API at a glance", 1)[1]
    missing = [n for n in flowrun.__all__ if n != "__version__" and f"`{n}`" not in table]
    assert not missing, f"docs/reference/index.md, 'Public API at a glance', lacks {missing}"
