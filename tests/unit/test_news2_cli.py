"""``homeward news2``: JSON lines in, JSON lines out; bad lines on stderr, exit status 1."""

from __future__ import annotations

import json

from click.testing import CliRunner

from commands.news2_cmd import news2

FULL = (
    '{"respiratory_rate": 22, "spo2": 91, "on_oxygen": false, "systolic_bp": 105,'
    ' "heart_rate": 115, "consciousness": "A", "body_temperature": 38.5}'
)
# RR 22 → 2, SpO2 91 (scale 1) → 3, air → 0, SBP 105 → 1, pulse 115 → 2, A → 0, 38.5 → 1
FULL_OUT = (
    '{"score":9,"band":"high","single_parameter_3":true,"partial":false,"missing":[],'
    '"points":{"respiratory_rate":2,"spo2":3,"on_oxygen":0,"systolic_bp":1,"heart_rate":2,'
    '"consciousness":0,"body_temperature":1}}'
)


def run(stdin: str | bytes) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(news2, input=stdin)
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_each_line_in_gives_one_compact_json_line_out() -> None:
    code, out, err = run(
        f"{FULL}\n"
        "\n"  # blank lines are skipped
        '{"spo2": 95, "spo2_scale": 2, "on_oxygen": true}\n'
        "   \n"
        '{"heart_rate": 35, "consciousness": null}\n'
    )
    assert (code, err) == (0, "")
    assert out[0] == FULL_OUT
    assert [json.loads(line) for line in out[1:]] == [
        {
            "score": 4,
            "band": "low",
            "single_parameter_3": False,
            "partial": True,
            "missing": [
                "respiratory_rate",
                "systolic_bp",
                "heart_rate",
                "consciousness",
                "body_temperature",
            ],
            "points": {"spo2": 2, "on_oxygen": 2},
        },
        {
            "score": 3,
            "band": "low-medium",
            "single_parameter_3": True,
            "partial": True,
            "missing": [
                "respiratory_rate",
                "spo2",
                "on_oxygen",
                "systolic_bp",
                "consciousness",
                "body_temperature",
            ],
            "points": {"heart_rate": 3},
        },
    ]


def test_a_bad_line_goes_to_stderr_with_its_number_and_the_rest_are_still_scored() -> None:
    code, out, err = run(
        f"{FULL}\n"
        "not json\n"
        '{"pulse": 80}\n'
        "\n"
        '{"heart_rate": "80"}\n'
        '{"heart_rate": -1}\n'
        f"{FULL}\n"
    )
    assert code == 1
    assert out == [FULL_OUT, FULL_OUT]
    errors = err.splitlines()
    assert len(errors) == 4
    assert errors[0].startswith("line 2: not valid JSON")
    assert errors[1].startswith("line 3: unknown key pulse")
    assert errors[2].startswith("line 5: heart_rate must be a number")
    assert errors[3].startswith("line 6: heart_rate must be a finite, non-negative number")


def test_a_line_that_is_not_an_object_or_not_utf8_is_an_error_not_a_crash() -> None:
    code, out, err = run(b'[1, 2]\n{"spo2": "\xff"}\n{"heart_rate": 80}\n')
    assert code == 1
    assert len(out) == 1
    assert json.loads(out[0])["points"] == {"heart_rate": 0}
    assert [line.split(":")[0] for line in err.splitlines()] == ["line 1", "line 2"]


def test_empty_input_prints_nothing_and_succeeds() -> None:
    assert run("") == (0, [], "")
    assert run("\n\n") == (0, [], "")
