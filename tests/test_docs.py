"""The documentation: a short README whose results are generated, a results page per benchmark
file made by `harness publish` from a run, the docs site's configuration and CI's strict build."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from harness.results.publish import HEADLINE_BEGIN, HEADLINE_END, page_marker

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.toml"))

MEASURED = re.compile(r"(?<![\":\d])\b\d+:\d\d\b|\b\d+(?:\.\d+)? ?(?:ms|GFLOP/s|min)\b|\b\d+(?:\.\d+)?x\b|\b\d+\.\d+%")
"""What a hand-typed measurement looks like: a wall time (4:14; not a quoted setting such as a batch job's walltime), milliseconds, a rate, minutes,
a speed-up (1.4x), a percentage with decimals (90.4%)."""


def _without_generated_blocks(text: str) -> str:
    return re.sub(r"<!-- results:(\S+):begin -->.*?<!-- results:\1:end -->", "", text, flags=re.S)


def test_readme_is_a_short_manual_without_typed_measurements():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert MEASURED.findall(_without_generated_blocks(text)) == []
    assert (ROOT / "CHANGELOG.md").is_file()
    assert 'pytest -q -m "not slow"' in text  # the quick loop


@pytest.mark.parametrize("page", ["index.md", "studies.md", "reference/benchmark-files.md",
                                  "reference/command-line.md", "reference/run-directory.md",
                                  "reference/estimates.md", "reference/plugins.md", "cluster.md", "design.md",
                                  "plugins.md"])
def test_docs_hold_no_typed_measurement(page):
    """Measured numbers live on the generated results pages (and in docs/engine.md, each with the
    command that measures it again)."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert MEASURED.findall(text) == []


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_file_has_a_generated_results_page(name):
    page = RESULTS / f"{name}.md"
    marker = page_marker(page)
    assert marker is not None, f"{page} is not written by harness publish"
    assert marker["benchmark"] == name
    assert marker["run"].startswith(f"harness run benchmarks/{name}.toml")
    text = page.read_text(encoding="utf-8")
    facts = dict(re.findall(r"^\| (command|commit|machine|DGEMM at the start|wall time|CPU time|date) \| (.*) \|$",
                            text, flags=re.M))
    assert facts["command"] == f"`{marker['run']}`"
    assert re.fullmatch(r"`[0-9a-f]{40}` \(clean\)", facts["commit"]), facts["commit"]
    assert re.match(r"\d+(:\d\d)+ \(", facts["wall time"]) and "GFLOP/s" in facts["DGEMM at the start"]
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (RESULTS / figure).is_file()
    regenerate = (RESULTS / "regenerate").read_text(encoding="utf-8")
    assert f"      {marker['run']} || [ $? -eq 3 ]\n      {marker['publish']}\n" in regenerate
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"- results/{name}.md" in nav


def test_readme_headline_is_the_page_headline():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- results:min_overparam:begin -->\n", 1)[1].split("\n<!-- results:min_overparam:end -->")[0]
    page = (RESULTS / "min_overparam.md").read_text(encoding="utf-8")
    headline = page.split(HEADLINE_BEGIN + "\n", 1)[1].split("\n" + HEADLINE_END, 1)[0]
    assert block == headline + "\n\nFrom [docs/results/min_overparam.md](docs/results/min_overparam.md)."
    # both GD step rules answer: a P*/N, not "above the searched range"
    gd = [line for line in headline.splitlines() if "model = deep_gd" in line]
    assert len(gd) == 2 and all(line.endswith("| found |") for line in gd), gd


def test_ci_builds_the_site_strictly_after_the_tests():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    tests = next(i for i, line in enumerate(ci) if line.endswith("python -m pytest -q"))
    build = next(i for i, line in enumerate(ci) if "mkdocs build --strict" in line and not line.startswith("#"))
    install = next(i for i, line in enumerate(ci) if 'pip install --quiet -e ".[docs]"' in line)
    assert tests < install < build
    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    docs = [r.strip() for r in extras["options.extras_require"]["docs"].strip().splitlines()]
    assert {re.split(r"[\[>]", r)[0] for r in docs} == {"mkdocs", "mkdocs-material", "mkdocstrings"}
    assert all(">=" in r for r in docs)
