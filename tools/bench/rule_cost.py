"""Rule cost: microseconds per reading with 10,000 patients' windows in memory and every
rule kind active, and the memory those windows take (RSS).

Measured in a process of its own (``python -m tools.bench.rule_cost PATIENTS READINGS
REPETITIONS`` prints the figures as JSON), as the service's engine lives in its own: in
the benchmark's process, after the drains, the heap the earlier phases left behind
slowed it by a tenth."""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psutil

from alerts.engine import ManualObservation, PatientSnapshot, RuleEngine
from homeward.heap import restored_afterwards, settle_after_start

CONDITIONS = ("heart_failure", "copd", "hypertension", "type2_diabetes", "post_discharge")
ALL_ON = {"slope:body_weight": {"enabled": True}}
METRICS = {
    "systolic_bp": (110, 190),
    "diastolic_bp": (60, 110),
    "heart_rate": (50, 120),
    "spo2": (86, 99),
    "body_weight": (60, 110),
    "body_temperature": (36, 39),
    "blood_glucose": (3, 14),
}


def measure_rule_cost(
    patients: int = 10_000,
    readings: int = 200_000,
    history_days: int = 28,
    seed: int = 1,
    repetitions: int = 3,
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    engine = RuleEngine()
    for pid in range(patients):
        history = [
            (metric, now - timedelta(days=day), rng.uniform(*span), False, "A")
            for day in range(history_days, 0, -1)
            for metric, span in METRICS.items()
        ]
        engine.load(PatientSnapshot(pid, 0, CONDITIONS, ALL_ON, history, frozenset()))
    gc.collect()
    rss_after = process.memory_info().rss
    with restored_afterwards():
        settle_after_start()  # as the service does once its patients are loaded
        timings = _time_evaluation(engine, rng, patients, readings, repetitions, now)
    rss_mb = (rss_after - rss_before) / 2**20 * 10_000 / patients
    return {"rule_us_per_reading": timings, "rss_mb_per_10k_patients": [rss_mb]}


def _time_evaluation(
    engine: RuleEngine,
    rng: random.Random,
    patients: int,
    readings: int,
    repetitions: int,
    now: datetime,
) -> list[float]:
    names = list(METRICS)
    batch = [
        ManualObservation(
            rng.randrange(patients),
            metric := rng.choice(names),
            now + timedelta(seconds=i),
            rng.uniform(*METRICS[metric]),
            False,
            False,
            "A",
        )
        for i in range(readings)
    ]
    timings = []
    for rep in range(repetitions):
        shifted = [  # each repetition continues in time, as live data would
            ManualObservation(
                r.patient_id, r.metric, r.time + timedelta(days=rep), r.value, False, False, "A"
            )
            for r in batch
        ]
        began = time.perf_counter()
        for start in range(0, readings, 2000):
            engine.evaluate(shifted[start : start + 2000])
        timings.append((time.perf_counter() - began) / readings * 1e6)
    return timings


def rule_cost_in_own_process(patients: int, readings: int, repetitions: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", __name__, str(patients), str(readings), str(repetitions)],
        check=True,
        capture_output=True,
    )
    result: dict[str, Any] = orjson.loads(out.stdout)
    return result


if __name__ == "__main__":
    n_patients, n_readings, n_repetitions = (int(a) for a in sys.argv[1:4])
    figures = measure_rule_cost(patients=n_patients, readings=n_readings, repetitions=n_repetitions)
    sys.stdout.buffer.write(orjson.dumps(figures))
