"""The budget of a build: each render's price is reserved before its request is sent."""

from __future__ import annotations

from decimal import Decimal


class Budget:
    """Reserves each render's price before it is sent; spend never passes the cap."""

    def __init__(self, cap: Decimal | None):
        self.cap = cap
        self.reserved = Decimal(0)
        self.refused: list[str] = []

    def reserve(self, frame: str, price: Decimal) -> bool:
        if self.cap is not None and self.reserved + price > self.cap:
            self.refused.append(frame)
            return False
        self.reserved += price
        return True
