"""Money as nbpipe says it: the one formatter for text and the one for JSON. Standard library
only, so every layer (and the no-op fast path) may use it. Sums stay exact Decimals until here."""

from __future__ import annotations

from decimal import Decimal


def fmt_usd(amount: Decimal) -> str:
    """Dollars with at least two decimals and no trailing noise: 0.37, 0.125, 0.5."""
    text = f"{amount:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


def usd(amount: Decimal) -> float:
    """A JSON-friendly dollar figure (Decimal sums stay exact until here)."""
    return float(round(amount, 6))
