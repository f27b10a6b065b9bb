"""Integrity of a run directory: what identifies a run (the spec's checksum and the versions of
its components, ``identity.json``), the checks that refuse to resume a run whose spec or
components changed or whose rows belong to other cells, and the check that every component a
run uses can run here. Re-exported by :mod:`harness.api`.
"""
from __future__ import annotations

from typing import Any

from harness.errors import UserError
from harness.runner.store import RunDir


def component_versions(spec) -> dict[str, str]:
    """``"<slot> <component>"`` -> version, of every component a spec's cells use."""
    out: dict[str, str] = {}
    for exp in spec.experiments:
        choices = [p["components"] for p in exp.points] or [exp.slots]
        for components in choices:
            versions = exp.versions(components)
            for slot, version in versions.items():
                name = exp.experiment if slot == "experiment" else components[slot]["name"]
                out[f"{slot} {name}"] = version
    return dict(sorted(out.items()))


def spec_identity(spec) -> dict[str, Any]:
    """What ``identity.json`` records of a new run: the checksum and text of its ``spec.toml``
    and the versions of the components its cells use."""
    from harness.runner.store import spec_checksum

    text = spec.to_toml()
    text = text if text.endswith("\n") else text + "\n"
    return {"checksum": spec_checksum(text), "spec": text, "versions": component_versions(spec)}


def check_unchanged(run_dir: RunDir, spec) -> None:
    """Refuse (a :class:`UserError`, exit code 2) to resume a run whose ``spec.toml`` was edited
    or whose components now have other versions, naming what changed: its rows would not be
    the results of the cells it now describes."""
    from harness.runner.store import spec_checksum

    body, recorded = run_dir.read_spec_text()
    identity = run_dir.read_identity()
    changes: list[str] = []
    if recorded is not None and recorded != spec_checksum(body) or identity.get("checksum") not in (None, recorded):
        original = identity.get("spec")
        if isinstance(original, str):
            changes = _toml_changes(original, body)
        else:
            changes = ["its text (the checksum on its last line does not match)"]
    before = identity.get("versions") if isinstance(identity.get("versions"), dict) else {}
    if before:
        now = component_versions(spec)
        changes += [f"version of {key}: {before[key]} -> {now[key]}" for key in now
                    if key in before and before[key] != now[key]]
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise UserError(f"{run_dir.spec_path} does not describe the cells of this run any more: {shown}. "
                        "Its rows were computed from the original; start a new run with the changed "
                        "spec (harness run FILE), or undo the change to resume")


def _toml_changes(before_text: str, after_text: str) -> list[str]:
    """The key paths whose values differ between two TOML texts (``benchmark.seed: 1 -> 2``)."""
    import tomllib

    try:
        before, after = tomllib.loads(before_text), tomllib.loads(after_text)
    except tomllib.TOMLDecodeError as exc:
        return [f"it is not valid TOML any more ({exc})"]
    out: list[str] = []

    def short(v: Any) -> str:
        text = repr(v)
        return text if len(text) <= 60 else text[:57] + "..."

    def visit(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                visit(f"{path}.{k}" if path else k, a.get(k, ...), b.get(k, ...))
        elif (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a
              and all(isinstance(x, dict) for x in a + b)):
            for i, (x, y) in enumerate(zip(a, b)):
                label = x.get("id", i) if x.get("id") == y.get("id") else i
                visit(f"{path}[{label}]", x, y)
        elif a != b:
            if a is ...:
                out.append(f"{path} added ({short(b)})")
            elif b is ...:
                out.append(f"{path} removed (was {short(a)})")
            else:
                out.append(f"{path}: {short(a)} -> {short(b)}")

    visit("", before, after)
    return out


def is_search_row(spec, row) -> bool:
    exp = next((e for e in spec.experiments if e.id == row.get("experiment_id")), None)
    return exp is not None and exp.search is not None


def check_rows_belong(run_dir: RunDir, spec, rows) -> None:
    """Refuse to resume when ``rows.jsonl`` holds rows of cells the spec does not have (rows of
    another spec, or of an older harness whose cell ids hashed less): they would be mixed in."""
    ids = {c.cell_id for c in spec.cells()}
    foreign = [r for r in rows if r["cell_id"] not in ids and not is_search_row(spec, r)]
    if foreign:
        raise UserError(f"{run_dir.rows_path}: {len(foreign)} of {len(rows)} rows are not cells of "
                        f"{run_dir.spec_path} (another spec, or an older harness whose cell ids differ); "
                        "resuming would mix them in: start a new run instead")


def check_components_available(cells, registry) -> None:
    """Raise the :class:`~harness.errors.PluginError` of the first component the cells use whose
    optional dependencies are missing here (``Component.check_available``), before anything runs."""
    seen: set[tuple[str, str]] = set()
    for cell in cells:
        try:
            cls = registry.get("experiment", cell.experiment)
        except Exception:
            continue  # run_cell reports it as a failed row
        for slot, chosen in cell.components.items():
            kind = dict(cls.slots).get(slot, (None,))[0]
            if kind is None or (kind, chosen["name"]) in seen:
                continue
            seen.add((kind, chosen["name"]))
            try:
                component = registry.get(kind, chosen["name"])
            except Exception:
                continue
            component.check_available()
