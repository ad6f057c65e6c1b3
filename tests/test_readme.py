"""Every code block of README.md runs as written, or is marked as a fragment.

The README is read section by section (``##`` and ``###`` headings), and each section's blocks
are played in order, as a reader would type them into a fresh directory:

- ``python``: written to the file the next run command names (``app.py`` for ``uvicorn app:app``,
  ``client.py`` for ``python client.py``); several blocks before one run command are
  alternatives, each run in turn. A block that no run command follows runs to completion
  (``python block.py``, exit status 0).
- ``sh``/``bash``, one command a line: ``pip install ...`` is checked, not run (the test
  environment has every extra): each run command after it must find its executable and the
  imports of its file among what that line installs (the extras' requirements, transitively).
  A run command (``ssehub serve``, ``uvicorn``, ``gunicorn``, ``waitress-serve``,
  ``hypercorn``, ``python FILE.py``) starts a real process and is probed over HTTP: an app with
  ``/rooms/`` routes gets a subscriber on ``/rooms/readme/events`` that must receive what a POST
  to ``/rooms/readme`` publishes, an app with ``/events`` must stream ``/events/...``,
  ``ssehub serve`` must answer ``/healthz``; a client (a file without ``app``) must print an
  event published to the hub it names. ``curl -N URL`` subscribes in the background; any other
  ``curl`` runs, and the full-line comments after it are its expected output (``...`` matches
  anything). Any other command fails the test: mark the block as a fragment instead.
- ``text``: the output of the section's background ``curl -N``, with ``...`` as a wildcard.
- ``html``: loaded in headless Chromium against the section's server; it must log to the
  console (each example page logs the events it receives).

A block right after a ``<!-- fragment: why -->`` line is not run. Everything listens on
127.0.0.1: the README's port 8000 is replaced with a free port (wherever the number stands,
and as the server's port option where the command names none), and a Redis URL with a test
redis-server's. A section whose clients or pages talk to a hub that it does not start itself gets a
``ssehub serve`` from the test.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests._support import free_port
from tests._support.browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
_README_PORT = re.compile(r"(?<![\d.])8000(?!\d)")
README_REDIS = "127.0.0.1:6379"
SERVERS = {"ssehub", "uvicorn", "gunicorn", "waitress-serve", "hypercorn", "python"}
_FENCE = re.compile(r"^```(\S*)\s*$")
_FRAGMENT = re.compile(r"^<!--\s*fragment\b.*-->\s*$")


@dataclass
class Block:
    """One fenced code block of the README."""

    language: str
    text: str
    line: int
    fragment: bool


@dataclass
class Section:
    """A ``##``/``###`` section and its code blocks."""

    title: str
    blocks: list[Block] = field(default_factory=list)


def read_sections(text: str) -> list[Section]:
    """The README's sections that hold code blocks, in order."""
    sections: list[Section] = [Section("(top)")]
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if line.startswith(("## ", "### ")):
            sections.append(Section(line.lstrip("#").strip()))
        elif fence:
            end = index + 1
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            before = next((x for x in reversed(lines[:index]) if x.strip()), "")
            sections[-1].blocks.append(
                Block(
                    language=fence.group(1) or "",
                    text="\n".join(lines[index + 1 : end]) + "\n",
                    line=index + 1,
                    fragment=bool(_FRAGMENT.match(before)),
                )
            )
            index = end
        index += 1
    return [section for section in sections if section.blocks]


def commands(block: Block) -> Iterator[tuple[str, list[str]]]:
    """Each command of a shell block (continuations joined) with its full-line comments after."""
    pending: list[str] = []
    current: str | None = None
    comments: list[str] = []
    for raw in block.text.split("\n"):
        line = raw.rstrip()
        if pending:
            pending.append(line.rstrip("\\").strip())
            if not line.endswith("\\"):
                current, pending = " ".join(pending), []
            continue
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            comments.append(line.lstrip()[1:].strip())
            continue
        if current is not None:
            yield current, comments
        current, comments = None, []
        if line.endswith("\\"):
            pending = [line.rstrip("\\").strip()]
        else:
            current = line
    if current is not None:
        yield current, comments


def argv_of(command: str) -> list[str]:
    """The command's arguments, without a trailing comment."""
    return shlex.split(command, comments=True)


def is_run_command(argv: list[str]) -> bool:
    """Whether the command starts a program of the reader's (not pip, not curl)."""
    return bool(argv) and argv[0] in SERVERS


def target_file(argv: list[str]) -> str | None:
    """The Python file a run command serves or runs (``app:app`` -> ``app.py``)."""
    if argv[0] == "python":
        return argv[1]
    if argv[0] == "ssehub":
        return None
    spec = next(arg for arg in reversed(argv) if ":" in arg and not arg.startswith("-"))
    return spec.split(":")[0] + ".py"


