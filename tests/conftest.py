"""Shared fixtures: every test gets its own WePrompt home."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def weprompt_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point WEPROMPT_HOME at a fresh folder so no test touches the real home or the checkout."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("WEPROMPT_HOME", str(home))
    monkeypatch.delenv("WEPROMPT_RAISE_ERRORS", raising=False)
    return home


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (idle OpenMP threads spin on a busy CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
