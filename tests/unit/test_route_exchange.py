"""The route exchange (``domain/route_exchange.py``) alone: the best-route rules, the receiving
and sending state machines, on a clock the test moves."""

from __future__ import annotations

import pytest

from connector.domain.accounts import Account, Accounts, Relation
from connector.domain.ccp import CcpRoute, Mode, RouteControl, RouteUpdate
from connector.domain.route_exchange import (
    MAX_EPOCHS_PER_UPDATE,
    MAX_ROUTES_PER_PEER,
    MAX_UPDATE_BYTES,
    RouteExchange,
)
from connector.domain.routing import Routes

ME = "test.me"
TABLE = b"\x01" * 16
THEIRS = b"\x02" * 16
AUTH = b"\x03" * 32


def exchange(*accounts: Account, routes: tuple[tuple[str, str], ...] = ()) -> RouteExchange:
    return RouteExchange(Accounts(ME, accounts, routes), Routes(), TABLE, broadcast_interval=30)


PEER = Account.of("p", Relation.PEER)
PEER2 = Account.of("q", Relation.PEER)
PARENT = Account.of("up", Relation.PARENT)
CHILD = Account.of("kid", Relation.CHILD)
CHILD_SPEAKER = Account.of("ck", Relation.CHILD, send_routes=True, receive_routes=True)


def update(
    *routes: tuple[str, tuple[str, ...]],
    withdrawn: tuple[str, ...] = (),
    start: int = 0,
    end: int = 1,
    table: bytes = THEIRS,
) -> RouteUpdate:
    return RouteUpdate(
        table,
        end,
        start,
        end,
        30000,
        "test.them",
        tuple(CcpRoute(prefix, path, AUTH) for prefix, path in routes),
        withdrawn,
    )


def learned(x: RouteExchange) -> dict[str, tuple[str, tuple[str, ...], str]]:
    return {e.prefix: (e.next_hop, e.path, e.source) for e in x.best_routes()}


# --- best route ---------------------------------------------------------------------------


def test_configured_beats_local_beats_learned_by_relation_then_path_then_id() -> None:
    x = exchange(PEER, PEER2, PARENT, CHILD_SPEAKER, routes=(("test.fixed", "q"),))
    for peer in ("p", "q", "up", "ck"):
        x.peer_up(peer, 0)
    x.handle_update("up", update(("test.far", ("test.up", "test.far"))), 0)
    assert learned(x)["test.far"][0] == "up"  # the only route
    x.handle_update("p", update(("test.far", ("test.p", "test.x", "test.far"))), 0)
    assert learned(x)["test.far"][0] == "p"  # a peer beats a parent, longer path or not
    x.handle_update("q", update(("test.far", ("test.q", "test.far"))), 0)
    assert learned(x)["test.far"][0] == "q"  # equal relation: the shorter path
    x.handle_update("ck", update(("test.far", ("test.ck", "test.a", "test.b", "test.far"))), 0)
    assert learned(x)["test.far"][0] == "ck"  # a child beats everyone learned
    x.handle_update("p", update(("test.fixed", ("test.p",)), start=1, end=2), 0)
    assert learned(x)["test.fixed"] == ("q", (), "configured")  # the file wins
    x.handle_update("p", update((ME, ("test.p",)), start=2, end=3), 0)
    assert learned(x)[ME] == ("", (), "local")  # our own address stays ours


def test_equal_routes_go_to_the_lower_peer_id() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("q", 0)
    x.peer_up("p", 0)
    x.handle_update("q", update(("test.far", ("test.q",))), 0)
    x.handle_update("p", update(("test.far", ("test.p",))), 0)
    assert learned(x)["test.far"][0] == "p"
    assert "lower peer id" in str(x.explain("test.far.x")["reason"])


def test_the_table_in_use_is_replaced_whole() -> None:
    routes = Routes()
    x = RouteExchange(Accounts(ME, [PEER]), routes, TABLE)
    x.peer_up("p", 0)
    before = routes.table
    x.handle_update("p", update(("test.far", ("test.p",))), 0)
    assert before.resolve("test.far.x") is None  # the old snapshot never changes
    assert routes.table.resolve("test.far.x") == "p"


# --- receiving ----------------------------------------------------------------------------


