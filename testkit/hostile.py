"""Hostile inputs more than one test throws at edge-fer."""

from __future__ import annotations

# A YAML "billion laughs": nine levels of nine aliases each, 9**9 values once expanded; a few
# hundred bytes on disk.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
