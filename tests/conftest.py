"""Shared fixtures: the global random seed, the shared data folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _seeds() -> list[int]:
    """``CLUSTERLENS_TESTS_SEED``: unset -> [0]; ``all`` -> 0..99; ``3-7``; ``5``."""
    spec = os.environ.get("CLUSTERLENS_TESTS_SEED", "0").strip()
    if spec == "all":
        return list(range(100))
    if "-" in spec:
        lo, hi = (int(x) for x in spec.split("-"))
        return list(range(lo, hi + 1))
    return [int(spec)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "global_random_seed" in metafunc.fixturenames:
        metafunc.parametrize("global_random_seed", _seeds())


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep test output clean; tests of the bar itself unset the variable."""
    monkeypatch.setenv("CLUSTERLENS_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Exported ONNX models go to a per-session folder, never to ~/.cache.

    Session-wide and set before any other fixture, so that the worker
    processes of module-scoped Dask clusters inherit it too.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield
