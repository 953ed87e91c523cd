"""The sweep profile's phase timers (experiments.tracking.timing), on a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from experiments.tracking import timing


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[float]:
    """Timing on, into tmp_path/t.jsonl, with a clock the test moves (wall = CPU)."""
    now = [0.0]
    fake = SimpleNamespace(perf_counter=lambda: now[0], process_time=lambda: now[0])
    monkeypatch.setattr(timing, "time", fake)
    monkeypatch.setattr(timing, "FILE", str(tmp_path / "t.jsonl"))
    return now


def test_a_nested_phase_counts_to_itself_only(clock: list[float]) -> None:
    phases = timing.Phases()
    with phases("tracking"):
        clock[0] += 1  # 1 s of tracking
        with phases("steps"):
            clock[0] += 3  # 3 s of steps inside it
        clock[0] += 2  # 2 more of tracking
    assert phases.seconds == {"tracking": [3.0, 3.0], "steps": [3.0, 3.0]}


def test_a_timed_function_adds_up_over_calls(clock: list[float]) -> None:
    phases = timing.Phases()

    def step() -> str:
        clock[0] += 0.5
        return "done"

    timed = phases.timed("steps", step)
    assert [timed(), timed()] == ["done", "done"]
    assert phases.seconds == {"steps": [1.0, 1.0]}


def test_save_appends_one_line_per_run_and_starts_afresh(clock: list[float]) -> None:
    phases = timing.Phases()
    for seconds in (2.0, 5.0):
        with phases("steps"):
            clock[0] += seconds
        phases.save("run")
    lines = [json.loads(line) for line in Path(timing.FILE).read_text().splitlines()]
    assert [line["phases"] for line in lines] == [{"steps": [2.0, 2.0]}, {"steps": [5.0, 5.0]}]
    assert {line["role"] for line in lines} == {"run"}


def test_off_it_records_and_writes_nothing(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timing, "FILE", "")
    phases = timing.Phases()
    with phases("steps"):
        clock[0] += 1
    phases.save("run")
    assert phases.seconds == {}
