"""Prices polled from a URL (``rates.backend: url``): a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from fractions import Fraction

import aiohttp
import pytest
from aiohttp import web

from connector.app.rates_source import UrlRates, prices_of, shown_url
from connector.domain.accounts import Asset
from connector.domain.rates import RateBook
from tests.fakes import RecordingLogSink

USD, EUR = Asset("USD", 2), Asset("EUR", 2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[bytes]]]:
    documents = [b'{"base": "USD", "rates": {"EUR": 0.8, "JPY": 150}}']

    async def rates(request: web.Request) -> web.Response:
        return web.Response(body=documents[-1], content_type="application/json")

    app = web.Application()
    app.router.add_get("/rates.json", rates)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/rates.json", documents
    await runner.cleanup()


async def test_prices_come_from_the_document_exactly_and_age_out(
    server: tuple[str, list[bytes]],
) -> None:
    url, documents = server
    clock = Clock()
    book = RateBook(clock, max_age=60)
    log = RecordingLogSink()
    source = UrlRates(book, url, 60, log)
    async with aiohttp.ClientSession() as session:
        assert await source.fetch(session)
        # 1 USD buys 0.8 EUR: EUR's price is 1.25 USD, exactly (no float on the way).
        assert book.prices()["EUR"].value == Fraction(5, 4)
        assert book.convert(100, USD, EUR) == 80
        clock.now = 61  # no fetch for longer than max_age: no rate, T00
        assert book.convert(100, USD, EUR) is None
        documents.append(b"not json")
        assert not await source.fetch(session)  # a bad document changes nothing
        assert any(r["event"] == "rates_fetch_failed" for r in log.records)
        documents.append(b'{"base": "USD", "rates": {"EUR": "0.5"}}')
        assert await source.fetch(session)
        assert book.convert(100, USD, EUR) == 50


async def test_the_poller_runs_until_stopped(server: tuple[str, list[bytes]]) -> None:
    url, _ = server
    book = RateBook(Clock())
    source = UrlRates(book, url, 0.05, RecordingLogSink())
    source.start()
    async with asyncio.timeout(10):
        while source.fetches < 2:  # noqa: ASYNC110 - bounded polling of the poller
            await asyncio.sleep(0.01)
    await source.stop()
    assert "JPY" in book.prices()


async def test_a_large_document_arriving_in_many_pieces_is_read_whole() -> None:
    codes = {f"C{i:05}": "1.5" for i in range(20_000)}  # about 400 KB
    body = json.dumps({"base": "USD", "rates": codes}).encode()

    async def rates(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(0, len(body), 4096):
            await response.write(body[i : i + 4096])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/r", rates)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        book = RateBook(Clock())
        source = UrlRates(book, f"http://{host}:{port}/r?api_key=hunter2", 60, RecordingLogSink())
        async with aiohttp.ClientSession() as session:
            assert await source.fetch(session)
        assert len(book.prices()) == 20_001
    finally:
        await runner.cleanup()


def test_logs_show_the_url_without_its_secrets() -> None:
    assert shown_url("https://u:pw@rates.example:8443/v1/latest?api_key=k") == (
        "https://rates.example:8443/v1/latest"
    )


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"rates": {"EUR": "1"}},
        {"base": "USD", "rates": {"EUR": "-1"}},
        {"base": "USD", "rates": {"EUR": "0"}},
        {"base": "USD", "rates": {"": "1"}},
        {"base": "USD", "rates": {"EUR": None}},
        {"base": "USD", "rates": {"E R": "1"}},
        {"base": "USD", "rates": {"EUR": "1e-99999999"}},
    ],
)
def test_malformed_documents_are_refused(document: object) -> None:
    with pytest.raises(ValueError):
        prices_of(document)
