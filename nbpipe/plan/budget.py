"""The budget of a build: each render's price is reserved before its request is sent."""

from __future__ import annotations

from decimal import Decimal

from nbpipe.catalog import Catalog, builtin
from nbpipe.plan.frame import Frame


class Budget:
    """Reserves each render's price before it is sent; spend never passes the cap.

    The cap is measured in real prices: a frame reserves at least its model's list price
    (`list_prices`: built-in or refreshed, whichever is higher), whatever the manifest's
    `pricing:` says, since the manifest may come from a pull request. Only the person running
    the build can say otherwise (`trust=True`, `--trust-manifest-prices`). A manifest may raise
    prices; it never lowers the measure. Where a model bills tokens on top of the image
    (Gemini: prompt, input images, thinking), a render also reserves the most those can bill,
    from the catalogue's token prices and limits.

    Lanes: a frame is measured at its lane's list price (`Frame.lane`; batch and flex are
    half the standard price on Gemini). `pricing:` overrides the standard lane only: on the
    other lanes a frame's cost is already the lane's list price. Tokens are reserved at the
    standard token prices on every lane, an upper bound where a lane bills them for less.
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
        """What a render of `frame` costs at list price on its lane, for its image (what a build
        counts as spent; `reservation` adds the tokens billed on top)."""
        spec = self.list_prices.get(frame.backend, frame.model) if self.list_prices else None
        if self.trust or spec is None:
            return frame.cost
        return max(frame.cost, spec.price_of(frame.params, frame.lane))

    def tokens(self, frame: Frame) -> Decimal:
        """The most `frame`'s request can bill in tokens on top of its image (Gemini: prompt,
        input images, thinking); 0 where a model bills per image only. No `pricing:` or trust
        waives it: a manifest cannot price tokens."""
        spec = (self.list_prices or builtin()).get(frame.backend, frame.model)
        if spec is None or spec.tokens is None:
            return Decimal(0)
        size = sum(len(part.encode("utf-8", "surrogatepass")) for part in frame.parts)
        return spec.tokens.bound(size, len(frame.inputs))

    def reservation(self, frame: Frame) -> Decimal:
        """What a render of `frame` counts against the cap: the most it can bill."""
        return self.measure(frame) + self.tokens(frame)

    def reserve(self, frame: Frame) -> bool:
        price = self.reservation(frame)
        if self.cap is not None and self.reserved + price > self.cap:
            self.refused.append(frame.name)
            return False
        self.reserved += price
        return True

    def owe(self, frame: Frame) -> None:
        """Count a request that may already be paid (sent, never answered) against the cap, in
        the same measure as a render; past the cap too: that money may be gone already."""
        self.reserved += self.reservation(frame)
