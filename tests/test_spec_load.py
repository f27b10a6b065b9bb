"""harness.spec.load: what is read as a benchmark file (a regular file of bounded size; never a
FIFO or a device, which would block or grow), and integer literals too long to read."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec import load_spec, parse_spec
from harness.spec.load import MAX_SPEC_BYTES

USES_SPEC_COMPONENTS = True  # the registry fixture: installed plugins + tests/spec_components.py

HARNESS = str(Path(sys.executable).with_name("harness"))

BASE = """
[benchmark]
name = "t"
seed = 7

[[experiments]]
id = "e"
experiment = "probe"
N = 10
"""


def test_a_fifo_and_a_device_are_refused_without_blocking(tmp_path, registry):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match="spec.toml: not a regular file"):
        load_spec(fifo, registry=registry)  # no writer: opening it would block for ever
    with pytest.raises(SpecError, match="/dev/zero: not a regular file"):
        load_spec("/dev/zero", registry=registry)  # reading it would never end


def test_the_command_line_refuses_them_with_exit_2(tmp_path):
    fifo = tmp_path / "spec.toml"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        done = subprocess.run([HARNESS, "run", str(path), "--dry-run"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_file_over_the_size_limit_is_refused(tmp_path, registry):
    big = tmp_path / "big.toml"
    big.write_text(BASE + "# " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecError, match=f"big.toml: {MAX_SPEC_BYTES + len(BASE) + 3} bytes; a benchmark file has "
                       f"at most {MAX_SPEC_BYTES} bytes"):
        load_spec(big, registry=registry)
    small = tmp_path / "small.toml"
    small.write_text(BASE)
    assert load_spec(small, registry=registry).name == "t"


def test_not_utf8_is_named(tmp_path, registry):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(BASE.encode() + b"# \xff\n")
    with pytest.raises(SpecError, match="bad.toml: not UTF-8 text"):
        load_spec(bad, registry=registry)


def test_integer_literals_too_long_to_read(registry):
    digits = "1" * 5000
    with pytest.raises(SpecError, match="b.toml: invalid TOML: an integer literal too long to read "
                                        r"\(value has 5000 digits\); integers have at most 4300 digits"):
        parse_spec(BASE.replace("seed = 7", f"seed = {digits}"), "b.toml", (), registry)
    with pytest.raises(SpecError, match="--set: benchmark.seed: an integer literal too long to read"):
        parse_spec(BASE, "b.toml", [f"benchmark.seed={digits}"], registry)
    # the largest integer that reads is an ordinary seed
    assert parse_spec(BASE, "b.toml", ["benchmark.seed=" + "9" * 4300], registry).seed == int("9" * 4300)


def test_overrides_must_be_a_list_of_strings(registry):
    for bad in ("benchmark.seed=3", [42], b"benchmark.seed=3"):
        with pytest.raises(SpecError, match="overrides are a list of 'key.path=value' strings"):
            parse_spec(BASE, "b.toml", bad, registry)
