"""Device credentials in Mosquitto's PBKDF2-SHA512 form, and the generated ACL."""

from __future__ import annotations

import pytest

from devices.credentials import acl_text, hash_password, verify_password


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


def test_acl_lets_a_device_write_only_under_its_own_id() -> None:
    acl = acl_text("homeward/v1")
    assert "pattern write homeward/v1/devices/%u/readings" in acl
    assert "pattern write homeward/v1/devices/+/readings" not in acl
    assert "topic read homeward/v1/devices/+/readings" in acl  # the ingest user only
