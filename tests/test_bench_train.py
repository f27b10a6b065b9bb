"""harness bench train: its table on a tiny problem (batched and single bit-identical, every
column filled), in float64 and float32 side by side, and the kernel-alone timings by block size
and library."""
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

    libraries = ["openblas"] + (["mkl", "mkl-jit"] if kernel_blas().name == "mkl" else [])
    for dtype in (np.float64, np.float32):
        times = train_speed.kernel_block_times(6, 40, 2, [8, 16], repeats=1, dtype=dtype)
        assert sorted(times) == sorted((lib, b) for lib in libraries for b in (8, 16))
        assert all(0 < best <= median for best, median in times.values())


@pytest.mark.slow
def test_bench_train_times_both_dtypes_side_by_side(capsys):
    rows = train_speed.main(["--sizes", "6x40", "--R", "3", "--repeats", "2", "--seconds", "0.02",
                             "--no-torch", "--dtype", "float64,float32"])
    out = capsys.readouterr().out
    assert "DGEMM" in out and "SGEMM" in out and "f64/this" in out
    assert [r["dtype"] for r in rows] == ["float64", "float32"]
    assert rows[0]["epochs"] == rows[1]["epochs"]  # the same work in both
    assert rows[0]["float64_over_this"] == 1.0 and rows[1]["float64_over_this"] > 0
    for r in rows:
        assert r["identical"] is True and r["floor_fraction"] > 0 and r["gemm_gflops"] > 0
    alone = train_speed.main(["--sizes", "6x40", "--R", "3", "--repeats", "1", "--seconds", "0.02",
                              "--no-torch", "--dtype", "float32"])
    assert [r["dtype"] for r in alone] == ["float32"] and alone[0]["float64_over_this"] is None


def test_bench_train_refuses_an_unknown_dtype(capsys):
    with pytest.raises(SystemExit) as info:
        train_speed.main(["--dtype", "float16"])
    assert info.value.code == 2
    assert "--dtype 'float16': allowed values are float64, float32" in capsys.readouterr().err


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
    assert cells[:4] == ["6", "40", "2", "float64"] and cells[11] == "-"  # no torch: a dash
    assert float(cells[4]) == round(1e3 * rows[0]["batched"], 3)
    assert cells[-1] == "True"