# ---------------------------------------------------------------- what an install line brings


def _requirements(name: str, extras: set[str]) -> Iterator[Requirement]:
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras | {""}
        ):
            yield requirement


def installed_by(pip_line: str) -> set[str]:
    """The distributions ``pip install ...`` brings (canonical names, dependencies included)."""
    todo = [Requirement(arg) for arg in argv_of(pip_line)[2:] if not arg.startswith("-")]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        todo.extend(_requirements(requirement.name, set(requirement.extras)))
    return {key for key in seen if "[" not in key}


def _extra_of(module: str) -> str | None:
    """The ssehub extra a documented ssehub module needs."""
    parts = module.split(".")
    if parts[:2] == ["ssehub", "client"] or parts[:2] == ["ssehub", "redis"]:
        return parts[1]
    if parts[:2] == ["ssehub", "integrations"] and len(parts) > 2:
        return parts[2].removesuffix("_sse")
    return None


def needed_by(source: str) -> set[str]:
    """The distributions a Python block imports, as distribution names."""
    distributions = metadata.packages_distributions()
    needed: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            if top == "ssehub":
                extra = _extra_of(module)
                if extra is not None:
                    needed |= {canonicalize_name(r.name) for r in _requirements("ssehub", {extra})}
                continue
            needed |= {canonicalize_name(d) for d in distributions.get(top, [top])}
    return needed


def executable_provider(name: str) -> str | None:
    """The distribution whose console script is ``name`` (None for ``python``)."""
    if name == "python":
        return None
    for entry in metadata.entry_points(group="console_scripts", name=name):
        if entry.dist is not None:
            return canonicalize_name(entry.dist.name)
    raise AssertionError(f"no installed distribution provides the command {name!r}")


# ---------------------------------------------------------------- running it


def localize(text: str, port: int, redis: str | None) -> str:
    """The README's addresses replaced with the test's."""
    text = _README_PORT.sub(str(port), text)
    if redis is not None:
        text = text.replace(README_REDIS, redis)
    return text


def server_argv(argv: list[str], port: int) -> list[str]:
    """The command with the test's port where the README relies on the server's default."""
    argv = list(argv)
    if argv[0] == "ssehub":
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(port)
        else:
            argv += ["--port", str(port)]
    elif argv[0] == "uvicorn" and "--port" not in argv:
        argv += ["--port", str(port)]
    elif argv[0] in ("gunicorn", "hypercorn") and not {"-b", "--bind"} & set(argv):
        argv += ["--bind", f"127.0.0.1:{port}"]
    elif argv[0] == "waitress-serve" and not any(a.startswith("--listen") for a in argv):
        argv.insert(-1, f"--listen=127.0.0.1:{port}")
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [str(BIN / argv[0]), *argv[1:]]


