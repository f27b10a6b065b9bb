"""The benchmark files' comments state no typed running times: a time comes from
``harness run FILE --dry-run`` (estimated on the machine at hand) or from a run's own record."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.toml"))
DURATION = re.compile(r"\b\d+(?:[.:]\d+)?\s*(?:s|sec|seconds?|min|minutes?|h|hours?)\b|\babout (?:a|an|\w+) "
                      r"(?:minutes?|hours?|seconds?)\b", re.IGNORECASE)


def test_the_pattern_finds_typed_times():
    for text in ("About 3 minutes on 2 cores", "took 54 min with", "in about 10 minutes", "runs in 23 s",
                 "1:30 h"):
        assert DURATION.search(text), text
    for text in ("2 sigmoid layers", "d = 12, s = 3", "seed_by = [\"N\", \"d\"]", "10 repetitions", "max_epochs = 2000"):
        assert not DURATION.search(text), text


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_comments_state_no_running_time(path):
    typed = [line for line in path.read_text(encoding="utf-8").splitlines()
             if "#" in line and DURATION.search(line.split("#", 1)[1])]
    assert not typed, f"{path.name}: a time typed by hand (use --dry-run or a run's record): {typed}"
