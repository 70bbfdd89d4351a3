"""The MQTT side of ingest: paho-mqtt 2.x driven by the asyncio event loop.

* MQTT 5, fixed client id, persistent session (clean start off, long session expiry),
  QoS 1 on a shared subscription, so the broker keeps messages while we are down and
  several workers can share the load.
* Manual acknowledgement: :meth:`MqttSource.ack` sends the PUBACKs for a batch after its
  COMMIT, in arrival order. Messages from an earlier connection are never acknowledged
  on a new one (the broker redelivers them; the database absorbs the duplicate).
* Flow control: MQTT 5 Receive Maximum caps the unacknowledged messages the broker may
  send us, so while the database is down memory stays bounded and the broker holds the
  rest in its session queue.
* Reconnect with exponential backoff and full jitter; a watchdog closes a connection that
  has been silent for longer than twice the keep-alive.

paho's socket callbacks are hooked into the event loop (``add_reader``/``add_writer``),
so every callback runs on the loop's thread: no locks, no hidden threads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import select
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from homeward.config import Settings
from homeward.mqtt import BlockReadClient, connect_properties, make_client

log = logging.getLogger(__name__)
# Messages handled per event-loop turn before the loop runs anything else: small, so a
# batch's database round trips are not kept waiting behind a long burst of parsing (512
# gave a p50 publish → commit of 46 ms at 1,000 msg/s on the benchmark machine, 32 gives 32).
_READ_BURST = 32


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as it came off the wire, tagged with the connection it came on."""

    mid: int
    generation: int
    topic: str
    payload: bytes
    retained: bool
    qos: int
    received_at: float  # time.time()
    via: str = ""  # "" for the worker's own connection, else the client id it reclaims


def backoff_s(attempt: int, *, base_s: float = 0.2, cap_s: float = 10.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


@dataclass
class SourceStats:
    connected: bool = False
    subscribed: bool = False  # the broker granted the shared subscription on this connection
    session_present: bool = False
    connects: int = 0
    disconnects: int = 0
    received: int = 0
    acked: int = 0
    no_ack: int = 0  # QoS 0 messages: nothing to acknowledge
    stale_skipped: int = 0
    last_inbound_at: float = 0.0
    first_message_at: float = 0.0  # time.time() of the first message since start
    last_message_at: float = 0.0
    last_error: str | None = None
    taken_over: int = 0  # times the broker gave our session to another client


# CONNACK reason codes that no retry will change: the settings are wrong (MQTT 5 §3.2.2.2).
REFUSED_FOR_GOOD = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})
SESSION_TAKEN_OVER = 0x8E