@dataclass
class Process:
    """A process the README started, with its output in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Player:
    """Plays one section's blocks in a directory of its own."""

    def __init__(self, workdir: Path, redis: str | None) -> None:
        self.workdir = workdir
        self.redis = redis
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.processes: list[Process] = []
        self.server: Process | None = None
        self.subscriber: Process | None = None
        self.pending: list[Block] = []
        self.install: str | None = None
        self.consumed = False
        self._count = 0

    def start(self, argv: list[str], *, stdout_only: bool = False) -> Process:
        self._count += 1
        log = self.workdir / f"process-{self._count}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdout=sink,
                stderr=subprocess.DEVNULL if stdout_only else subprocess.STDOUT,
                env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
            )
        process = Process(proc, log)
        self.processes.append(process)
        return process

    def wait_port(self, process: Process, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.proc.poll() is not None:
                raise AssertionError(f"the server exited:\n{process.output()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"nothing listens after {timeout} s:\n{process.output()}")

    def ensure_hub(self) -> None:
        """A hub for clients and pages of a section that starts none (``ssehub serve``)."""
        if self.server is None or self.server.proc.poll() is not None:
            self.serve(["ssehub", "serve"], None)

    def serve(self, argv: list[str], source: str | None) -> None:
        """Start a server (stopping the section's previous one) and probe it."""
        if self.server is not None:
            self.server.stop()
        argv = [localize(arg, self.port, self.redis) for arg in argv]
        self.server = self.start(server_argv(argv, self.port))
        self.wait_port(self.server)
        if source is None:  # ssehub serve
            assert httpx.get(f"{self.base}/healthz", timeout=5).status_code == 200
        elif "/rooms/" in source:
            self.probe_rooms()
        elif "/events" in source:
            with httpx.stream("GET", f"{self.base}/events/readme", timeout=10) as response:
                assert response.status_code == 200, response.read()
                assert response.headers["content-type"].startswith("text/event-stream")
        else:
            httpx.get(self.base, timeout=5)

    def probe_rooms(self) -> None:
        """What a POST to /rooms/readme publishes reaches a subscriber of /rooms/readme/events."""
        url = f"{self.base}/rooms/readme"
        with httpx.stream("GET", f"{url}/events", timeout=10) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            posted = httpx.post(url, content=b"readme-probe", timeout=5)
            assert posted.status_code in (200, 204), posted.text
            for line in response.iter_lines():  # bounded by the 10 s read timeout
                if line == "data: readme-probe":
                    break

    def run_client(self, argv: list[str]) -> None:
        """A client of the hub must print an event published on the channel it reads."""
        self.ensure_hub()
        client = self.start([sys.executable, *argv[1:]], stdout_only=True)
        for _ in range(100):  # up to 10 s
            assert client.proc.poll() is None, f"the client exited:\n{client.output()}"
            httpx.post(f"{self.base}/events/news", content=b"readme-probe", timeout=5)
            if "readme-probe" in client.output():
                break
            time.sleep(0.1)
        assert "readme-probe" in client.output(), client.output()
        client.stop()

    def run_pending_to_completion(self) -> None:
        for block in self.pending:
            path = self.workdir / "block.py"
            path.write_text(localize(block.text, self.port, self.redis))
            done = subprocess.run(
                [sys.executable, str(path)], cwd=self.workdir, capture_output=True, timeout=30
            )
            assert done.returncode == 0, f"line {block.line}: {done.stderr.decode()}"
        self.pending = []

    def run_command(self, command: str, comments: list[str]) -> None:
        argv = argv_of(command)
        if not argv:
            return
        if argv[:2] == ["pip", "install"]:
            self.install = command
        elif is_run_command(argv):
            self.run(argv)
        elif argv[0] == "curl":
            self.curl(argv, comments)
        else:
            raise AssertionError(f"unknown command in a README block: {command!r}")

    def run(self, argv: list[str]) -> None:
        target = target_file(argv)
        if target is None:  # ssehub serve: the Python blocks before it are not its
            check_install(self.install, argv, [])
            self.serve(argv, None)
            return
        sources = [localize(block.text, self.port, self.redis) for block in self.pending]
        check_install(self.install, argv, sources)
        self.consumed = True
        assert sources, f"{shlex.join(argv)} runs {target}, but no Python block comes before it"
        for source in sources:
            (self.workdir / target).write_text(source)
            if re.search(r"^(app|application) = ", source, re.MULTILINE):
                self.serve(argv, source)
            else:
                self.run_client(argv)

    def curl(self, argv: list[str], expected: list[str]) -> None:
        self.ensure_hub()
        argv = [localize(a, self.port, self.redis) for a in argv]
        if "-N" in argv:
            self.subscriber = self.start([*argv, "--silent"], stdout_only=True)
            url = next(a for a in argv if a.startswith("http"))
            path, _, query = url.removeprefix(self.base).partition("?")
            if path == "/.well-known/mercure":  # a Mercure subscriber: its topic is the channel
                path = dict(parse_qsl(query))["topic"]
            self.wait_subscribed(path)
            return
        done = subprocess.run([*argv, "--silent", "--max-time", "10"], capture_output=True)
        assert done.returncode == 0, done.stderr
        got, want = done.stdout.decode().strip(), "\n".join(expected)
        assert not expected or wildcard(want, got), f"{shlex.join(argv)} printed {got!r}"

    def wait_subscribed(self, channel: str) -> None:
        for _ in range(100):
            listed = httpx.get(f"{self.base}/channels", timeout=5).json()["channels"]
            if any(c["channel"] == channel for c in listed):
                return
            time.sleep(0.05)
        raise AssertionError(f"curl -N never subscribed to {channel}")

    def check_output(self, block: Block) -> None:
        assert self.subscriber is not None, f"line {block.line}: no curl -N before this output"
        pattern = block.text.strip()
        for _ in range(100):
            if wildcard(pattern, self.subscriber.output().strip()):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.subscriber.output()!r} does not match {pattern!r}")

    def load_page(self, block: Block) -> None:
        from playwright.sync_api import sync_playwright

        self.ensure_hub()
        page_file = self.workdir / "page.html"
        page_file.write_text(localize(block.text, self.port, self.redis))
        logged: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("console", lambda message: logged.append(message.text))
                page.goto(page_file.as_uri())
                for _ in range(150):  # up to 15 s: the example publishes every 5 s
                    if logged:
                        break
                    page.wait_for_timeout(100)
            finally:
                browser.close()
        assert logged, f"line {block.line}: the page logged nothing"

    def play(self, section: Section) -> None:
        try:
            for block in section.blocks:
                if block.fragment:
                    continue
                if block.language == "python":
                    self.pending.append(block)
                elif block.language in ("sh", "bash"):
                    self.consumed = False
                    for command, comments in commands(block):
                        self.run_command(command, comments)
                    if self.consumed:
                        self.pending = []
                elif block.language == "text":
                    self.check_output(block)
                elif block.language == "html":
                    self.load_page(block)
                else:
                    raise AssertionError(f"line {block.line}: a {block.language!r} block")
            self.run_pending_to_completion()
        finally:
            for process in reversed(self.processes):
                process.stop()


def wildcard(pattern: str, text: str) -> bool:
    """Whether ``text`` is ``pattern``, where ``...`` stands for any text."""
    regex = ".*?".join(re.escape(part) for part in pattern.split("..."))
    return re.fullmatch(regex, text, re.DOTALL) is not None


def check_install(pip_line: str | None, argv: list[str], sources: list[str]) -> None:
    """The install line before a run command brings its executable and its file's imports."""
    assert pip_line is not None, f"no `pip install` line before `{shlex.join(argv)}`"
    brought = installed_by(pip_line)
    provider = executable_provider(argv[0])
    assert provider is None or provider in brought, f"{pip_line!r} does not bring {argv[0]}"
    for source in sources:
        missing = needed_by(source) - brought
        assert not missing, f"{pip_line!r} does not bring {sorted(missing)}"


# ---------------------------------------------------------------- the tests

SECTIONS = read_sections(README.read_text())


def _marks(section: Section) -> list[pytest.MarkDecorator]:
    text = "".join(block.text for block in section.blocks if not block.fragment)
    marks = [pytest.mark.slow]
    if any(b.language == "html" and not b.fragment for b in section.blocks):
        marks.append(pytest.mark.browser)
    if "redis://" in text:
        marks.append(pytest.mark.redis)
    return marks


def _runnable(section: Section) -> bool:
    return any(not block.fragment for block in section.blocks)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "section",
    [pytest.param(s, id=s.title, marks=_marks(s)) for s in SECTIONS if _runnable(s)],
)
def test_readme_section_runs_as_written(section: Section, tmp_path: Path) -> None:
    redis_url: str | None = None
    with contextlib.ExitStack() as stack:
        if any("redis://" in block.text for block in section.blocks):
            from tests._support.redis_server import RedisServer

            redis = stack.enter_context(RedisServer())
            redis_url = redis.url.removeprefix("redis://").rsplit("/", 1)[0]
        Player(tmp_path, redis_url).play(section)


