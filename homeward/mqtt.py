"""One way to make a paho-mqtt 2.x client: MQTT 5, credentials and TLS from the URL."""

from __future__ import annotations

import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homeward.config import MqttEndpoint


class BlockReadClient(mqtt.Client):
    """paho-mqtt reading its socket in 64 KiB blocks, with a fast path for PUBLISH.

    paho 2.x reads a packet field by field: one ``recv`` for the type byte, one per byte
    of the remaining length, one for the body — four system calls for a reading message.
    This client serves those reads from a buffer refilled by one ``recv`` of 64 KiB, so a
    burst of hundreds of messages costs one system call. It overrides three private
    methods of paho (``_sock_recv``, ``_sock_close`` and ``_handle_publish``) and uses
    two of its private attributes (``_in_callback_mutex``, ``_easy_log``), which is
    why pyproject.toml bounds paho's version; tests/unit/test_block_read_client.py
    checks, on random streams cut at random points, that it decodes what paho decodes.

    Whoever drives ``loop_read`` must keep calling it while :meth:`buffered` is true: the
    socket is no longer readable once its bytes are in this buffer.
    """

    _BLOCK = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._topic_callbacks = False

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._topic_callbacks = True
        super().message_callback_add(sub, callback)

    def buffered(self) -> bool:
        """Bytes read from the socket that paho has not consumed yet."""
        return self._rpos < len(self._rbuf)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            block = super()._sock_recv(self._BLOCK)  # BlockingIOError when nothing waits
            if not block:
                return block  # the broker closed the connection
            self._rbuf, self._rpos = block, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def _handle_publish(self) -> MQTTErrorCode:
        """Decode a QoS 0/1 PUBLISH without properties — what devices send — directly.

        paho builds a ``Properties`` object for every MQTT 5 PUBLISH, a third of its cost
        per message. Anything else (properties present, QoS 2, automatic acknowledgement,
        MQTT 3, a malformed packet) goes to paho's own decoder. ``message.properties`` is
        then a shared empty ``Properties``: read it, never change it.
        """
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if qos == 2 or not self._manual_ack or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        start = 2 + ((packet[0] << 8) | packet[1]) if len(packet) >= 2 else len(packet)
        at = start + 2 if qos else start
        if at >= len(packet) or packet[at] != 0:  # properties present, or malformed
            return super()._handle_publish()
        message = mqtt.MQTTMessage(
            mid=(packet[start] << 8) | packet[start + 1] if qos else 0,
            topic=bytes(packet[2:start]),
        )
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = _NO_PROPERTIES
        message.payload = bytes(packet[at + 1 :])
        message.timestamp = time.monotonic()
        self._deliver(message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _deliver(self, message: mqtt.MQTTMessage) -> None:
        """Hand a message to ``on_message`` as paho does, without matching its topic
        against per-topic callbacks when none are registered: paho's matcher builds a
        self-referencing closure per message, garbage only the cycle collector frees,
        which made it run every hundred messages or so."""
        if self._topic_callbacks:
            self._handle_on_message(message)
            return
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # nothing of a closed connection is read later
        super()._sock_close()


_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def make_client(
    endpoint: MqttEndpoint,
    client_id: str = "",
    *,
    manual_ack: bool = False,
    block_reads: bool = False,
) -> mqtt.Client:
    """A paho client; ``block_reads`` gives a :class:`BlockReadClient` (ingest uses it)."""
    cls = BlockReadClient if block_reads else mqtt.Client
    client = cls(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set_context(ssl.create_default_context())
    return client


def connect_properties(*, session_expiry_s: int, receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props
