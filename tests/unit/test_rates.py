"""Exchange rates (``domain/rates.py``): the exact conversion, its rounding, and the rate step."""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.domain.accounts import Account, Accounts, Asset, Relation
from connector.domain.forwarding import MaxPacketAmount, Route
from connector.domain.ilp.packets import Fulfill, IlpErrorCode, Reject
from connector.domain.ledger import IncomingBalance, Ledger, OutgoingBalance
from connector.domain.oer import UINT64_MAX
from connector.domain.pipeline import PacketRequest, Pipeline
from connector.domain.rates import Rate, RateBook, format_price, parse_price
from connector.domain.routing import Routes
from tests.fakes import make_prepare
from tests.unit.test_pipeline import RecordingOrigin, no_spawn

USD2 = Asset("USD", 2)
USD9 = Asset("USD", 9)
EUR2 = Asset("EUR", 2)
JPY0 = Asset("JPY", 0)
BTC6 = Asset("BTC", 6)
PRICES = {"USD": "1", "EUR": "1.25", "JPY": "0.0067", "BTC": "60000"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def book(spread: str = "0", max_age: float | None = None, clock: Clock | None = None) -> RateBook:
    b = RateBook(clock or Clock(), parse_price(spread) if spread != "0" else Fraction(0), max_age)
    b.set_prices({code: parse_price(p) for code, p in PRICES.items()}, "config")
    return b


def exact(amount: int, src: Asset, dst: Asset, spread: Fraction = Fraction(0)) -> Fraction:
    prices = {code: parse_price(p) for code, p in PRICES.items()}
    ratio = Fraction(1) if src.code == dst.code else prices[src.code] / prices[dst.code]
    return amount * ratio * (1 - spread) * Fraction(10) ** (dst.scale - src.scale)


ASSETS = st.sampled_from([USD2, USD9, EUR2, JPY0, BTC6, Asset("EUR", 9), Asset("JPY", 2)])
AMOUNTS = st.integers(min_value=0, max_value=UINT64_MAX)
SPREADS = st.sampled_from(["0", "0.002", "0.01", "0.5"])


@given(AMOUNTS, ASSETS, ASSETS, SPREADS)
def test_never_rounds_up_and_loses_less_than_one_unit(
    amount: int, src: Asset, dst: Asset, spread: str
) -> None:
    out = book(spread).convert(amount, src, dst)
    assert out is not None
    want = exact(amount, src, dst, parse_price(spread) if spread != "0" else Fraction(0))
    assert out <= want < out + 1


@given(AMOUNTS, AMOUNTS, ASSETS, ASSETS, SPREADS)
def test_monotonic_in_the_amount(a: int, b: int, src: Asset, dst: Asset, spread: str) -> None:
    low, high = sorted((a, b))
    rates = book(spread)
    assert rates.convert(low, src, dst) <= rates.convert(high, src, dst)  # type: ignore[operator]


@given(AMOUNTS, ASSETS)
def test_exact_for_the_same_asset_without_a_spread(amount: int, asset: Asset) -> None:
    assert book().convert(amount, asset, asset) == amount
    assert RateBook(Clock()).convert(amount, asset, asset) == amount  # no price needed


@pytest.mark.parametrize(
    ("amount", "src", "dst", "out"),
    [
        (100, USD2, EUR2, 80),  # $1.00 -> EUR 0.80
        (1, USD2, EUR2, 0),  # 0.8 cent rounds down to nothing
        (125, EUR2, USD2, 156),  # EUR 1.25 -> $1.5625 -> 156 cents
        (100, USD2, USD9, 1_000_000_000),  # scale 2 -> 9
        (1_999_999_999, USD9, USD2, 199),  # scale 9 -> 2, rounded down
        (1000, JPY0, USD2, 670),  # ¥1000 -> $6.70
        (1, USD2, JPY0, 1),  # $0.01 -> ¥1.49 -> ¥1
        (1, BTC6, USD2, 6),  # 1 satoshi-ish (1e-6 BTC) -> $0.06
        (100_000, USD2, BTC6, 16_666),  # $1000 -> 0.0166666 BTC -> 16,666 units of 1e-6
    ],
)
def test_examples_across_scales_0_2_6_and_9(amount: int, src: Asset, dst: Asset, out: int) -> None:
    assert book().convert(amount, src, dst) == out


def test_the_spread_applies_to_every_conversion_the_same_asset_included() -> None:
    assert book("0.01").convert(1000, USD2, USD2) == 990
    assert book("0.01").convert(1000, USD2, EUR2) == 792


def test_a_missing_or_stale_price_converts_nothing() -> None:
    clock = Clock()
    rates = book(max_age=60, clock=clock)
    rates.set_prices({"EUR": parse_price("1.25")}, "url")  # only prices from a URL age
    assert rates.convert(100, USD2, Asset("XAU", 2)) is None
    assert rates.convert(100, USD2, EUR2) == 80
    clock.now = 61
    assert rates.convert(100, USD2, EUR2) is None
    assert rates.convert(100, USD2, USD2) == 100  # the same asset needs no price
    rates.set_prices({"EUR": parse_price("1.25"), "USD": parse_price("1")}, "url")
    assert rates.convert(100, USD2, EUR2) == 80


def test_new_prices_take_effect_at_once() -> None:
    rates = book()
    assert rates.convert(100, USD2, EUR2) == 80
    rates.set_prices({"EUR": parse_price("2")}, "admin")
    assert rates.convert(100, USD2, EUR2) == 50


@pytest.mark.parametrize("text", ["0", "-1", "abc", "NaN", "Infinity", ""])
def test_prices_are_positive_decimal_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_price(text)


def test_prices_print_as_they_were_given() -> None:
    for text in ("1", "1.25", "0.0067", "60000", "0.0003"):
        assert format_price(parse_price(text)) == text


# --- the step -----------------------------------------------------------------------------


def step_result(rates: RateBook, amount: int, src: Asset, dst: Asset) -> tuple[object, int]:
    sender = Account.of("alice", Relation.CHILD, src)
    receiver = Account.of("bob", Relation.CHILD, dst)
    req = PacketRequest(
        Pipeline([], "test.me", no_spawn),
        RecordingOrigin(),
        1,
        sender,
        make_prepare(amount=amount),
        None,
    )
    req.next_hop = receiver
    return Rate(rates, "test.me").on_prepare(req), req.amount_out


def test_the_step_sets_the_amount_in_the_next_hops_asset() -> None:
    assert step_result(book(), 100, USD2, EUR2) == (None, 80)
    assert step_result(book(), 100, USD2, USD2) == (None, 100)


def test_the_step_refuses_what_it_cannot_convert() -> None:
    result, _ = step_result(book(), 100, USD2, Asset("XAU", 2))
    assert isinstance(result, Reject)
    assert result.code == IlpErrorCode.T00_INTERNAL_ERROR
    result, _ = step_result(book(), 1, USD2, EUR2)
    assert isinstance(result, Reject)
    assert result.code == IlpErrorCode.R01_INSUFFICIENT_SOURCE_AMOUNT
    result, _ = step_result(book(), UINT64_MAX, USD2, USD9)
    assert isinstance(result, Reject)
    assert result.code == IlpErrorCode.F08_AMOUNT_TOO_LARGE
    received = int.from_bytes(result.data[:8], "big")
    maximum = int.from_bytes(result.data[8:], "big")
    assert received == UINT64_MAX
    # What the sender may send, in its own units: that much converts within u64.
    assert book().convert(maximum, USD2, USD9) <= UINT64_MAX  # type: ignore[operator]
    assert book().convert(maximum + 1, USD2, USD9) > UINT64_MAX  # type: ignore[operator]


class FulfillAll:
    name: ClassVar[str] = "fulfill_all"

    def on_prepare(self, req: PacketRequest) -> Fulfill:
        self.last = req.amount_out
        return Fulfill(bytes(32), b"")


def test_balances_are_held_in_each_peers_own_units_and_f08_compares_the_converted_amount() -> None:
    alice = Account.of("alice", Relation.CHILD, USD2)
    bob = Account.of("bob", Relation.CHILD, EUR2, max_packet_amount=50)
    accounts = Accounts("test.me", [alice, bob])
    routes = Routes(accounts.routing_table())
    ledger = Ledger()
    end = FulfillAll()
    pipeline = Pipeline(
        [
            IncomingBalance(ledger, "test.me"),
            Route(accounts, routes),
            Rate(book(), "test.me"),
            MaxPacketAmount("test.me"),
            OutgoingBalance(ledger, "test.me"),
            end,
        ],
        "test.me",
        no_spawn,
    )
    origin = RecordingOrigin()
    pipeline.handle(origin, 1, alice, make_prepare(destination="test.me.bob.x", amount=60), None)
    assert end.last == 48  # 60 cents are 48 euro cents
    assert (ledger.position("alice").balance, ledger.position("bob").balance) == (60, -48)
    pipeline.handle(origin, 2, alice, make_prepare(destination="test.me.bob.x", amount=100), None)
    reject = origin.replies[-1]
    assert isinstance(reject, Reject)
    assert reject.code == IlpErrorCode.F08_AMOUNT_TOO_LARGE
    # Both amounts in bob's units: their ratio is what a sender scales its packets down by.
    assert (int.from_bytes(reject.data[:8], "big"), int.from_bytes(reject.data[8:], "big")) == (
        80,
        50,
    )
    assert ledger.position("alice").incoming == 0  # released


def test_prices_from_the_file_or_an_operator_never_age() -> None:
    clock = Clock()
    rates = book(max_age=60, clock=clock)
    clock.now = 10_000
    assert rates.convert(100, USD2, EUR2) == 80


@pytest.mark.parametrize("text", ["1e-30000000", "1e999999999", "1" * 41, "0." + "0" * 50 + "1"])
def test_prices_beyond_forty_digits_or_exponents_are_refused_at_once(text: str) -> None:
    with pytest.raises(ValueError):
        parse_price(text)


def test_a_price_without_a_decimal_form_prints_as_a_fraction() -> None:
    assert format_price(Fraction(1, 150)) == "1/150"
    assert format_price(Fraction(1, 3)) == "1/3"
