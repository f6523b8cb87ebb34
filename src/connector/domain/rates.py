"""Exchange rates: prices, the exact conversion between two assets, and the ``rate`` step.

A price is what one whole unit of an asset is worth in a common unit (any: only ratios count),
an exact fraction parsed from a decimal string. Converting ``amount`` from asset S (scale s) to
asset D (scale d):

    out = floor(amount * price_S / price_D * (1 - spread) * 10**(d - s))

computed exactly (integers and fractions, never floats), and rounded down: the connector never
pays out more than it was given, and what rounding keeps is at most one unit of D. The spread
applies to every conversion, the same asset included (as ilp-connector's one-to-one backend
does); with the default spread of 0, peers in one asset stay exactly 1:1, and no price is looked
up for them. The factor of each pair of assets is computed once per set of prices, so a packet
costs one multiplication and one division of integers.

Pure: the clock (for the age of a price) is injected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import ClassVar

from connector.domain.accounts import Asset
from connector.domain.ilp.packets import IlpErrorCode, Reject, amount_too_large_data
from connector.domain.oer import UINT64_MAX
from connector.domain.pipeline import MakesRejects, PacketRequest, StepResult

#: A price or spread has at most this many significant digits and an exponent within this range:
#: any real price fits, and the exact arithmetic stays cheap (a "1e-30000000" would not).
MAX_DIGITS = 40
MAX_EXPONENT = 40
#: An asset code: what IL-DCP tells children, and the key of a price.
ASSET_CODE = re.compile(r"[A-Za-z0-9._-]{1,16}")


def parse_decimal(text: str) -> Fraction:
    """A decimal string ("1.25", "0.0067", "3e-4") as an exact fraction, within the bounds
    above; ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 100:
        raise ValueError(f"{str(text)[:40]!r} is not a decimal number")
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    if value and (
        len(value.as_tuple().digits) > MAX_DIGITS or abs(value.adjusted()) > MAX_EXPONENT
    ):
        raise ValueError(f"{text!r} has more than {MAX_DIGITS} digits or an exponent beyond 40")
    return Fraction(value)


def parse_price(text: str) -> Fraction:
    """A price from a decimal string: exact, positive, bounded (``parse_decimal``)."""
    value = parse_decimal(text)
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive price")
    return value


def valid_asset_code(code: object) -> bool:
    return isinstance(code, str) and ASSET_CODE.fullmatch(code) is not None


def format_price(value: Fraction) -> str:
    """A price, exactly: a decimal string when it has one, else "numerator/denominator" (a
    price from a rates document is 1 / its rate: 1/150 has no decimal form)."""
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
        if places > 2 * MAX_EXPONENT + MAX_DIGITS:
            return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(int(value * 10**places)).scaleb(-places), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class Price:
    value: Fraction
    set_at: float  # monotonic seconds
    source: str  # "config", "url", "admin"


