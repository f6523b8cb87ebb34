"""Hypothesis strategies for valid ILP packets and BTP frames."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from connector.domain.btp.frames import Error, Message, ProtocolDataEntry, Response, Transfer
from connector.domain.ilp.packets import Fulfill, Prepare, Reject

segment = st.text(alphabet="abcXYZ019_~-", min_size=1, max_size=12)
addresses = st.builds(
    lambda scheme, segs: ".".join([scheme, *segs]),
    st.sampled_from(["g", "test", "private", "peer", "example", "local", "test3"]),
    st.lists(segment, min_size=1, max_size=6),
)
timestamps = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999000),
    timezones=st.just(UTC),
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
small_data = st.binary(max_size=300)

prepares = st.builds(
    Prepare,
    amount=st.integers(0, 2**64 - 1),
    expires_at=timestamps,
    execution_condition=st.binary(min_size=32, max_size=32),
    destination=addresses,
    data=small_data,
)
fulfills = st.builds(Fulfill, fulfillment=st.binary(min_size=32, max_size=32), data=small_data)
rejects = st.builds(
    Reject,
    code=st.text(alphabet="FTR0123456789", min_size=3, max_size=3),
    triggered_by=st.one_of(st.just(""), addresses),
    message=st.text(max_size=50),
    data=small_data,
)
ilp_packets = st.one_of(prepares, fulfills, rejects)

entries = st.builds(
    ProtocolDataEntry,
    name=st.text(alphabet=st.characters(max_codepoint=127), max_size=20),
    content_type=st.integers(0, 255),
    data=small_data,
)
protocol_data = st.lists(entries, max_size=5).map(tuple)
request_ids = st.integers(0, 2**32 - 1)
btp_frames = st.one_of(
    st.builds(Message, request_id=request_ids, protocol_data=protocol_data),
    st.builds(Response, request_id=request_ids, protocol_data=protocol_data),
    st.builds(
        Transfer,
        request_id=request_ids,
        amount=st.integers(0, 2**64 - 1),
        protocol_data=protocol_data,
    ),
    st.builds(
        Error,
        request_id=request_ids,
        code=st.text(alphabet=st.characters(max_codepoint=127), min_size=3, max_size=3),
        name=st.text(alphabet=st.characters(max_codepoint=127), max_size=30),
        triggered_at=timestamps.filter(lambda d: d.year >= 1000),
        data=small_data,
        protocol_data=protocol_data,
    ),
)
