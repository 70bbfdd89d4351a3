"""BlockReadClient against stock paho: the same byte stream, cut at random points, must
give the same messages. Real sockets (a socketpair) and real paho on both sides."""

from __future__ import annotations

import contextlib
import gc
import itertools
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.enums import _ConnectionState as ConnectionState
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homeward.mqtt import BlockReadClient


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    user_property: str | None  # a property, so paho's own decoder takes the packet

    def encode(self) -> bytes:
        topic = self.topic.encode()
        body = struct.pack("!H", len(topic)) + topic
        if self.qos:
            body += struct.pack("!H", self.mid)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if self.user_property is not None:
            props.UserProperty = ("k", self.user_property)
        body += props.pack() + self.payload  # type: ignore[no-untyped-call]
        header = 0x30 | self.qos << 1 | self.dup << 3 | self.retain
        length, size = bytearray(), len(body)
        while True:
            size, digit = divmod(size, 128)
            length.append(digit | (0x80 if size else 0))
            if not size:
                break
        return bytes([header]) + bytes(length) + bytes(body)


def receive(
    cls: type[mqtt.Client],
    stream: bytes,
    cuts: list[int],
    configure: Callable[[mqtt.Client], None] = lambda _client: None,
) -> list[tuple[Any, ...]]:
    """Feed ``stream`` to a client in pieces ending at ``cuts``; what on_message saw."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    configure(client)
    seen: list[tuple[Any, ...]] = []
    client.on_message = lambda _c, _u, m: seen.append(
        (
            m.topic,
            bytes(m.payload),
            m.qos,
            m.retain,
            m.dup,
            m.mid,
            getattr(m.properties, "UserProperty", None),
        )
    )
    client._sock = ours  # connected by hand: there is no broker here
    client._state = ConnectionState.MQTT_CS_CONNECTED
    theirs.setblocking(False)
    edges = [0, *sorted(set(cuts)), len(stream)]
    try:
        for begin, end in itertools.pairwise(edges):
            piece = memoryview(stream)[begin:end]
            while piece:
                with contextlib.suppress(BlockingIOError):  # buffer full: read some first
                    piece = piece[theirs.send(piece) :]
                while socket_has_data(ours) or (
                    isinstance(client, BlockReadClient) and client.buffered()
                ):
                    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    return seen


def socket_has_data(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False


_MQTT_TEXT = st.characters(codec="utf-8", exclude_characters="\x00#+")  # MQTT forbids U+0000
publishes = st.builds(
    Publish,
    topic=st.text(_MQTT_TEXT, min_size=1, max_size=80),
    payload=st.one_of(
        st.binary(max_size=300),
        st.integers(65_000, 70_000).map(lambda n: (b"0123456789abcdef" * (n // 16 + 1))[:n]),
    ),
    qos=st.sampled_from([0, 1]),
    retain=st.booleans(),
    dup=st.booleans(),
    mid=st.integers(1, 65535),
    user_property=st.one_of(st.none(), st.text(_MQTT_TEXT, max_size=10)),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(publishes, min_size=1, max_size=12), st.lists(st.integers(0, 300_000), max_size=20))
def test_block_reads_decode_what_paho_decodes(messages: list[Publish], cuts: list[int]) -> None:
    stream = b"".join(m.encode() for m in messages)
    cuts = [c for c in cuts if c < len(stream)]
    expected = receive(mqtt.Client, stream, cuts)
    assert receive(BlockReadClient, stream, cuts) == expected
    assert [(t, p) for t, p, *_ in expected] == [(m.topic, m.payload) for m in messages]


def test_a_closed_connection_leaves_nothing_buffered() -> None:
    ours, theirs = socket.socketpair()
    client = BlockReadClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    client._sock = ours
    two = Publish("a/b", b"x", 0, False, False, 0, None).encode() * 2
    theirs.sendall(two)
    client._sock_recv(1)
    assert client.buffered()
    client._sock_close()
    assert not client.buffered()
    theirs.close()


@pytest.mark.parametrize("cls", [mqtt.Client, BlockReadClient])
def test_a_malformed_publish_is_refused_as_paho_refuses_it(cls: type[mqtt.Client]) -> None:
    """Too short to hold its topic: the fast path hands it to paho's decoder, which
    reports a protocol error — the same as stock paho — and delivers nothing."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True)
    seen: list[object] = []
    client.on_message = lambda _c, _u, m: seen.append(m)
    client._sock = ours
    client._state = ConnectionState.MQTT_CS_CONNECTED
    theirs.sendall(bytes([0x32, 3, 0x00, 0x09, 0x61]))  # topic length 9, one byte of it
    try:
        assert client.loop_read() == mqtt.MQTT_ERR_PROTOCOL
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    assert seen == []


def _readings(count: int) -> bytes:
    return b"".join(
        Publish(f"d/{i}/readings", b"{}", 1, False, False, i + 1, None).encode()
        for i in range(count)
    )


def _cyclic_garbage_after(cls: type[mqtt.Client], messages: int) -> int:
    """Objects only the cycle collector could free, left by receiving ``messages``."""
    gc.collect()
    gc.disable()
    try:
        assert len(receive(cls, _readings(messages), [])) == messages
        return gc.collect()
    finally:
        gc.enable()


def test_delivery_leaves_no_garbage_for_the_cycle_collector() -> None:
    """paho matches every topic against per-topic callbacks through a closure that refers
    to itself: garbage per message that only the cycle collector frees. With no per-topic
    callback registered, the block-reading client hands messages straight to on_message."""
    assert _cyclic_garbage_after(mqtt.Client, 200) > _cyclic_garbage_after(mqtt.Client, 1) + 200
    assert _cyclic_garbage_after(BlockReadClient, 200) == _cyclic_garbage_after(BlockReadClient, 1)


@pytest.mark.parametrize("cls", [mqtt.Client, BlockReadClient])
def test_per_topic_callbacks_still_take_their_topics(cls: type[mqtt.Client]) -> None:
    routed: list[str] = []

    def configure(client: mqtt.Client) -> None:
        client.message_callback_add("d/1/+", lambda _c, _u, m: routed.append(m.topic))

    seen = receive(cls, _readings(3), [], configure)
    assert routed == ["d/1/readings"]
    assert [topic for topic, *_ in seen] == ["d/0/readings", "d/2/readings"]