def test_every_block_is_runnable_or_marked_as_a_fragment() -> None:
    blocks = [block for section in SECTIONS for block in section.blocks]
    unknown = [
        (b.line, b.language)
        for b in blocks
        if not b.fragment and b.language not in ("python", "sh", "bash", "text", "html")
    ]
    assert not unknown, f"blocks this test cannot run (mark them as fragments): {unknown}"
    fragments = [b.line for b in blocks if b.fragment]
    assert len(fragments) <= len(blocks) // 5, f"fragments are for the exception: {fragments}"


def test_every_run_command_follows_an_install_line_that_brings_it() -> None:
    checked = 0
    for section in SECTIONS:
        install: str | None = None
        sources: list[str] = []
        for block in section.blocks:
            if block.fragment:
                continue
            if block.language == "python":
                sources.append(block.text)
                continue
            if block.language not in ("sh", "bash"):
                continue
            for command, _ in commands(block):
                argv = argv_of(command)
                if argv[:2] == ["pip", "install"]:
                    install = command
                elif is_run_command(argv):
                    check_install(install, argv, sources if target_file(argv) else [])
                    checked += 1
            if any(is_run_command(a := argv_of(c)) and target_file(a) for c, _ in commands(block)):
                sources = []
    assert checked >= 10


def test_an_install_line_without_the_extra_is_caught() -> None:
    # The check above must be able to fail: a Flask app does not run on ssehub alone.
    with pytest.raises(AssertionError, match="flask"):
        check_install("pip install ssehub gunicorn", ["gunicorn", "app:app"], ["import flask"])
    with pytest.raises(AssertionError, match="uvicorn"):
        check_install("pip install 'ssehub[fastapi]'", ["uvicorn", "app:app"], [])


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_log_level_debug_adds_uvicorns_start_and_stop_lines(tmp_path: Path) -> None:
    # The README's claim in "Auth, CORS, logs and shutdown".
    from tests.server.hub_process import HubProcess

    logs = {}
    for level in ("info", "debug"):
        hub = HubProcess(["--http", "uvicorn", "--log-level", level], tmp_path)
        assert hub.stop() == 0
        logs[level] = [line for line in hub.log().splitlines() if " uvicorn.error " in line]
    assert logs["info"] == []
    assert any("Started server process" in line for line in logs["debug"])
    assert any("Finished server process" in line for line in logs["debug"])
