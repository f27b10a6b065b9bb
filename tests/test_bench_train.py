"""harness bench train: its table on a tiny problem (batched and single bit-identical, every
column filled) and the kernel-alone timings by block size and library."""
from __future__ import annotations

import numpy as np
import pytest

from harness.benchmarking import train_speed


@pytest.mark.slow
def test_bench_train_prints_the_table_with_identical_paths(capsys):
    rows = train_speed.main(["--sizes", "6x40", "--R", "1,3", "--repeats", "1", "--seconds", "0.02",
                             "--no-torch"])
    out = capsys.readouterr().out
    assert "the kernel's products:" in out and "engine/batched" in out
    assert [(r["d"], r["N"], r["R"]) for r in rows] == [(6, 40, 1), (6, 40, 3)]
    for r in rows:
        assert r["identical"] is True  # batched and single weights bit-identical
        assert r["torch"] is None
        for key in ("batched", "single", "engine", "numpy", "dgemm_gflops"):
            assert np.isfinite(r[key]) and r[key] > 0
        assert r["engine_over_batched"] > 0 and r["floor_fraction"] > 0


def test_kernel_block_times_cover_every_block_and_library():
    from harness.engine.kernel_blas import kernel_blas

    times = train_speed.kernel_block_times(6, 40, 2, [8, 16], repeats=1)
    libraries = ["openblas"] + (["mkl", "mkl-jit"] if kernel_blas().name == "mkl" else [])
    assert sorted(times) == sorted((lib, b) for lib in libraries for b in (8, 16))
    assert all(0 < best <= median for best, median in times.values())


@pytest.mark.slow
def test_bench_train_writes_the_same_table_as_markdown(capsys, tmp_path):
    out_file = tmp_path / "train.md"
    rows = train_speed.main(["--sizes", "6x40", "--R", "2", "--repeats", "1", "--seconds", "0.02",
                             "--no-torch", "--markdown", str(out_file)])
    printed = capsys.readouterr().out.strip().splitlines()
    lines = out_file.read_text().strip().splitlines()
    assert lines[0] == printed[0]  # the same title line
    assert lines[2] == "| " + " | ".join(c.title for c in train_speed.MARKDOWN_COLUMNS) + " |"
    cells = [c.strip() for c in lines[4].strip("|").split("|")]
    assert cells[:3] == ["6", "40", "2"] and cells[9] == "-"  # no torch: a dash
    assert float(cells[3]) == round(1e3 * rows[0]["batched"], 3)
    assert cells[-1] == "True"
