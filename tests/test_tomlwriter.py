"""The TOML writer round-trips through tomllib (harness.spec.tomlwriter)."""
import math
import tomllib

from harness.spec.tomlwriter import dumps


def test_round_trip():
    data = {
        "benchmark": {"name": "x", "seed": 1, "ratio": 1.5, "big": 1e300, "flag": True, "text": 'a "q" \\ \n'},
        "experiments": [
            {"id": "a", "w": ["d", 3], "arch": {"name": "fc", "widths": ["d"]},
             "grid": {"N": [1, 2], "a, b": [[1, 2], [3, 4]], "architecture.q": [1]},
             "derived": {"d": "floor(x)"}},
            {"id": "b", "inline": {"k": 1}, "empty": {}},
        ],
    }
    assert tomllib.loads(dumps(data)) == data


def test_special_floats_and_none():
    out = tomllib.loads(dumps({"t": {"a": math.inf, "b": -math.inf, "c": None}}))
    assert out["t"]["a"] == math.inf and out["t"]["b"] == -math.inf and "c" not in out["t"]
    assert math.isnan(tomllib.loads(dumps({"t": {"n": math.nan}}))["t"]["n"])
