"""Fleet simulator: synthetic patients, their home devices and the messages they send.

Pure generation (seeded, clock injected) — the demo, the tests and the benchmark use it.
Names are fictional and NHS numbers come from the 999 range, which is never issued.

* Every patient has a BP cuff; heart failure adds scales and a pulse oximeter; COPD a
  pulse oximeter (some on oxygen) and a thermometer; diabetes a glucose meter; optional
  1 Hz wearables (heart rate and SpO2).
* Spot readings repeat every ``day_s`` seconds (a simulated day: 60 s in the demo).
* A fraction of patients deteriorate from ``deteriorate_after_s``: heart failure gains
  weight (+0.8 kg a simulated day) and desaturates, COPD desaturates below 88% with a
  fever, hypertension reaches systolic ≥ 180 mmHg, diabetes drops below 3.0 mmol/L.
* ``history`` produces the previous weeks of daily readings (sent late, stored as
  history) so trend baselines exist from the start.
* A configurable share of payloads is deliberately bad, to exercise quarantine.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from homeward.nhs import check_digit

TEAMS = ("deal", "dover", "folkestone", "romney-marsh", "broadstairs", "margate", "ramsgate")
CONDITIONS = ("heart_failure", "copd", "hypertension", "type2_diabetes")
_GIVEN = ("Alex", "Sam", "Jo", "Robin", "Morgan", "Casey", "Jamie", "Charlie", "Frankie", "Ali")
_FAMILY = ("Testwell", "Samplesby", "Demoford", "Mockridge", "Fictionley", "Placeholt")
BAD_KINDS = ("malformed", "unknown_unit", "unknown_metric", "impossible", "no_msg_id", "no_zone")


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    kind: str  # bp_cuff, scales, pulse_oximeter, thermometer, glucose_meter, wearable


@dataclass(frozen=True, slots=True)
class SimPatient:
    index: int
    nhs_number: str
    name: str
    team: str
    conditions: tuple[str, ...]
    devices: tuple[SimDevice, ...]
    baseline: dict[str, float]
    on_oxygen: bool
    deteriorates: bool


@dataclass(frozen=True, slots=True)
class SimMessage:
    device_id: str
    payload: bytes
    msg_id: str
    measured_at: datetime
    readings: int
    kind: str = "good"  # or the bad kind


def nhs_numbers(count: int, start: int = 999_000_000) -> Iterator[str]:
    base = start
    made = 0
    while made < count:
        digit = check_digit(str(base))
        if digit is not None:
            yield f"{base}{digit}"
            made += 1
        base += 1


def generate_fleet(
    patients: int, *, seed: int = 1, wearables: bool = False, deteriorating: float = 0.15
) -> list[SimPatient]:
    rng = random.Random(seed)
    fleet = []
    for i, nhs in enumerate(nhs_numbers(patients)):
        first = rng.choice(CONDITIONS)
        conditions = {first}
        if rng.random() < 0.3:
            conditions.add(rng.choice(CONDITIONS))
        kinds = ["bp_cuff"]
        if "heart_failure" in conditions:
            kinds += ["scales", "pulse_oximeter"]
        if "copd" in conditions:
            kinds += ["pulse_oximeter", "thermometer"]
        if "type2_diabetes" in conditions:
            kinds.append("glucose_meter")
        if wearables:
            kinds.append("wearable")
        prefix = {
            "bp_cuff": "bp",
            "scales": "sc",
            "pulse_oximeter": "ox",
            "thermometer": "th",
            "glucose_meter": "gl",
            "wearable": "wr",
        }
        devices = tuple(SimDevice(f"{prefix[k]}-{i:05d}", k) for k in dict.fromkeys(kinds))
        hypertensive = "hypertension" in conditions
        baseline = {
            "systolic_bp": rng.uniform(135, 150) if hypertensive else rng.uniform(115, 132),
            "diastolic_bp": rng.uniform(82, 92) if hypertensive else rng.uniform(70, 82),
            "heart_rate": rng.uniform(62, 84),
            "spo2": rng.uniform(89, 92) if "copd" in conditions else rng.uniform(95, 98),
            "body_weight": rng.uniform(60, 105),
            "body_temperature": rng.uniform(36.3, 36.9),
            "blood_glucose": rng.uniform(5.5, 8.5),
        }
        fleet.append(
            SimPatient(
                index=i,
                nhs_number=nhs,
                name=f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}-{i:04d} (fictional)",
                team=TEAMS[i % len(TEAMS)],
                conditions=tuple(sorted(conditions)),
                devices=devices,
                baseline=baseline,
                on_oxygen="copd" in conditions and rng.random() < 0.3,
                deteriorates=rng.random() < deteriorating,
            )
        )
    return fleet


@dataclass
class Simulator:
    """Turns a fleet into messages. Deterministic for a seed and a start time."""

    fleet: list[SimPatient]
    start: datetime
    day_s: float = 60.0
    deteriorate_after_s: float = 90.0
    bad_rate: float = 0.005
    non_canonical_rate: float = 0.1
    seed: int = 1
    _rng: random.Random = field(init=False)
    _seq: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def severity(self, patient: SimPatient, at: datetime) -> float:
        """0 before the scripted deterioration, rising to 1 over three simulated days."""
        if not patient.deteriorates:
            return 0.0
        elapsed = (at - self.start).total_seconds() - self.deteriorate_after_s
        return max(0.0, min(1.0, elapsed / (3 * self.day_s)))

    def values(self, patient: SimPatient, at: datetime) -> dict[str, float]:
        b, s, rng = patient.baseline, self.severity(patient, at), self._rng
        days = (
            max(0.0, ((at - self.start).total_seconds() - self.deteriorate_after_s) / self.day_s)
            if s
            else 0.0
        )
        v = {
            "systolic_bp": b["systolic_bp"] + rng.gauss(0, 5),
            "diastolic_bp": b["diastolic_bp"] + rng.gauss(0, 3),
            "heart_rate": b["heart_rate"] + rng.gauss(0, 4),
            "spo2": min(100.0, b["spo2"] + rng.gauss(0, 0.8)),
            "body_weight": b["body_weight"] + rng.gauss(0, 0.25),
            "body_temperature": b["body_temperature"] + rng.gauss(0, 0.15),
            "blood_glucose": max(2.0, b["blood_glucose"] + rng.gauss(0, 0.6)),
        }
        c = patient.conditions
        if s:
            if "heart_failure" in c:
                v["body_weight"] += 0.8 * min(days, 4.0)
                v["spo2"] -= 4 * s
                v["heart_rate"] += 20 * s
            if "copd" in c:
                v["spo2"] = min(v["spo2"], 86.0 - 2 * s)
                v["body_temperature"] = 38.0 + 0.9 * s
                v["heart_rate"] += 25 * s
            if "hypertension" in c:
                v["systolic_bp"] = 182 + 10 * s
                v["diastolic_bp"] = 100 + 8 * s
            if "type2_diabetes" in c:
                v["blood_glucose"] = 2.8 - 0.3 * s
        return v

    def _message(self, device: SimDevice, patient: SimPatient, at: datetime) -> SimMessage:
        seq = self._seq.get(device.device_id, 0) + 1
        self._seq[device.device_id] = seq
        msg_id = f"{device.device_id}-{int(at.timestamp())}-{seq}"
        v = self.values(patient, at)
        readings = self._readings(device.kind, v)
        doc: dict[str, Any] = {
            "msg_id": msg_id,
            "measured_at": at.isoformat(timespec="seconds"),
            "device_seq": seq,
            "readings": readings,
            "battery": round(max(5.0, 100 - seq * 0.05), 1),
        }
        if device.kind in ("pulse_oximeter", "wearable"):
            doc["context"] = {"on_oxygen": patient.on_oxygen, "consciousness": "A"}
        if self.bad_rate and self._rng.random() < self.bad_rate:
            kind = self._rng.choice(BAD_KINDS)
            return SimMessage(device.device_id, _spoil(doc, kind), msg_id, at, 0, kind)
        return SimMessage(device.device_id, orjson.dumps(doc), msg_id, at, len(readings))

    def _readings(self, kind: str, v: dict[str, float]) -> list[dict[str, Any]]:
        odd = self._rng.random() < self.non_canonical_rate

        def r(metric: str, value: float, unit: str, digits: int = 0) -> dict[str, Any]:
            return {
                "metric": metric,
                "value": round(value, digits) if digits else round(value),
                "unit": unit,
            }

        if kind == "bp_cuff":
            return [
                r("systolic_bp", v["systolic_bp"], "mm[Hg]"),
                r("diastolic_bp", v["diastolic_bp"], "mm[Hg]"),
                r("heart_rate", v["heart_rate"], "/min"),
            ]
        if kind == "scales":
            if odd:
                return [r("body_weight", v["body_weight"] / 0.45359237, "[lb_av]", 1)]
            return [r("body_weight", v["body_weight"], "kg", 1)]
        if kind in ("pulse_oximeter", "wearable"):
            return [r("spo2", v["spo2"], "%"), r("heart_rate", v["heart_rate"], "/min")]
        if kind == "thermometer":
            if odd:
                return [r("body_temperature", v["body_temperature"] * 9 / 5 + 32, "[degF]", 1)]
            return [r("body_temperature", v["body_temperature"], "Cel", 1)]
        if odd:
            return [r("blood_glucose", v["blood_glucose"] * 18.0, "mg/dL")]
        return [r("blood_glucose", v["blood_glucose"], "mmol/L", 1)]

    def history(self, now: datetime, days: int = 14) -> Iterator[SimMessage]:
        """One spot reading per device per real day before ``now`` (sent late)."""
        for day in range(days, 0, -1):
            at = now - timedelta(days=day)
            for patient in self.fleet:
                for device in patient.devices:
                    if device.kind != "wearable":
                        yield self._message(device, patient, at)

    def spot_round(self, at: datetime) -> Iterator[SimMessage]:
        """Every spot device of every patient, once (one simulated day)."""
        for patient in self.fleet:
            for device in patient.devices:
                if device.kind != "wearable":
                    yield self._message(device, patient, at)

    def wearable_tick(self, at: datetime) -> Iterator[SimMessage]:
        for patient in self.fleet:
            for device in patient.devices:
                if device.kind == "wearable":
                    yield self._message(device, patient, at)


def _spoil(doc: dict[str, Any], kind: str) -> bytes:
    bad = dict(doc)
    if kind == "malformed":
        return orjson.dumps(bad)[:-5]
    if kind == "unknown_unit":
        bad["readings"] = [{**bad["readings"][0], "unit": "furlongs"}]
    elif kind == "unknown_metric":
        bad["readings"] = [{"metric": "mood", "value": 7, "unit": "1"}]
    elif kind == "impossible":
        bad["readings"] = [{**bad["readings"][0], "value": -999}]
    elif kind == "no_msg_id":
        del bad["msg_id"]
    elif kind == "no_zone":
        bad["measured_at"] = bad["measured_at"][:19]
    return orjson.dumps(bad)
