"""Device credentials in Mosquitto's PBKDF2-SHA512 form, and the broker's policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.credentials import broker_security, hash_password, is_reserved_name, verify_password


def test_hash_is_mosquitto_format_and_verifies() -> None:
    stored = hash_password("correct horse")
    scheme, iterations = stored.split("$")[1:3]
    assert (scheme, iterations) == ("7", "101")
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert not verify_password("correct horse", "not-a-hash")
    assert hash_password("x", salt=b"0" * 12) == hash_password("x", salt=b"0" * 12)


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_policy_gives_each_device_only_its_own_topics() -> None:
    doc = broker_security(
        "homeward/v1",
        "ingest",
        [("bp-1", hash_password("a"))],
        [("homeward-ingest", hash_password("b"))],
    )
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {r["rolename"]: {(a["acltype"], a["topic"]) for a in r["acls"]} for r in doc["roles"]}
    assert roles["device:bp-1"] == {
        ("publishClientSend", "homeward/v1/devices/bp-1/readings"),
        ("publishClientSend", "homeward/v1/devices/bp-1/status"),
        ("subscribeLiteral", "homeward/v1/devices/bp-1/config"),
        ("subscribeLiteral", "homeward/v1/devices/bp-1/feedback"),
        ("publishClientReceive", "homeward/v1/devices/bp-1/config"),
        ("publishClientReceive", "homeward/v1/devices/bp-1/feedback"),
    }
    assert ("subscribeLiteral", "$share/ingest/homeward/v1/devices/+/readings") in roles[
        "homeward-ingest"
    ]
    device, service = doc["clients"]
    assert device["clientid"] == "bp-1"
    assert "clientid" not in service
    assert device["iterations"] == 101


@pytest.mark.parametrize("name", ["homeward-ingest", "Homeward-Ingest", "homeward-ingest-2"])
def test_service_names_are_reserved(name: str) -> None:
    assert is_reserved_name(name)
    with pytest.raises(ValueError, match="reserved"):
        broker_security("r", "g", [(name, hash_password("x"))], [])


def test_only_service_accounts_come_from_the_services_file() -> None:
    with pytest.raises(ValueError, match="not a service account"):
        broker_security("r", "g", [], [("bp-1", hash_password("x"))])


def test_the_deployed_broker_loads_what_broker_files_writes() -> None:
    conf = (Path(__file__).parents[2] / "deploy/mosquitto/mosquitto.conf").read_text()
    lines = [line.split("#")[0].strip() for line in conf.splitlines()]
    assert "allow_anonymous false" in lines
    assert "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so" in lines
    assert "plugin_opt_config_file /etc/mosquitto/homeward/dynamic-security.json" in lines
    assert not any(line.startswith(("acl_file", "password_file")) for line in lines)


@pytest.mark.parametrize(
    ("group", "subscription"),
    [("ingest", "$share/ingest/hw/v1/devices/+/readings"), ("", "hw/v1/devices/+/readings")],
)
def test_ingest_may_subscribe_to_the_readings_as_its_settings_say(
    group: str, subscription: str
) -> None:
    """With no share group ingest subscribes plainly (it survives a broker restart)."""
    policy = broker_security("hw/v1", group, [], [])
    [role] = policy["roles"]
    subscribes = [a["topic"] for a in role["acls"] if a["acltype"] == "subscribeLiteral"]
    assert subscribes == [subscription, "hw/v1/devices/+/status"]
