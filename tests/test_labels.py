"""harness.results.labels: short group labels that name only what differs, never JSON."""
from __future__ import annotations

from harness.results.labels import short_labels, value_text

FC = {"name": "fc", "widths": ["d", "d"]}
FC_BIAS = {"name": "fc", "widths": ["d", "d"], "bias": True}
RES = {"name": "residual", "width": "d", "blocks": 1}
RES_BIAS = {"name": "residual", "width": "d", "blocks": 1, "bias": True}


def test_component_tables_name_only_the_parameters_that_differ_within_a_name():
    assert short_labels([FC, FC_BIAS, RES, RES_BIAS]) == ["fc", "fc(bias)", "residual", "residual(bias)"]
    deeper = {"name": "residual", "width": "d", "blocks": 2}
    assert short_labels([FC, RES, deeper]) == ["fc", "residual(blocks=1)", "residual(blocks=2)"]
    assert short_labels([FC, {**FC, "bias": False}]) == ["fc", "fc(bias=false)"]
    assert short_labels([{"name": "fc", "widths": [8, 8]}, {"name": "fc", "widths": [16]}]) == [
        "fc(widths=[8, 8])", "fc(widths=[16])"]


def test_bare_names_mix_with_tables_and_plain_values_stay_as_written():
    assert short_labels(["fc", {"name": "fc", "bias": True}]) == ["fc", "fc(bias)"]
    assert short_labels(["relu", "tanh"]) == ["relu", "tanh"]
    assert short_labels([3.0, 1.0]) == ["3.0", "1.0"]
    assert short_labels([[1, 2], [3]]) == ["[1, 2]", "[3]"]
    assert value_text({"name": "adam", "lr": 0.001}) == "adam(lr=0.001)"


def test_labels_are_never_json_and_never_shared_by_different_values():
    values = [FC, FC_BIAS, RES, RES_BIAS, {"name": "fc", "widths": ["d", "d"], "bias": True, "x": 1}]
    labels = short_labels(values)
    assert len(set(labels)) == len(values)
    assert not any(c in label for label in labels for c in '{}"')
    # 1 and 1.0 print alike in a table: the longer forms tell them apart
    tied = short_labels([{"name": "a", "k": 1}, {"name": "a", "k": 1.0}, {"name": "a", "k": 2}])
    assert len(set(tied)) == 3