class RateBook:
    """The prices in use, and each pair's conversion factor (cached until prices change)."""

    def __init__(
        self,
        clock: Callable[[], float],
        spread: Fraction = Fraction(0),
        max_age: float | None = None,
    ) -> None:
        if not 0 <= spread < 1:
            raise ValueError("spread must be at least 0 and below 1")
        self._clock = clock
        self.spread = spread
        self.max_age = max_age
        self._prices: dict[str, Price] = {}
        # (src, dst) -> (numerator, denominator, valid until): floor(amount * n / d)
        self._factors: dict[tuple[Asset, Asset], tuple[int, int, float]] = {}

    def now(self) -> float:
        return self._clock()

    @property
    def identity(self) -> bool:
        """With no spread, one asset converts to itself 1:1 and no factor is needed."""
        return self.spread == 0

    def set_prices(self, prices: Mapping[str, Fraction], source: str) -> None:
        """Set these prices (others unchanged), all or none; every cached factor goes."""
        for code, value in prices.items():
            if value <= 0:
                raise ValueError(f"price of {code} must be positive")
        now = self._clock()
        self._prices.update({code: Price(v, now, source) for code, v in prices.items()})
        self._factors = {}

    def reconfigure(self, prices: Mapping[str, Fraction], spread: Fraction) -> None:
        """A reload: the file's prices replace the file's (a code no longer in the file loses
        its file price; prices from the URL or an operator stay), and its spread applies."""
        if not 0 <= spread < 1:
            raise ValueError("spread must be at least 0 and below 1")
        for code in [c for c, p in self._prices.items() if p.source == "config"]:
            if code not in prices:
                del self._prices[code]
        self.spread = spread
        self._factors = {}
        if prices:
            self.set_prices(prices, "config")

    def prices(self) -> dict[str, Price]:
        return dict(self._prices)

    def is_stale(self, price: Price, now: float) -> bool:
        """Only a price from a URL ages: one from the file or an operator stands until changed."""
        return (
            self.max_age is not None and price.source == "url" and now - price.set_at > self.max_age
        )

    def factor(self, src: Asset, dst: Asset) -> tuple[int, int] | None:
        """``(n, d)`` with ``out = amount * n // d``; None when a price is missing or stale."""
        now = self._clock()
        cached = self._factors.get((src, dst))
        if cached is not None and now <= cached[2]:
            return cached[0], cached[1]
        ratio = Fraction(1)
        valid_until = float("inf")
        if src.code != dst.code:
            price_src = self._prices.get(src.code)
            price_dst = self._prices.get(dst.code)
            if price_src is None or price_dst is None:
                return None
            if self.is_stale(price_src, now) or self.is_stale(price_dst, now):
                return None
            ratio = price_src.value / price_dst.value
            if self.max_age is not None:
                for price in (price_src, price_dst):
                    if price.source == "url":
                        valid_until = min(valid_until, price.set_at + self.max_age)
        exact = ratio * (1 - self.spread) * Fraction(10) ** (dst.scale - src.scale)
        self._factors[(src, dst)] = (exact.numerator, exact.denominator, valid_until)
        return exact.numerator, exact.denominator

    def convert(self, amount: int, src: Asset, dst: Asset) -> int | None:
        """``amount`` of ``src`` in ``dst``, rounded down; None without a usable rate."""
        if src == dst and self.identity:
            return amount
        factor = self.factor(src, dst)
        if factor is None:
            return None
        return amount * factor[0] // factor[1]


class Rate(MakesRejects):
    """The outgoing amount, in the next hop's asset (between ``route`` and
    ``max_packet_amount``, which compares it with the next hop's maximum)."""

    name: ClassVar[str] = "rate"

    def __init__(self, book: RateBook, ilp_address: str) -> None:
        self._book = book
        self._address = ilp_address

    def on_prepare(self, req: PacketRequest) -> StepResult:
        next_hop = req.next_hop
        assert next_hop is not None
        src, dst = req.source.asset, next_hop.asset
        book = self._book
        if (src is dst or src == dst) and book.identity:
            return None  # amount_out stays the Prepare's amount (peers share the node's asset)
        amount = req.prepare.amount
        factor = book.factor(src, dst)
        if factor is None:
            return Reject(
                IlpErrorCode.T00_INTERNAL_ERROR,
                self._address,
                f"no current rate from {src.code} to {dst.code}",
            )
        numerator, denominator = factor
        out = amount * numerator // denominator
        if out > UINT64_MAX:
            # The most the sender may send, in its own units, so that it can scale down.
            maximum = UINT64_MAX * denominator // numerator
            return Reject(
                IlpErrorCode.F08_AMOUNT_TOO_LARGE,
                self._address,
                "amount too large after conversion",
                amount_too_large_data(amount, min(maximum, UINT64_MAX)),
            )
        if amount and not out:
            return Reject(
                IlpErrorCode.R01_INSUFFICIENT_SOURCE_AMOUNT,
                self._address,
                f"{amount} {src.code} (scale {src.scale}) is worth nothing in {dst.code}",
            )
        req.amount_out = out
        return None
