"""What ``pip install ssehub`` and its extras give a user, and the ``ssehub`` command without them.

The missing-extra tests run ``ssehub`` in a virtual environment of their own that has ssehub's
source on its path but none of its extras (or only some), as after a plain
``pip install ssehub``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata, util
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _extra_requirements(extra: str) -> set[str]:
    names = set()
    for text in metadata.requires("ssehub") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            names.add(requirement.name.lower())
    return names


def _bare_venv(tmp_path: Path, modules: tuple[str, ...] = ()) -> Path:
    """A venv that sees ssehub's source and only ``modules`` of this environment's packages."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "ssehub-src.pth").write_text(f"{ROOT / 'src'}\n")
    for name in modules:
        spec = util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations is not None
        (site / name).symlink_to(next(iter(spec.submodule_search_locations)))
    return venv / "bin" / "python"


def _run_entry_point(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``ssehub`` console script's function, as pyproject.toml names it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["ssehub"].partition(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}({list(args)!r}))"
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=30, cwd="/"
    )


@pytest.mark.slow
def test_serve_without_the_server_extra_prints_the_install_line(tmp_path: Path) -> None:
    python = _bare_venv(tmp_path)
    done = _run_entry_point(python, "serve", "--port", "0")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'ssehub[server]'" in lines[0]
    # python -m ssehub says the same.
    module = subprocess.run(
        [str(python), "-m", "ssehub", "serve"], capture_output=True, text=True, timeout=30
    )
    assert (module.returncode, module.stderr) == (2, done.stderr)


@pytest.mark.slow
def test_http_uvicorn_without_uvicorn_names_its_extra(tmp_path: Path) -> None:
    python = _bare_venv(tmp_path, ("httptools", "prometheus_client", "uvloop"))
    done = _run_entry_point(python, "serve", "--port", "0", "--http", "uvicorn")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "ssehub serve: error: --http uvicorn needs uvicorn, which is not installed: "
        "pip install 'ssehub[uvicorn]'"
    ]


def test_the_server_extra_holds_what_the_native_server_needs_and_no_more() -> None:
    # PyJWT: the standalone hub verifies JWTs (ssehub.authz).
    assert _extra_requirements("server") == {"httptools", "uvloop", "prometheus-client", "pyjwt"}
    assert _extra_requirements("uvicorn") == {"uvicorn"}


def test_the_jwt_extra_holds_pyjwt_with_its_crypto_extra() -> None:
    assert _extra_requirements("jwt") == {"pyjwt"}
    for text in metadata.requires("ssehub") or []:
        requirement = Requirement(text)
        if requirement.name.lower() == "pyjwt":
            assert requirement.extras == {"crypto"}


def test_no_development_tool_is_published_as_an_extra() -> None:
    extras = set(metadata.metadata("ssehub").get_all("Provides-Extra") or [])
    assert "dev" not in extras
    published = set().union(*(_extra_requirements(extra) for extra in extras))
    tools = {"pytest", "mypy", "ruff", "mutmut", "hypothesis", "playwright", "coverage"}
    assert not published & tools


def test_the_license_is_mit_and_ships_with_the_package() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert metadata.metadata("ssehub")["License-Expression"] == "MIT"
