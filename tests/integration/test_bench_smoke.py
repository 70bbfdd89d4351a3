"""A seconds-long version of the benchmark so it cannot rot (the real one: make bench)."""

from __future__ import annotations

from homeward.config import Settings
from tools.bench.report import TARGETS
from tools.bench.run import BenchParams, run_benchmark


def test_benchmark_smoke(pg_url: str) -> None:
    params = BenchParams(
        messages=400,
        patients=40,
        naive_messages=50,
        repetitions=1,
        load_rate=100,
        load_duration_s=2,
        api_duration_s=0.5,
    )
    result = run_benchmark(Settings(_env_file=None, database_url=pg_url), params)
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    for key, *_ in TARGETS:
        assert key in result
        assert f"{key}_min" in result
        assert f"{key}_max" in result
    assert result["drain_readings_per_s"] > 0
    assert result["latency_commit_p99_ms"] is not None
    assert result["alert_notifications"] > 0  # the team's stream was heard
    assert result["latency_alert_p99_ms"] is not None
    assert result["rule_us_per_reading"] > 0
    assert result["api_history_readings"] > 0
    assert result["api_patient_7d_p99_ms"] is not None
    assert result["api_queue_p99_ms"] is not None
    assert result["api_fhir_7d_p99_ms"] is not None
    assert result["api_fhir_ratio_raw"] > 0
    assert [s["workers"] for s in result["scale_out"]] == [1, 2]
    assert all(s["duplicate_open_alerts"] == 0 for s in result["scale_out"])
    # two workers raise exactly the alerts of one (the shared rule state)
    assert result["scale_out_alerts"]["alerts"] > 0
    assert result["scale_out_alerts"]["missing_alerts"] == 0
    assert result["scale_out_alerts"]["extra_alerts"] == 0
    assert [d["stopped_with"] for d in result["scale_down"]] == ["SIGTERM", "SIGKILL"]
    assert all(d["lost"] == 0 and d["expected"] > 0 for d in result["scale_down"])
