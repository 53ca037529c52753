"""Integer helpers used across floors (one definition each)."""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative integers: blocks of `b` needed to hold `a` tokens."""
    return -(-a // b)
