"""Prices from a URL (``rates.backend: url``): a JSON document ``{"base": "USD", "rates":
{"EUR": "0.8", ...}}`` fetched every ``rates.poll_seconds``. A rate says how many units of an
asset one unit of the base buys, so an asset's price (in the base) is 1 / its rate, and the
base's is 1. Numbers are read as decimal text, never floats. A fetch that fails changes nothing
and is logged; prices older than ``rates.max_age_seconds`` stop converting (T00)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from fractions import Fraction
from typing import Any

import aiohttp

from connector.domain.ports import LogSink
from connector.domain.rates import RateBook, parse_price

#: The most of a rates document read (a few thousand currencies fit in far less).
MAX_DOCUMENT = 1 << 20


def prices_of(document: Any) -> dict[str, Fraction]:
    """Prices from ``{"base": code, "rates": {code: rate}}``; ValueError when malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("rates"), dict):
        raise ValueError('expected {"base": "<code>", "rates": {"<code>": <rate>, ...}}')
    base = document.get("base")
    if not isinstance(base, str) or not 1 <= len(base) <= 16:
        raise ValueError("base must be an asset code")
    prices = {base: Fraction(1)}
    for code, rate in document["rates"].items():
        if not isinstance(code, str) or not 1 <= len(code) <= 16:
            raise ValueError(f"asset code {code!r} must be 1-16 characters")
        if not isinstance(rate, str):
            raise ValueError(f"rate of {code} must be a number")
        prices[code] = 1 / parse_price(rate)
    return prices


class UrlRates:
    def __init__(
        self, book: RateBook, url: str, poll_seconds: float, log: LogSink, timeout: float = 10
    ) -> None:
        self._book = book
        self._url = url
        self._every = poll_seconds
        self._log = log
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self.fetch(session)
                await asyncio.sleep(self._every)

    async def fetch(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self._url) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                raw = await response.content.read(MAX_DOCUMENT + 1)
                if len(raw) > MAX_DOCUMENT:
                    raise ValueError("document too large")
            # Numbers as their decimal text: exact, never a float.
            document = json.loads(raw, parse_float=str, parse_int=str)
            prices = prices_of(document)
        except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeDecodeError) as exc:
            self._log.warning("rates_fetch_failed", url=self._url, error=str(exc)[:200])
            return False
        self._book.set_prices(prices, "url")
        self.fetches += 1
        self._log.info("rates_fetched", url=self._url, assets=len(prices))
        return True
