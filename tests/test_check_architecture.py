"""scripts/check_architecture.py: it passes on src/ssehub and fails on each kind of violation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_architecture.py"


def run(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, timeout=60
    )


def package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "ssehub"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_real_source_tree_passes() -> None:
    result = run(ROOT / "src" / "ssehub")
    assert result.returncode == 0, result.stdout
    assert "no cycle" in result.stdout


def test_an_import_under_type_checking_that_closes_a_cycle_fails(tmp_path: Path) -> None:
    root = package(
        tmp_path,
        {
            "backends/__init__.py": "",
            "backends/base.py": "from ssehub.hub import Hub\n",
            "hub.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ssehub.backends.base import Backend
                class Hub: ...
            """,
        },
    )
    result = run(root)
    assert result.returncode == 1
    assert "import cycle: ssehub.backends.base -> ssehub.hub -> ssehub.backends.base" in (
        result.stdout
    )


def test_an_import_inside_a_function_pointing_up_the_layers_fails(tmp_path: Path) -> None:
    root = package(
        tmp_path,
        {
            "asgi.py": "class ASGIApp: ...\n",
            "hub.py": """\
                class Hub:
                    def asgi(self):
                        from ssehub.asgi import ASGIApp
                        return ASGIApp()
            """,
        },
    )
    result = run(root)
    assert result.returncode == 1
    assert "ssehub.hub: imports ssehub.asgi, a higher layer" in result.stdout


def test_reaching_into_another_modules_private_attribute_fails(tmp_path: Path) -> None:
    root = package(
        tmp_path,
        {
            "subscription.py": """\
                class Subscription:
                    def __init__(self):
                        self._held = []
                    def _take(self):
                        return None
            """,
            "hub.py": """\
                class Hub:
                    def __init__(self):
                        self._channels = {}
                    def go(self, sub):
                        sub._held = None
                        return sub._take(), self._channels
            """,
        },
    )
    result = run(root)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "private to" in line]
    assert len(lines) == 2, result.stdout
    assert any("uses ._held, private to ssehub.subscription" in line for line in lines)
    assert any("uses ._take, private to ssehub.subscription" in line for line in lines)


def test_importing_a_private_name_from_another_module_fails(tmp_path: Path) -> None:
    root = package(
        tmp_path,
        {
            "wire.py": "_ESCAPES = {}\n",
            "hub.py": "from ssehub.wire import _ESCAPES\n",
        },
    )
    result = run(root)
    assert result.returncode == 1
    assert "imports _ESCAPES, private to ssehub.wire" in result.stdout


def test_a_module_without_a_layer_fails(tmp_path: Path) -> None:
    root = package(tmp_path, {"helpers.py": "X = 1\n"})
    result = run(root)
    assert result.returncode == 1
    assert "ssehub.helpers: not placed in a layer" in result.stdout
