"""harness.runner.progress: the bar on a terminal, plain lines otherwise, nothing when quiet."""
from __future__ import annotations

import io

from harness.runner.progress import Progress, format_seconds


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_count_done_and_failures():
    out = io.StringIO()
    p = Progress(total=4, done=1, failures=1, stream=out, interval=3600)
    p.update({"status": "ok"})
    p.update({"status": "failed"})
    p.update({"status": "timeout"})
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the first update, then the final line (the interval is long)
    assert lines[0].startswith("2/4 cells, 1 not ok")
    assert lines[-1].startswith("4/4 cells, 3 not ok") and lines[-1].endswith("0:00 left")


def test_bar_on_a_terminal_redraws_in_place():
    out = FakeTTY()
    p = Progress(total=2, stream=out, width=10)
    p.update({"status": "ok"})
    assert out.getvalue().startswith("\r[#####-----] 1/2 cells")
    p.update({"status": "diverged"})
    p.close()
    text = out.getvalue()
    assert "[##########] 2/2 cells, 1 not ok" in text and text.endswith("\n") and text.count("\n") == 1


def test_quiet_prints_nothing_and_eta():
    out = io.StringIO()
    p = Progress(total=3, quiet=True, stream=out)
    assert p.eta() is None
    p.update({"status": "ok"})
    p.close()
    assert out.getvalue() == ""
    assert p.eta() is not None and p.eta() >= 0


def test_format_seconds():
    assert format_seconds(None) == "?"
    assert format_seconds(5) == "0:05"
    assert format_seconds(3725) == "1:02:05"


def test_the_final_line_is_printed_once():
    out = io.StringIO()
    p = Progress(total=1, stream=out, interval=3600)
    p.update({"status": "ok"})  # the first update prints: it is also the last
    p.close()
    p.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("1/1 cells")
    out = io.StringIO()
    p = Progress(total=3, stream=out, interval=3600)
    for _ in range(3):
        p.update({"status": "ok"})
    p.close()
    p.close()
    lines = out.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["1/3 cells", "3/3 cells"]
