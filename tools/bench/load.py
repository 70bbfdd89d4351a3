"""Steady-load publisher, run as its own process so it does not share the service's GIL.

``python -m tools.bench.load MQTT_URL TOPIC_ROOT RATE DURATION_S DEVICE_PREFIX COUNT``
publishes ``RATE`` messages per second, each with ``measured_at`` set to the moment of
publishing (microseconds), so the service can measure publish → commit latency.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt

from homeward.config import MqttEndpoint
from homeward.mqtt import make_client


def main(argv: list[str]) -> int:
    url, root, rate_s, duration_s, prefix, devices_s = argv
    rate, duration, devices = float(rate_s), float(duration_s), int(devices_s)
    endpoint = MqttEndpoint.from_url(url)
    client = make_client(endpoint)
    client.max_inflight_messages_set(1000)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    interval = 1.0 / rate
    began = time.perf_counter()
    sent = 0
    infos: list[mqtt.MQTTMessageInfo] = []
    while (now := time.perf_counter()) - began < duration:
        due = int((now - began) / interval) + 1
        while sent < due:
            device = f"{prefix}{sent % devices:05d}"
            doc = {
                "msg_id": f"l{sent}",
                "measured_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "device_seq": sent // devices,
                "readings": [
                    # one message in 20 is severe hypertension: it raises or updates an alert
                    {
                        "metric": "systolic_bp",
                        "value": 185 if sent % 20 == 0 else 120,
                        "unit": "mm[Hg]",
                    },
                    {"metric": "diastolic_bp", "value": 80, "unit": "mm[Hg]"},
                ],
            }
            topic = f"{root}/devices/{device}/readings"
            infos.append(client.publish(topic, orjson.dumps(doc), qos=1))
            sent += 1
            if len(infos) >= 1000:  # bound what is unacknowledged (paho loses past ~65k)
                for info in infos:
                    info.wait_for_publish(30)
                infos.clear()
        time.sleep(min(interval, 0.002))
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
    print(sent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