def test_a_sync_control_goes_out_on_every_link_that_comes_up() -> None:
    x = exchange(PEER, CHILD)
    x.peer_up("p", 0)
    x.peer_up("kid", 0)  # children exchange nothing by default
    assert [(o.peer_id, o.message) for o in x.outbox] == [
        ("p", RouteControl(Mode.SYNC, bytes(16), 0))
    ]
    x.outbox.clear()
    x.peer_up("p", 1)  # a reconnect (a second link) asks again
    assert [o.peer_id for o in x.outbox] == ["p"]


def test_a_refused_control_is_sent_again_later() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    token = x.outbox.pop().token
    x.answered(token, False, 0)
    x.tick(1)
    assert x.outbox == []
    x.tick(5)
    assert [o.peer_id for o in x.outbox] == ["p"]


def test_imports_are_filtered_and_withdrawals_applied() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.handle_update(
        "p",
        update(
            ("test.far", ("test.p", "test.far")),
            ("test", ("test.p",)),  # the global prefix itself
            ("g.elsewhere", ("test.p",)),  # not under our global prefix
            ("test.loop", ("test.p", ME, "test.loop")),  # through us: a loop
        ),
        0,
    )
    assert set(learned(x)) == {ME, "test.far"}
    x.handle_update("p", update(withdrawn=("test.far",), start=1, end=2), 0)
    assert set(learned(x)) == {ME}


def test_a_new_table_id_clears_what_the_peer_said_before() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.handle_update("p", update(("test.old", ("test.p",))), 0)
    x.handle_update("p", update(("test.new", ("test.p",)), table=b"\x09" * 16), 0)
    assert set(learned(x)) == {ME, "test.new"}


def test_a_gap_in_epochs_is_not_applied_and_asks_for_a_resync() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.outbox.clear()
    assert x.handle_update("p", update(("test.a1", ("test.p",)), end=3), 0) is None
    why = x.handle_update("p", update(("test.a2", ("test.p",)), start=5, end=6), 0)
    assert why is not None
    assert "resync" in why
    assert "test.a2" not in learned(x)
    assert [o.message for o in x.outbox] == [RouteControl(Mode.SYNC, THEIRS, 3)]


def test_an_old_update_changes_nothing() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.handle_update("p", update(("test.a1", ("test.p",)), end=5), 0)
    assert x.handle_update("p", update(withdrawn=("test.a1",), start=1, end=2), 0) is None
    assert "test.a1" in learned(x)


def test_all_of_a_peers_routes_go_with_its_last_link() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.handle_update("p", update(("test.far", ("test.p",))), 0)
    x.peer_down("p", 0)
    assert set(learned(x)) == {ME}


def test_route_messages_from_who_may_not_send_them_are_refused() -> None:
    x = exchange(CHILD)
    x.peer_up("kid", 0)
    assert x.handle_update("kid", update(("test.far", ("test.kid",))), 0) is not None
    assert x.handle_control("kid", RouteControl(Mode.SYNC, TABLE, 0), 0) is not None
    assert set(learned(x)) == {ME, "test.me.kid"}


# --- sending ------------------------------------------------------------------------------


def sync(x: RouteExchange, peer: str, now: float = 0, epoch: int = 0, table: bytes = TABLE) -> None:
    x.outbox.clear()
    assert x.handle_control(peer, RouteControl(Mode.SYNC, table, epoch), now) is None


def sent_updates(x: RouteExchange) -> list[RouteUpdate]:
    return [o.message for o in x.outbox if isinstance(o.message, RouteUpdate)]


def test_nothing_is_sent_before_the_peer_asks_and_then_everything_from_its_epoch() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    x.handle_update("q", update(("test.q", ("test.q",))), 0)
    x.outbox.clear()
    x.tick(100)
    assert sent_updates(x) == []  # p is IDLE
    sync(x, "p", 100)
    (sent,) = sent_updates(x)
    assert (sent.from_epoch, sent.to_epoch, sent.speaker) == (0, x.epoch, ME)
    routes = {r.prefix: r.path for r in sent.new_routes}
    assert routes == {ME: (ME,), "test.q": (ME, "test.q")}  # our address first on every path


