"""A posted FHIR Observation → the v1 reading message it says (pure, no I/O).

Shaped as the HL7 Personal Health Device guide posts them: ``identifier`` is the
device's own key for the measurement (it becomes ``msg_id``, the de-duplication key),
``device`` references the device that measured it, ``effectiveDateTime`` is when, the
LOINC code says what and ``valueQuantity`` (or, for blood pressure, the systolic and
diastolic ``component``\\ s) the value in UCUM. The v1 message then takes the same path
as one from MQTT: the parser decides units, ranges and quarantine, so an unknown code
or unit is refused exactly as it would be over MQTT.
"""

from __future__ import annotations

from typing import Any

import orjson

from api.fhir.codes import BLOOD_PRESSURE, BP_COMPONENTS, LOINC, code_for_token
from homeward.metrics import CATALOGUE

ACCEPTED_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})


class NotAnObservation(ValueError):
    """What the body lacks to be read as a reading; the body is quarantined as sent."""


def _unknown(code: Any) -> str:
    """A metric name for a code Homeward does not record (``loinc_2160_0``)."""
    return "loinc_" + "".join(c if c.isalnum() else "_" for c in str(code))[:40]


def _metric(concept: Any) -> str:
    """The metric (or ``blood_pressure``) a CodeableConcept names, by LOINC first."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list) or not codings:
        raise NotAnObservation("code.coding is required (a LOINC code)")
    for coding in codings:
        if isinstance(coding, dict) and coding.get("system") == LOINC:
            kind = code_for_token(f"{LOINC}|{coding.get('code')}")
            if kind is not None:
                return kind
            return _unknown(coding.get("code"))  # the parser quarantines it: unknown_metric
    first = codings[0] if isinstance(codings[0], dict) else {}
    kind = code_for_token(f"{first.get('system')}|{first.get('code')}")
    return kind or _unknown(first.get("code"))


_COMPONENTS = {CATALOGUE[m].loinc: m for m in BP_COMPONENTS}


def _component_metric(concept: Any) -> str | None:
    """Systolic or diastolic, by its LOINC code; another component is not recorded."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict) and coding.get("system") == LOINC:
            return _COMPONENTS.get(str(coding.get("code")))
    return None


def _reading(metric: str, quantity: Any) -> dict[str, Any]:
    if not isinstance(quantity, dict) or "value" not in quantity:
        raise NotAnObservation(f"{metric}: valueQuantity with a value is required")
    return {"metric": metric, "value": quantity["value"], "unit": quantity.get("code")}


def observation_message(resource: Any, device_id: str) -> dict[str, Any]:
    """The v1 message of ``resource`` posted by ``device_id`` (authenticated)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise NotAnObservation("the body is not an Observation")
    if resource.get("status") not in ACCEPTED_STATUS:
        raise NotAnObservation(f"status must be one of {', '.join(sorted(ACCEPTED_STATUS))}")
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list) or not identifiers or not isinstance(identifiers[0], dict):
        raise NotAnObservation("identifier is required: the device's key for this measurement")
    msg_id = identifiers[0].get("value")
    device = (resource.get("device") or {}).get("reference")
    if device is not None and device != f"Device/{device_id}":
        raise PermissionError(f"device {device!r} is not the device that posts it")
    when = resource.get("effectiveDateTime")
    kind = _metric(resource.get("code"))
    if kind == BLOOD_PRESSURE:
        components = resource.get("component")
        if not isinstance(components, list):
            raise NotAnObservation(
                "a blood pressure panel carries systolic and diastolic components"
            )
        readings = []
        for component in components:
            if not isinstance(component, dict):
                raise NotAnObservation("a component is an object")
            metric = _component_metric(component.get("code"))
            if metric is None:
                continue  # another component (e.g. a mean pressure) is not recorded
            if "valueQuantity" in component:
                readings.append(_reading(metric, component["valueQuantity"]))
    else:
        readings = [_reading(kind, resource.get("valueQuantity"))]
    message: dict[str, Any] = {"msg_id": msg_id, "measured_at": when, "readings": readings}
    subject = (resource.get("subject") or {}).get("reference")
    if isinstance(subject, str) and subject.startswith("Patient/"):
        message["patient_id"] = subject.removeprefix("Patient/")  # checked against the binding
    return message


def observation_body(body: bytes, device_id: str) -> bytes:
    """The v1 message bytes of a posted Observation; ``NotAnObservation`` if it is none."""
    try:
        resource = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotAnObservation(f"not JSON: {exc}") from exc
    return orjson.dumps(observation_message(resource, device_id))
