"""Numbers: percentiles, seconds as text, plain-text tables."""

from __future__ import annotations

import math
from collections.abc import Iterable


def pct(values: Iterable[float], q: float) -> float:
    s = sorted(v for v in values if v is not None and not math.isnan(v))
    if not s:
        return math.nan
    k = (len(s) - 1) * q
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def sec(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Plain text, aligned: the first ``left`` columns to the left, the rest to the right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
