"""Publishing simulated messages over MQTT (QoS 1) with bounded in-flight messages.

paho-mqtt loses QoS 1 messages silently when a publisher queues more than about 65,000
unacknowledged ones; this publisher never has more than ``window`` outstanding. It runs
as a hub would: one connection publishing for many devices. Real devices each connect
with their own credentials, and the broker ACL (username = device id) lets each publish
only under its own id.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from homeward.config import Settings
from homeward.mqtt import make_client
from tools.simulator.fleet import SimMessage


@dataclass
class PublishStats:
    published: int = 0
    acknowledged: int = 0
    bad: int = 0
    readings: int = 0


class FleetPublisher:
    def __init__(self, settings: Settings, *, window: int = 1000, client_id: str = "") -> None:
        self._settings = settings
        self._window = window
        self._client_id = client_id
        self._client: mqtt.Client | None = None
        self._outstanding: deque[mqtt.MQTTMessageInfo] = deque()
        self.stats = PublishStats()

    def start(self) -> None:
        endpoint = self._settings.mqtt
        client = make_client(endpoint, self._client_id)
        client.max_inflight_messages_set(self._window)
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        self._client = client

    def close(self) -> None:
        self.flush()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def __enter__(self) -> FleetPublisher:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def publish(self, message: SimMessage, *, timeout_s: float = 30.0) -> None:
        assert self._client is not None, "start() first"
        topic = self._settings.readings_topic(message.device_id)
        self._outstanding.append(self._client.publish(topic, message.payload, qos=1))
        self.stats.published += 1
        self.stats.readings += message.readings
        self.stats.bad += message.kind != "good"
        while len(self._outstanding) >= self._window:
            self._outstanding.popleft().wait_for_publish(timeout_s)
            self.stats.acknowledged += 1

    def publish_status(self, device_id: str, status: str) -> None:
        assert self._client is not None, "start() first"
        topic = self._settings.device_topic(device_id, "status")
        self._client.publish(topic, status.encode(), qos=1, retain=True).wait_for_publish(10)

    def flush(self, timeout_s: float = 30.0) -> None:
        while self._outstanding:
            self._outstanding.popleft().wait_for_publish(timeout_s)
            self.stats.acknowledged += 1

    def publish_paced(self, messages: Iterable[SimMessage], rate_per_s: float | None) -> None:
        """Publish at ``rate_per_s`` messages per second (``None``: as fast as acknowledged)."""
        began = time.perf_counter()
        for sent, message in enumerate(messages):
            if rate_per_s:
                delay = began + sent / rate_per_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.publish(message)