class MqttSource:
    """Connects, subscribes and hands each message to ``on_message`` on the loop thread."""

    def __init__(
        self,
        settings: Settings,
        on_message: Callable[[Inbound], None],
        *,
        extra_subscriptions: tuple[str, ...] = (),
        on_connected: Callable[[int], None] | None = None,
        subscribe: bool = True,
        via: str = "",
    ) -> None:
        """``subscribe=False`` with ``via`` set: a connection that only drains the session
        of a stopped or crashed peer (its client id is ``settings.mqtt_client_id``)."""
        self._settings = settings
        self._on_message = on_message
        self._on_connected = on_connected
        self._subscriptions = (
            (settings.shared_subscription, *extra_subscriptions) if subscribe else ()
        )
        self._via = via
        self._unsubacks: dict[int, asyncio.Future[bool]] = {}
        self.stats = SourceStats()
        self.generation = 0
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[None] | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self._misc_task: asyncio.Task[None] | None = None
        self._sock: Any = None
        self._reader: Callable[[], None] | None = None
        self.paused = False
        # Set once the first connection attempt has an outcome; ``refused`` says why the
        # broker turned us away for good (bad credentials, not authorised...), if it did.
        self.attempted = asyncio.Event()
        self.refused: str | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self._settings
        client = make_client(s.mqtt, s.mqtt_client_id, manual_ack=True, block_reads=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_suback
        client.on_unsubscribe = self._handle_unsuback
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.connect_timeout = 5.0
        return client

    async def run(self) -> None:
        """Stay connected until :meth:`stop`; reconnect with backoff and jitter."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        attempt = 0
        while not self._stopping:
            try:
                await self._connect_once()
                attempt = 0
                await self._lost.wait()
            except (OSError, ConnectionError, TimeoutError) as exc:
                self.stats.last_error = f"connect failed: {exc}"
                log.warning("MQTT connect to %s failed: %s", self._settings.mqtt.host, exc)
            self.attempted.set()
            if self._stopping:
                break
            delay = backoff_s(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def open(self) -> bool:
        """Connect once (no reconnecting); True when the broker had our session."""
        self._loop = asyncio.get_running_loop()
        self._client = self._make_client()
        await self._connect_once()
        return self.stats.session_present

    async def unsubscribe_shared(self, timeout_s: float = 10.0) -> bool:
        """Leave the share group: the broker hands this session no more of the group's
        messages (those already queued for it still arrive), nor status messages. True
        once the broker confirmed it."""
        client, loop = self._client, self._loop
        if client is None or loop is None or not self.stats.connected:
            return False
        future: asyncio.Future[bool] = loop.create_future()
        # The status subscription too: a session that left would queue every device's
        # status message for as long as it is kept.
        topics = [self._settings.shared_subscription, self._settings.device_topic("+", "status")]
        rc, mid = client.unsubscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return False
        self._unsubacks[mid] = future
        try:
            ok = await asyncio.wait_for(future, timeout=timeout_s)
        except TimeoutError:
            return False
        finally:
            self._unsubacks.pop(mid, None)
        if ok:
            self.stats.subscribed = False
        return ok

    async def _connect_once(self) -> None:
        assert self._client is not None
        assert self._loop is not None
        s = self._settings
        props = connect_properties(
            session_expiry_s=s.mqtt_session_expiry_s, receive_maximum=s.receive_maximum
        )
        self._lost.clear()
        self._connack = self._loop.create_future()
        endpoint = s.mqtt
        rc = self._client.connect(
            endpoint.host,
            endpoint.port,
            keepalive=s.mqtt_keepalive_s,
            clean_start=False,
            properties=props,
        )
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(rc))
        try:
            await asyncio.wait_for(self._connack, timeout=10)
        except TimeoutError:
            self._client.disconnect()
            raise
        finally:
            self.attempted.set()

    async def stop(self) -> None:
        """Disconnect cleanly; the broker keeps our session (and unacked messages)."""
        self._stopping = True
        client = self._client
        if client is not None and self.stats.connected:
            client.disconnect()
            for _ in range(50):
                if not self.stats.connected:
                    break
                await asyncio.sleep(0.02)
        self._lost.set()
        if self._misc_task is not None:
            self._misc_task.cancel()

    def force_reconnect(self, reason: str) -> None:
        """Drop the connection (the watchdog's remedy for a silent, hung socket)."""
        log.error("MQTT connection reset: %s", reason)
        self.stats.last_error = reason
        if self._client is not None:
            self._client.disconnect()

    # ---- flow control ------------------------------------------------------------------

    def pause(self) -> None:
        """Stop reading from the socket: TCP backpressure makes the broker hold messages.

        Receive Maximum alone is not enough (Mosquitto 2.0 sends queued messages beyond it
        after a stall), so ingest also stops reading when its queue is full. A pause longer
        than the keep-alive ends in a reconnect; the broker then redelivers what is not
        acknowledged, and the database absorbs duplicates.
        """
        if not self.paused and self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self._sock is not None and self._loop is not None:
            assert self._reader is not None
            self._loop.add_reader(self._sock, self._reader)
            self._loop.call_soon(self._reader)  # bytes may already be waiting
        self.paused = False

    def publish_feedback(self, device_id: str, payload: bytes) -> None:
        """A message to the patient on their device (QoS 1, not retained)."""
        if self._client is None or not self.stats.connected:
            raise ConnectionError("not connected to the broker")
        topic = self._settings.device_topic(device_id, "feedback")
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(info.rc))

    # ---- acknowledgement ---------------------------------------------------------------

    def ack(self, messages: list[Inbound]) -> int:
        """PUBACK each message of the current connection, in arrival order."""
        client = self._client
        acked = 0
        for message in messages:
            if message.qos == 0:
                continue
            if message.generation != self.generation or not self.stats.connected:
                self.stats.stale_skipped += 1
                continue
            assert client is not None
            client.ack(message.mid, message.qos)
            acked += 1
        self.stats.acked += acked
        return acked

    # ---- paho callbacks (run on the event loop thread) ----------------------------------

    def _handle_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            if reason.value in REFUSED_FOR_GOOD and self.refused is None:
                self.refused = f"{reason} (reason code {reason.value:#x})"
            self._connack.set_exception(ConnectionError(f"broker refused: {reason}"))
            return
        self.generation += 1
        self.stats.connected = True
        self.stats.subscribed = False
        self.stats.session_present = bool(flags.session_present)
        self.stats.connects += 1
        log.info(
            "MQTT connected (session present: %s, generation %d)",
            flags.session_present,
            self.generation,
        )
        # Retain-as-published: a retained publish on a readings topic keeps its flag, so
        # it can be quarantined (readings must never be retained).
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        if self._subscriptions:
            client.subscribe([(topic, options) for topic in self._subscriptions])
        if self._on_connected is not None:
            self._on_connected(self.generation)
        self._connack.set_result(None)

    def _handle_suback(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        # The shared subscription comes first in every SUBSCRIBE this source sends.
        if reasons and not reasons[0].is_failure:
            self.stats.subscribed = True
        elif reasons:
            self.stats.last_error = f"shared subscription refused: {reasons[0]}"
            log.error("broker refused the shared subscription: %s", reasons[0])

    def _handle_unsuback(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any
    ) -> None:
        future = self._unsubacks.get(mid)
        if future is not None and not future.done():
            # 0x11 "no subscription existed" also means the session is no longer a member.
            future.set_result(all(not r.is_failure or r.value == 0x11 for r in reasons))

    def _handle_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if self.stats.connected:
            self.stats.disconnects += 1
            if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
                self.stats.taken_over += 1
                self.stats.last_error = "session taken over by another client with our id"
                log.error(
                    "MQTT session taken over: another client connected with client id %r"
                    " (each process needs its own HOMEWARD_MQTT_CLIENT_ID)",
                    self._settings.mqtt_client_id,
                )
            elif self._stopping:
                log.info("MQTT disconnected: %s", reason)
            else:
                log.warning("MQTT disconnected: %s", reason)
        self.stats.connected = False
        self.stats.subscribed = False
        self._lost.set()

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        self.stats.received += 1
        if msg.qos == 0:
            self.stats.no_ack += 1
        self.stats.last_message_at = now
        if not self.stats.first_message_at:
            self.stats.first_message_at = now
        self._on_message(
            Inbound(
                mid=msg.mid,
                generation=self.generation,
                topic=msg.topic,
                payload=bytes(msg.payload),
                retained=bool(msg.retain),
                qos=msg.qos,
                received_at=now,
                via=self._via,
            )
        )

    def _socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        assert isinstance(client, BlockReadClient)
        loop = self._loop

        def readable() -> None:
            # paho reads one packet per call; keep reading while bytes are waiting so a
            # busy stream costs one event-loop turn per burst, not one per message. The
            # client reads the socket in blocks: ask the socket only when its buffer is
            # empty. A burst cut short by the limit continues on the next loop turn.
            self.stats.last_inbound_at = time.monotonic()
            for _ in range(_READ_BURST):
                if self.paused:
                    return
                if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                    return
                if client.buffered():
                    continue
                pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if not pending_tls and not select.select([sock], [], [], 0)[0]:
                    return
            if client.buffered():
                loop.call_soon(readable)

        self.stats.last_inbound_at = time.monotonic()
        self._sock, self._reader = sock, readable
        if not self.paused:
            self._loop.add_reader(sock, readable)
        self._misc_task = self._loop.create_task(self._misc_loop(client), name="mqtt-misc")

    def _socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None
        if self._misc_task is not None:
            self._misc_task.cancel()

    def _register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _unregister_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    async def _misc_loop(self, client: mqtt.Client) -> None:
        """Keep-alive pings and the silent-socket watchdog."""
        limit_s = 2 * self._settings.mqtt_keepalive_s
        while client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            silent_s = time.monotonic() - self.stats.last_inbound_at
            if self.stats.connected and silent_s > limit_s:
                self.force_reconnect(f"no data from the broker for {silent_s:.0f} s")
            await asyncio.sleep(1)
