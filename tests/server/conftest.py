"""Fixtures that run ``python -m ssehub serve`` as a real subprocess on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.hub_process import HubFactory, HubProcess


@pytest.fixture
def start_hub(tmp_path: Path) -> Iterator[HubFactory]:
    """Start ``ssehub serve`` with extra arguments (and env); every one is stopped at the end."""
    started: list[HubProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> HubProcess:
        hub = HubProcess(list(args), tmp_path, env)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        hub.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub shared by a module's tests (each test uses channels of its own): a CORS origin
    and a small body limit, so the limit is cheap to cross."""
    process = HubProcess(
        ["--cors-origin", "http://allowed.example", "--max-body", "4096"],
        tmp_path_factory.mktemp("hub"),
    )
    yield process
    status = process.stop()
    assert status == 0, process.log()
