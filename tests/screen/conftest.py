"""The `kiosk` fixture: a screen built by `kiosk serve`'s own build(), with its app's lifespan running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.screen.kiosk import Kiosk, kiosk_screen


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[Kiosk]:
    with kiosk_screen(tmp_path, None) as built:
        yield built
