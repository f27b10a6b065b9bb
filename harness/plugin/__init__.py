"""The public plugin surface: everything a plugin author needs, and nothing else.

A plugin imports from here (and from :mod:`harness.engine` for numerics, :mod:`harness` for the
run API); every other module of the package is private and may change.

- component kinds, one interface each: :class:`Activation`, :class:`Initializer`,
  :class:`Architecture`, :class:`Dataset`, :class:`Loss`, :class:`Optimizer`, :class:`Backend`,
  :class:`Experiment` (all :class:`Component`), the :class:`Registry` and ``hookimpl``;
- declared parameters: :class:`Param`, :data:`REQUIRED`; expression-valued ones:
  :class:`Expr`, :class:`Width` and :func:`hidden_widths_resolved`
  (:mod:`harness.plugin.expression_params`);
- what a cell and a figure see: :class:`CellContext`, :class:`FigureContext`, :class:`Skip`,
  :class:`SkipCell`, :func:`warm_up`, :class:`TrainingProblem`;
- what a run answers: :class:`Table` and :class:`Interval` (:mod:`harness.plugin.tables`);
- errors: :class:`SpecError` (a bad parameter), :class:`PluginError` (a broken plugin),
  :class:`UserError`;
- a cell's data: :func:`dataset_problem`, :func:`save_arrays` (:mod:`harness.plugin.data`);
- the conformance suite: :func:`check_component`, :func:`assert_conforms`,
  :func:`parametrize_with_checks` (:mod:`harness.plugin.conformance`).
"""
from harness.errors import PluginError, SpecError, UserError
from harness.plugin.components import (
    Activation,
    Architecture,
    Backend,
    Component,
    Dataset,
    Initializer,
    Loss,
    Optimizer,
    TrainingProblem,
)
from harness.plugin.context import CellContext, FigureContext
from harness.plugin.data import dataset_problem, save_arrays
from harness.plugin.experiment import Experiment, Skip, SkipCell, warm_up
from harness.plugin.expression_params import Expr, Width, hidden_widths_resolved
from harness.plugin.hookspecs import hookimpl
from harness.plugin.params import REQUIRED, Param
from harness.plugin.registry import Registry
from harness.plugin.tables import Interval, Table


def check_component(*args, **kwargs):
    """:func:`harness.plugin.conformance.check_component` (imported on first use)."""
    from harness.plugin.conformance import check_component as check

    return check(*args, **kwargs)


def assert_conforms(*args, **kwargs):
    """:func:`harness.plugin.conformance.assert_conforms` (imported on first use)."""
    from harness.plugin.conformance import assert_conforms as check

    return check(*args, **kwargs)


__all__ = [
    "Activation", "Architecture", "Backend", "CellContext", "Component", "Dataset", "Experiment",
    "FigureContext", "Initializer", "Interval", "Loss", "Optimizer", "Registry", "Skip", "SkipCell",
    "Table", "TrainingProblem", "warm_up", "hookimpl", "REQUIRED", "Param", "PluginError", "SpecError",
    "UserError", "check_component", "assert_conforms",
    "Expr", "Width", "hidden_widths_resolved", "dataset_problem", "save_arrays",
]
