"""harness.results.report: the self-contained report.html, its escaping, and its rendering in Chromium."""
from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import api
from harness.cli import main
from harness.plugin import manager as plugin_manager
from harness.results.report import REPORT_FILE, esc, render_report, write_report
from harness.results.runs import load_run

SPEC = """
[benchmark]
name = "demo"
seed = 3
repetitions = 2
description = "<b>bold</b> & <i>friends</i>"

[[experiments]]
id = "curves"
experiment = "echo"
[experiments.grid]
x = [1.0, 2.0, 3.0]

[[experiments]]
id = "broken"
experiment = "fail"
[experiments.grid]
x = [1.0]
"""

@contextlib.contextmanager
def test_plugins():
    """The test components of tests/plugins_for_tests.py (echo, fail) loaded in this process."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(plugin_manager.EXTRA_PLUGINS_ENV, "plugins_for_tests")
        mp.syspath_prepend(str(Path(__file__).parent))
        try:
            yield
        finally:
            mp.undo()


test_plugins.__test__ = False

PAYLOAD = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run: two echo figures, two failed cells, and one extra failed row whose error
    message, coordinates and block id hold markup."""
    tmp = tmp_path_factory.mktemp("report")
    spec = tmp / "demo.toml"
    spec.write_text(SPEC)
    with test_plugins():
        path = api.run(str(spec), results_dir=str(tmp / "results"), progress=False).path
    rows = [json.loads(line) for line in (path / "rows.jsonl").read_text().splitlines()]
    evil = dict(next(r for r in rows if r["status"] == "failed"))
    evil.update(cell_id="evil", point_id="evil", experiment_id="broken<b>", status="failed",
                coords={"x": "<i>x</i>"}, error="RuntimeError: " + PAYLOAD)
    with open(path / "rows.jsonl", "a") as f:
        f.write(json.dumps(evil) + "\n")
    return path


@pytest.mark.slow
def test_run_writes_the_report_with_every_section(run_dir):
    text = (run_dir / REPORT_FILE).read_text()  # written by api.run at the end
    assert text.startswith("<!DOCTYPE html>")
    for anchor in ("experiments", "status", "figures", "summary", "problems", "spec", "environment"):
        assert f'id="{anchor}"' in text
    assert "2 of 8 cells did not finish ok" in text  # written before the extra row was added
    assert "boom at x=1.0" in text  # the failed cells' errors
    assert "x = [1.0, 2.0, 3.0]" in text  # the grid of each block


def test_report_embeds_every_figure_as_its_own_png(run_dir):
    text = render_report(load_run(run_dir))
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert [p.name for p in pngs] == ["curves-u_vs_x.png"]
    sources = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [base64.b64decode(s) for s in sources] == [p.read_bytes() for p in pngs]
    assert "src=\"http" not in text and "href=" not in text  # nothing loaded from elsewhere


def test_every_text_from_the_run_is_escaped(run_dir):
    text = render_report(load_run(run_dir))
    assert "<script" not in text.lower()
    assert "onerror=" not in text.replace("onerror=&quot;", "")  # only as escaped text
    assert len(re.findall(r"<img ", text)) == 1  # the figure; the payload's <img> is text
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in text
    assert "broken&lt;b&gt;" in text and "&lt;i&gt;x&lt;/i&gt;" in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;friends&lt;/i&gt;" in text  # the spec's description
    assert "<b>bold</b>" not in text


