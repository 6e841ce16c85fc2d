"""The budget of a build: each render's price is reserved before its request is sent."""

from __future__ import annotations

from decimal import Decimal

from nbpipe.catalog import Catalog
from nbpipe.plan.frame import Frame


class Budget:
    """Reserves each render's price before it is sent; spend never passes the cap.

    The cap is measured in real prices: a frame reserves at least its model's list price
    (`list_prices`: built-in or refreshed, whichever is higher), whatever the manifest's
    `pricing:` says, since the manifest may come from a pull request. Only the person running
    the build can say otherwise (`trust=True`, `--trust-manifest-prices`). A manifest may raise
    prices; it never lowers the measure.
    """

    cap: Decimal | None
    list_prices: Catalog | None
    trust: bool
    reserved: Decimal
    refused: list[str]  # frames the cap kept from rendering

    def __init__(self, cap: Decimal | None, list_prices: Catalog | None = None,
                 trust: bool = False) -> None:
        self.cap = cap
        self.list_prices = list_prices
        self.trust = trust
        self.reserved = Decimal(0)
        self.refused: list[str] = []

    def measure(self, frame: Frame) -> Decimal:
        """What a render of `frame` counts against the cap."""
        spec = self.list_prices.get(frame.backend, frame.model) if self.list_prices else None
        if self.trust or spec is None:
            return frame.cost
        return max(frame.cost, spec.price(frame.params.get("resolution")))

    def reserve(self, frame: Frame) -> bool:
        price = self.measure(frame)
        if self.cap is not None and self.reserved + price > self.cap:
            self.refused.append(frame.name)
            return False
        self.reserved += price
        return True

    def owe(self, frame: Frame) -> None:
        """Count a request that may already be paid (sent, never answered) against the cap, in
        the same measure as a render; past the cap too: that money may be gone already."""
        self.reserved += self.measure(frame)
