"""The fleet simulator: deterministic, valid by the contract, deteriorating as scripted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.payload import parse_reading_message
from homeward.domain import DeviceMessage, Rejection
from homeward.metrics import CATALOGUE
from homeward.nhs import is_valid_nhs_number
from tools.simulator.fleet import Simulator, generate_fleet

START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def parse(device_id: str, payload: bytes, now: datetime) -> DeviceMessage | Rejection:
    return parse_reading_message(
        f"homeward/v1/devices/{device_id}/readings", payload, retained=False, now=now
    )


def test_fleet_is_deterministic_valid_and_fictional() -> None:
    fleet = generate_fleet(200, seed=7)
    assert fleet == generate_fleet(200, seed=7)
    assert all(is_valid_nhs_number(p.nhs_number) for p in fleet)
    assert all(p.nhs_number.startswith("999") for p in fleet)
    assert len({p.nhs_number for p in fleet}) == 200
    devices = [d.device_id for p in fleet for d in p.devices]
    assert len(devices) == len(set(devices))
    assert all("(fictional)" in p.name for p in fleet)
    assert {p.team for p in fleet} == {
        "deal",
        "dover",
        "folkestone",
        "romney-marsh",
        "broadstairs",
        "margate",
        "ramsgate",
    }


def test_devices_follow_conditions() -> None:
    for patient in generate_fleet(100, wearables=True):
        kinds = {d.kind for d in patient.devices}
        assert "bp_cuff" in kinds
        assert "wearable" in kinds
        if "heart_failure" in patient.conditions:
            assert {"scales", "pulse_oximeter"} <= kinds
        if "type2_diabetes" in patient.conditions:
            assert "glucose_meter" in kinds


def test_every_good_message_is_accepted_and_every_bad_one_rejected() -> None:
    fleet = generate_fleet(60, seed=3, wearables=True)
    sim = Simulator(fleet, start=START, bad_rate=0.2, non_canonical_rate=0.5, seed=3)
    good = bad = 0
    for minute in range(5):
        at = START + timedelta(minutes=minute)
        for message in [*sim.spot_round(at), *sim.wearable_tick(at)]:
            parsed = parse(message.device_id, message.payload, at)
            if message.kind == "good":
                assert isinstance(parsed, DeviceMessage), parsed
                assert len(parsed.readings) == message.readings
                for reading in parsed.readings:
                    assert reading.unit == CATALOGUE[reading.metric].unit
                good += 1
            else:
                assert isinstance(parsed, Rejection), message.kind
                bad += 1
    assert good > 0
    assert 0.1 < bad / (good + bad) < 0.3


def test_history_is_late_and_one_per_day() -> None:
    fleet = generate_fleet(5, seed=1)
    sim = Simulator(fleet, start=START, bad_rate=0)
    history = list(sim.history(START, days=14))
    spot_devices = sum(1 for p in fleet for d in p.devices if d.kind != "wearable")
    assert len(history) == 14 * spot_devices
    assert max(m.measured_at for m in history) <= START - timedelta(days=1)


def test_scripted_deteriorations_cross_the_thresholds() -> None:
    fleet = generate_fleet(400, seed=11, deteriorating=1.0)
    sim = Simulator(fleet, start=START, day_s=60, deteriorate_after_s=90, bad_rate=0)
    before = START + timedelta(seconds=30)
    after = START + timedelta(seconds=90 + 4 * 60)
    for patient in fleet:
        early, late = sim.values(patient, before), sim.values(patient, after)
        assert sim.severity(patient, before) == 0
        assert sim.severity(patient, after) == 1
        if "hypertension" in patient.conditions:
            assert late["systolic_bp"] >= 180
        if "type2_diabetes" in patient.conditions:
            assert late["blood_glucose"] < 3.0
        if "copd" in patient.conditions:
            assert late["spo2"] < 88
            assert late["body_temperature"] > 38.0
        if "heart_failure" in patient.conditions:
            assert late["body_weight"] - early["body_weight"] > 2.0


def test_patients_who_do_not_deteriorate_stay_near_baseline() -> None:
    fleet = generate_fleet(50, seed=5, deteriorating=0.0)
    sim = Simulator(fleet, start=START, bad_rate=0)
    for patient in fleet:
        v = sim.values(patient, START + timedelta(days=3))
        assert v["systolic_bp"] < 180
        assert v["blood_glucose"] > 3.0