def test_counts_per_block_include_the_cells_not_run(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    lines = (copy / "rows.jsonl").read_text().splitlines()
    (copy / "rows.jsonl").write_text("\n".join(line for line in lines if '"repetition": 1' not in line) + "\n")
    with test_plugins():
        text = render_report(load_run(copy))
    # block "curves": 3 of 6 cells have a row; the table row is: block, experiment, rows,
    # ok, diverged, failed, timeout, skipped, not run
    status = text[text.index('id="status"'):text.index('id="summary"')]
    cells = re.search(r"<tr><td>curves</td>(.*?)</tr>", status).group(1)
    assert re.findall(r">([^<]*)</td>", cells) == ["echo", "3", "3", "0", "0", "0", "0", "3"]


def test_empty_run_without_figures(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "spec.toml").write_text('[benchmark]\nname = "x"\nseed = 1\n')
    (run / "rows.jsonl").write_text("")
    out = write_report(load_run(run))
    text = out.read_text()
    assert out == run / REPORT_FILE
    assert "No result rows." in text and "No figures in this run directory" in text
    assert "The spec no longer loads" in text  # a spec without experiments does not validate


def test_harness_report_cli(run_dir, tmp_path):
    runner = CliRunner()
    target = tmp_path / "out.html"
    result = runner.invoke(main, ["report", str(run_dir), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target) and target.read_text().startswith("<!DOCTYPE html>")
    bad = runner.invoke(main, ["report", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and "Traceback" not in bad.output
    unwritable = runner.invoke(main, ["report", str(run_dir), "-o", str(tmp_path / "no" / "dir.html")])
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.output


@pytest.mark.slow
def test_a_failing_report_only_warns(tmp_path, monkeypatch, capsys):
    import harness.results.report

    def broken(*args, **kwargs):
        raise RuntimeError("no report today")

    monkeypatch.setattr(harness.results.report, "write_report", broken)
    spec = tmp_path / "b.toml"
    spec.write_text(SPEC.split("[[experiments]]\nid = \"broken\"")[0])
    with test_plugins():
        path = api.run(str(spec), results_dir=str(tmp_path / "results"), progress=False, figures=False).path
    assert len((path / "rows.jsonl").read_text().splitlines()) == 6
    assert not (path / REPORT_FILE).exists()
    assert "warning: report.html could not be written: RuntimeError: no report today" in capsys.readouterr().err


# -- rendering in a browser --------------------------------------------------------------------

CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute('data-check', JSON.stringify({
    widths: imgs.map(function (i) { return i.naturalWidth; }),
    scripts: document.scripts.length,
    title: document.title,
    text: document.body.innerText
  }));
});
</script>"""


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render_in_browser(html_file: Path, tmp_path: Path) -> dict:
    """Load ``html_file`` (with a checking script added) in headless Chromium; what it saw."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    page = tmp_path / "page.html"
    page.write_text(html_file.read_text().replace("</body>", CHECK + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert match, f"Chromium did not render the page: {proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(match.group(1)))


def test_report_renders_in_chromium_with_figures_loaded_and_no_script_run(run_dir, tmp_path):
    report = tmp_path / "report.html"
    report.write_text(render_report(load_run(run_dir)))
    seen = render_in_browser(report, tmp_path)
    assert len(seen["widths"]) == 1 and all(w > 0 for w in seen["widths"])
    assert seen["scripts"] == 1  # only the checking script: the payload stayed text
    assert seen["title"] != "pwned" and seen["title"].startswith("demo: ")
    assert PAYLOAD in seen["text"]  # shown literally
    assert "<b>bold</b> & <i>friends</i>" in seen["text"]


def test_svg_only_figures_render_in_chromium(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for png in (copy / "figures").glob("*.png"):
        png.unlink()
    text = render_report(load_run(copy))
    assert text.count('<img src="data:image/svg+xml;base64,') == 1
    (copy / "report.html").write_text(text)
    seen = render_in_browser(copy / "report.html", tmp_path)
    assert len(seen["widths"]) == 1 and all(w > 0 for w in seen["widths"])


ORDER_SPEC = """
[benchmark]
name = "order"
seed = 5
repetitions = 2

[[experiments]]
id = "zeta"
experiment = "echo"
[experiments.grid]
data = ["tdata", "sphere"]
x = [1.0, 2.0]

[[experiments]]
id = "alpha"
experiment = "echo"
[experiments.grid]
x = [1.0, 2.0]
"""


@pytest.mark.slow
def test_figures_follow_the_blocks_with_captions_and_compared_axes_get_tables(tmp_path):
    from harness.results.report import compared_axes, figure_order

    spec = tmp_path / "order.toml"
    spec.write_text(ORDER_SPEC)
    with test_plugins():
        path = api.run(str(spec), results_dir=str(tmp_path / "results"), progress=False).path
        text = render_report(load_run(path))
        run = api.load_run(path)
        assert compared_axes(run.spec) == [("zeta", "data")]  # a slot varied by the grid; x is not compared
    figures = text[text.index('id="figures"'):text.index('id="run"')]
    # block order (zeta before alpha), not the files' alphabetical order
    assert figures.index("<h3>zeta") < figures.index("<h3>alpha")
    assert figures.index('alt="zeta-u_vs_x"') < figures.index('alt="alpha-u_vs_x"')
    caption = re.search(r'alt="zeta-u_vs_x"><figcaption>(.*?)</figcaption>', figures).group(1)
    assert caption.startswith("Figure 1. u vs x: block zeta (echo: returns its parameters and a few seeded draws)")
    assert "grid data: [&#x27;tdata&#x27;, &#x27;sphere&#x27;], x: [1.0, 2.0]; 2 repetition(s)" in caption
    assert "from 8 rows (8 ok)" in caption
    assert "Figure 2. u vs x: block alpha" in figures
    compare = text[text.index('id="compare"'):text.index('id="problems"')]
    assert "<h3>zeta: by data</h3>" in compare and "<h4>u</h4>" in compare
    assert "<th>tdata</th><th>sphere</th><th>sphere − tdata</th>" in compare
    assert "alpha" not in compare
    assert figure_order(["fig1-extra-a", "fig1-b", "z", "fig1-extra-c"], ["fig1", "fig1-extra"]) == [
        ("fig1", "fig1-b", "b"), ("fig1-extra", "fig1-extra-a", "a"), ("fig1-extra", "fig1-extra-c", "c"),
        (None, "z", "z")]


def test_no_compared_axis_no_comparison_section(run_dir):
    assert 'id="compare"' not in render_report(load_run(run_dir))


def test_run_times_come_from_the_sessions_and_rows():
    from harness.results.report import run_times

    sessions = [{"started": "2026-01-01T10:00:00+00:00"}, {"started": "2026-01-01T12:00:00+00:00"}]
    rows = [{"finished": "2026-01-01T10:01:30.500+00:00", "elapsed": 50.0},
            {"finished": "2026-01-01T10:02:00+00:00", "elapsed": 60.0},   # first session: 2:00
            {"finished": "2026-01-01T12:00:45+00:00", "elapsed": 45.0}]   # second session: 0:45
    assert run_times(sessions, rows) == [("wall time", "2:45 (2 sessions)"),
                                         ("cell time", "2:35 (the cells' elapsed seconds added up)")]
    assert run_times([], []) == []
    # a session that recorded its end: its own wall and CPU seconds
    recorded = [dict(sessions[0], wall_seconds=125.0, cpu_seconds=230.5), dict(sessions[1], wall_seconds=50.0,
                                                                              cpu_seconds=60.0)]
    assert run_times(recorded, rows) == [("wall time", "2:55 (2 sessions, as recorded)"),
                                         ("CPU time", "4:50 (the harness process and its local workers)"),
                                         ("cell time", "2:35 (the cells' elapsed seconds added up)")]


RAMP = """
[benchmark]
name = "ramp"
seed = 5
repetitions = 3

[[experiments]]
id = "r"
experiment = "ramp"
noise = 0.2
[experiments.grid]
k = [1.0]
[experiments.search]
axis = "n"
lower = 1
upper = 1000
start = "50 * k"
metric = "loss"
tolerance = 0.05
below = 0
"""


@pytest.mark.slow
def test_the_report_opens_with_what_the_run_answers(tmp_path):
    """The threshold and the experiment's table come before the figures, the run's facts after."""
    from harness.results.answers import run_tables

    (tmp_path / "ramp.toml").write_text(RAMP)
    with test_plugins():
        path = api.run(str(tmp_path / "ramp.toml"), results_dir=str(tmp_path / "results"), progress=False).path
        run = load_run(path)
        text = render_report(run)
        tables = run_tables(run)
    assert [t.title for t in tables] == ["r: threshold search over n", "ramp: log10(loss) per n"]
    threshold = run.thresholds[0]["threshold"]
    answer = text[text.index('id="answer"'):text.index('id="figures"')]
    assert text.index('id="answer"') < text.index('id="figures"') < text.index('id="run"') < text.index('id="status"')
    assert tables[0].columns[1:3] == ["level", "n* [95% bootstrap]"]
    assert f"<td class=\"num\">{esc(tables[0].cells()[0][2])}</td>" in answer
    assert tables[0].cells()[0][1] == "0" and tables[0].cells()[0][2].startswith(f"{threshold:.4g} [")
    assert "Condition: mean log10(loss) &lt;= 0 holds at low n." in answer
    assert "log10(loss) grows linearly in n: slope" in answer