def test_the_epoch_advances_only_on_a_fulfill() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    sync(x, "p")
    token = x.outbox[-1].token
    x.answered(token, False, 0.2)  # refused: sent again after a heartbeat, from the same epoch
    x.outbox.clear()
    x.tick(1)
    assert sent_updates(x) == []
    x.tick(31)
    (again,) = sent_updates(x)
    assert again.from_epoch == 0
    x.answered(x.outbox[-1].token, True, 31)
    x.outbox.clear()
    x.tick(62)
    (heartbeat,) = sent_updates(x)
    assert (heartbeat.from_epoch, heartbeat.to_epoch, heartbeat.new_routes) == (
        x.epoch,
        x.epoch,
        (),
    )


def test_changes_go_out_at_once_but_not_more_than_one_in_flight() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    sync(x, "p")
    first = x.outbox[-1].token
    x.outbox.clear()
    x.handle_update("q", update(("test.q", ("test.q",))), 1)
    assert sent_updates(x) == []  # the first is not answered yet
    x.answered(first, True, 1)
    (change,) = sent_updates(x)
    assert [r.prefix for r in change.new_routes] == ["test.q"]


def test_routes_through_a_peer_go_back_to_it_as_withdrawals_and_peer_routes_never_to_a_parent() -> (
    None
):
    x = exchange(PEER, PARENT)
    x.peer_up("p", 0)
    x.peer_up("up", 0)
    x.handle_update("p", update(("test.p", ("test.p",))), 0)
    sync(x, "p")
    (to_p,) = sent_updates(x)
    assert "test.p" in to_p.withdrawn
    sync(x, "up")
    (to_parent,) = sent_updates(x)
    assert "test.p" in to_parent.withdrawn
    assert [r.prefix for r in to_parent.new_routes] == [ME]


def test_children_are_covered_by_our_address() -> None:
    x = exchange(PEER, CHILD)
    x.peer_up("p", 0)
    sync(x, "p")
    (sent,) = sent_updates(x)
    assert [r.prefix for r in sent.new_routes] == [ME]


def test_a_control_with_another_table_id_starts_again_from_zero() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    sync(x, "p", epoch=1, table=b"\x07" * 16)
    (sent,) = sent_updates(x)
    assert sent.from_epoch == 0


@pytest.mark.parametrize("many", [MAX_EPOCHS_PER_UPDATE + 20])
def test_at_most_fifty_epochs_and_one_ilp_packet_of_data_per_update(many: int) -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    long_path = tuple(f"test.hop{i:03}" + "x" * 200 for i in range(3))
    routes = [(f"test.r{i:03}", ("test.q", *long_path)) for i in range(many)]
    x.handle_update("q", update(*routes), 0)
    sync(x, "p")
    (sent,) = sent_updates(x)
    # Fifty epochs of these would not fit in one packet's data: fewer go, and the rest next.
    assert sent.to_epoch - sent.from_epoch < MAX_EPOCHS_PER_UPDATE
    assert len(sent.encode()) <= MAX_UPDATE_BYTES
    x.answered(x.outbox[-1].token, True, 0)
    x.tick(0.2)
    (rest,) = sent_updates(x)[1:]
    assert rest.from_epoch == sent.to_epoch


def test_a_peer_that_goes_away_is_withdrawn_to_the_others_at_once() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    x.handle_update("q", update(("test.q", ("test.q",))), 0)
    sync(x, "p")
    x.answered(x.outbox[-1].token, True, 0)
    x.outbox.clear()
    x.peer_down("q", 0)
    x.tick(1)
    (sent,) = sent_updates(x)
    assert sent.withdrawn == ("test.q",)


def test_the_log_keeps_each_prefixs_latest_state_and_forgets_acknowledged_withdrawals() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    sync(x, "p")
    x.answered(x.outbox[-1].token, True, 0)
    epoch = 1
    for i in range(2000):  # routes that flap, and routes under new names that come and go
        x.handle_update(
            "q",
            update(("test.flap", ("test.q",)), (f"test.n{i}", ("test.q",)), start=epoch - 1,
                   end=epoch),
            0,
        )  # fmt: skip
        x.handle_update(
            "q", update(withdrawn=("test.flap", f"test.n{i}"), start=epoch, end=epoch + 1), 0
        )
        epoch += 2
        x.outbox.clear()
        x.tick(i + 1.0)  # p keeps up
        for out in list(x.outbox):
            x.answered(out.token, True, i + 1.0)
    assert x.log_size <= 5  # our address, and withdrawals p has not acknowledged yet


