"""What the kiosk's benchmarks share for `--json`: figures as JSON can carry them."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """JSON has no NaN: a figure that could not be measured is null; floats are rounded for reading."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
