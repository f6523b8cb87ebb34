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
from urllib.parse import urlsplit

import aiohttp

from connector.domain.ports import LogSink
from connector.domain.rates import RateBook, parse_price, valid_asset_code

#: The most of a rates document read (a few thousand currencies fit in far less).
MAX_DOCUMENT = 1 << 20


def prices_of(document: Any) -> dict[str, Fraction]:
    """Prices from ``{"base": code, "rates": {code: rate}}``; ValueError when malformed."""
    if not isinstance(document, dict) or not isinstance(document.get("rates"), dict):
        raise ValueError('expected {"base": "<code>", "rates": {"<code>": <rate>, ...}}')
    base = document.get("base")
    if not valid_asset_code(base):
        raise ValueError("base must be an asset code")
    prices: dict[str, Fraction] = {str(base): Fraction(1)}
    for code, rate in document["rates"].items():
        if not valid_asset_code(code):
            raise ValueError(f"asset code {str(code)[:20]!r}: 1-16 of A-Z a-z 0-9 . _ -")
        if not isinstance(rate, str):
            raise ValueError(f"rate of {code} must be a number")
        prices[code] = 1 / parse_price(rate)
    return prices


def shown_url(url: str) -> str:
    """``url`` as logs show it: no query string (where API keys go), no user-info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


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
        self._shown = shown_url(url)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):  # shutdown goes on whatever it was
                await self._task

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    await self.fetch(session)
                except Exception as exc:  # never a silent end: logged, and the next poll comes
                    self._log.error("rates_fetch_failed", url=self._shown, error=type(exc).__name__)
                await asyncio.sleep(self._every)

    async def fetch(self, session: aiohttp.ClientSession) -> bool:
        try:
            async with session.get(self._url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                raw = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    raw += chunk
                    if len(raw) > MAX_DOCUMENT:
                        raise ValueError("document too large")
            # Numbers as their decimal text: exact, never a float.
            document = json.loads(bytes(raw), parse_float=str, parse_int=str)
            prices = prices_of(document)
        except (
            aiohttp.ClientError,
            TimeoutError,
            ValueError,
            UnicodeDecodeError,
            RecursionError,
        ) as exc:
            detail = str(exc).replace(self._url, self._shown)[:200]
            self._log.warning("rates_fetch_failed", url=self._shown, error=detail)
            return False
        self._book.set_prices(prices, "url")
        self.fetches += 1
        self._log.info("rates_fetched", url=self._shown, assets=len(prices))
        return True