def test_a_peer_that_joins_late_gets_fifty_routes_per_update_however_old_the_log() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("q", 0)
    for i in range(300):  # a long history of one prefix: one entry in the log
        route = ("test.flap", ("test.q",) if i % 2 else ("test.q", "test.z"))
        x.handle_update("q", update(route, start=i, end=i + 1), 0)
    x.handle_update("q", update(("test.q", ("test.q",)), start=300, end=301), 0)
    x.peer_up("p", 0)
    sync(x, "p")
    (sent,) = sent_updates(x)
    assert sent.to_epoch == x.epoch  # everything in one update
    assert {r.prefix for r in sent.new_routes} == {ME, "test.flap", "test.q"}


def test_a_peer_cannot_make_us_keep_more_than_so_many_of_its_routes() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    many = [(f"test.r{i}", ("test.p",)) for i in range(MAX_ROUTES_PER_PEER + 5)]
    assert x.handle_update("p", update(*many), 0) is None
    assert len(learned(x)) == 1 + MAX_ROUTES_PER_PEER
    assert x.dropped_routes == 5
    # Its withdrawals still apply, and its epoch moves on.
    assert x.handle_update("p", update(withdrawn=("test.r0",), start=1, end=2), 0) is None
    assert "test.r0" not in learned(x)


@pytest.mark.parametrize(
    "route",
    [
        ("test.a b", ("test.p",)),
        ("test.\x01ctl", ("test.p",)),
        ("test." + "x" * 1100, ("test.p",)),
        ("test.ok", tuple(f"test.h{i}" for i in range(40))),
        ("test.ok", ("bad hop",)),
        (ME, ("test.p",)),
        (ME + ".nobody", ("test.p",)),
    ],
)
def test_prefixes_and_paths_that_are_not_addresses_or_claim_ours_are_refused(
    route: tuple[str, tuple[str, ...]],
) -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    x.handle_update("p", update(route), 0)
    assert set(learned(x)) == {ME}


def test_a_destination_under_our_own_address_that_is_no_child_is_ours_to_refuse() -> None:
    routes = Routes()
    x = RouteExchange(Accounts(ME, [PARENT]), routes, TABLE)
    assert routes.table.resolve(ME + ".nobody.x") == ""  # F02 here, never up to the parent
    assert routes.table.resolve("test.elsewhere") == "up"
    assert x.explain(ME + ".nobody.x")["nextHop"] is None


def test_updates_with_impossible_epochs_are_refused() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    bad = RouteUpdate(THEIRS, 3, 0, 2**32 - 1, 30000, "test.p", (), ())
    assert x.handle_update("p", bad, 0) is not None
    assert x.handle_update("p", update(("test.far", ("test.p",))), 0) is None
    assert "test.far" in learned(x)


def test_a_route_too_big_for_any_update_goes_out_as_a_withdrawal() -> None:
    x = exchange(PEER, PEER2)
    x.peer_up("p", 0)
    x.peer_up("q", 0)
    # The largest update q may send: one route whose path fills the packet. With our address
    # added to its path, it no longer fits in one.
    for size in range(1100, 900, -1):
        big = update(("test.big", tuple(f"test.h{i:02}" + "x" * size for i in range(32))))
        if len(big.encode()) <= MAX_UPDATE_BYTES:
            break
    assert x.handle_update("q", big, 0) is None
    assert "test.big" in learned(x)
    sync(x, "p")
    (first,) = sent_updates(x)  # what fits goes first
    assert "test.big" not in {r.prefix for r in first.new_routes}
    x.answered(x.outbox[-1].token, True, 0)
    x.tick(1)
    (sent,) = sent_updates(x)[1:]
    assert len(sent.encode()) <= MAX_UPDATE_BYTES
    assert "test.big" in sent.withdrawn  # never advertised: it cannot be


def test_tick_and_next_due_agree_so_the_timer_never_spins() -> None:
    x = exchange(PEER)
    x.peer_up("p", 0)
    sync(x, "p", 0.1)
    x.answered(x.outbox[-1].token, True, 0.1)
    x.outbox.clear()
    due = x.next_due(0.2)
    x.tick(due)
    assert sent_updates(x)  # due means due
