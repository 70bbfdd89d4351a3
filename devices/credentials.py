"""Device credentials (PBKDF2-SHA512, Mosquitto's ``$7$`` form) and the broker's policy.

Homeward stores only the hash. ``homeward device broker-files`` writes the file that
Mosquitto's dynamic-security plugin loads (:func:`broker_security`): every device is a
client whose username *and client id* are its device id, with a role that lets it
publish only its own ``readings`` and ``status`` and subscribe only to its own
``config`` and ``feedback``; the service accounts (``homeward-*``) come from a file
the operator keeps, never from the device registry.

Why the plugin and not ``acl_file``: Mosquitto 2.0's ``acl_file`` never checks a
SUBSCRIBE — it filters what it delivers instead. A device could join ingest's shared
subscription (granted QoS 1), and every message the broker gave that member was then
withheld from it by the ACL and from ingest by the share: lost. The plugin refuses the
subscription itself (SUBACK 0x87), and pins a client to its client id, so a device
cannot take over ingest's session (or another device's) by connecting with its id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

ITERATIONS = 101  # mosquitto_passwd's default
_SALT_BYTES = 12


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    if not password:
        raise ValueError("a device password must not be empty")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return f"$7${ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, scheme, iterations, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "7":
        return False
    digest = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt_b64), int(iterations)
    )
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


SERVICE_ACCOUNTS = frozenset({"homeward-ingest"})
RESERVED_PREFIX = "homeward-"  # service accounts and the service's client ids


def is_reserved_name(name: str) -> bool:
    """A name kept for Homeward's own accounts and client ids, never a device's."""
    return name.lower().startswith(RESERVED_PREFIX) or name in SERVICE_ACCOUNTS


def _dynsec_password(stored: str) -> dict[str, Any]:
    """A ``$7$`` hash as the plugin keeps it: the same PBKDF2-SHA512, split in fields."""
    _, scheme, iterations, salt_b64, digest_b64 = stored.split("$")
    if scheme != "7":
        raise ValueError(f"not a $7$ (PBKDF2-SHA512) hash: ${scheme}$")
    return {"password": digest_b64, "salt": salt_b64, "iterations": int(iterations)}


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def device_role(topic_root: str, device_id: str) -> dict[str, Any]:
    own = f"{topic_root}/devices/{device_id}"
    return {
        "rolename": f"device:{device_id}",
        "acls": [
            _acl("publishClientSend", f"{own}/readings"),
            _acl("publishClientSend", f"{own}/status"),
            _acl("subscribeLiteral", f"{own}/config"),
            _acl("subscribeLiteral", f"{own}/feedback"),
            _acl("publishClientReceive", f"{own}/config"),
            _acl("publishClientReceive", f"{own}/feedback"),
        ],
    }


def ingest_role(topic_root: str, share_group: str) -> dict[str, Any]:
    every = f"{topic_root}/devices/+"
    readings = f"$share/{share_group}/{every}/readings" if share_group else f"{every}/readings"
    return {
        "rolename": "homeward-ingest",
        "acls": [
            _acl("subscribeLiteral", readings),
            _acl("subscribeLiteral", f"{every}/status"),
            _acl("publishClientReceive", f"{every}/readings"),
            _acl("publishClientReceive", f"{every}/status"),
            _acl("publishClientSend", f"{every}/config"),
            _acl("publishClientSend", f"{every}/feedback"),
        ],
    }


def broker_security(
    topic_root: str,
    share_group: str,
    devices: Iterable[tuple[str, str]],
    services: Iterable[tuple[str, str]],
) -> dict[str, Any]:
    """The dynamic-security plugin's configuration: ``devices`` and ``services`` are
    (name, ``$7$`` hash) pairs. Anything not granted is refused (default deny), the
    plugin's control topic included, so this file stays the whole policy."""
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = [ingest_role(topic_root, share_group)]
    for device_id, stored in devices:
        if is_reserved_name(device_id):
            raise ValueError(f"{device_id!r} is reserved for a service account")
        role = device_role(topic_root, device_id)
        roles.append(role)
        clients.append(
            {
                "username": device_id,
                "clientid": device_id,  # connect as yourself or not at all
                **_dynsec_password(stored),
                "roles": [{"rolename": role["rolename"]}],
            }
        )
    for username, stored in services:
        if username not in SERVICE_ACCOUNTS:
            raise ValueError(
                f"{username!r} is not a service account ({', '.join(sorted(SERVICE_ACCOUNTS))})"
            )
        clients.append(
            {
                "username": username,  # no client id: each ingest worker has its own
                **_dynsec_password(stored),
                "roles": [{"rolename": "homeward-ingest"}],
            }
        )
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }
