"""Parameters whose values are arithmetic expressions: declared, checked when the benchmark file
loads, resolved when a cell runs.

- :class:`Expr`: a number or an expression (:mod:`harness.plugin.expressions`) in a few named
  sizes, e.g. ``Expr("N", "d", "n")`` for a step-size constant ``"N/2"``. An ``Expr`` is a
  :class:`~harness.plugin.params.Param` ``check`` (it is called with the value and returns the
  problem or ``None``), and :meth:`Expr.param` declares the parameter with it.
- :class:`Width`: a layer width, an ``int >= 1`` or an expression in the input dimension ``d``
  (``"d"``, ``"2*d"``, ``"floor(d/2)"``). Expressions are parsed and their names checked when the
  component is built (and test-evaluated at ``d = 100``); :meth:`Width.resolve` evaluates one at
  the cell's ``d`` and requires an integer >= 1 there.
- :func:`hidden_widths_resolved`: what the widths resolved to, for the row's ``resolved``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from harness.errors import SpecError
from harness.plugin.expressions import ExpressionError, check, evaluate, names_in
from harness.plugin.params import REQUIRED, Param


@dataclass(frozen=True, init=False)
class Expr:
    """A number or an expression in ``variables`` only.

    ``Expr("N", "d", "n", shown="N, d, n (= n_{L-1})")``: ``shown`` is how an error lists the
    allowed names (default: ``"N, d, n"``); with ``empty=True`` the empty string is accepted
    (it means "unset")."""

    variables: tuple[str, ...]
    shown: str
    empty: bool

    def __init__(self, *variables: str, shown: str | None = None, empty: bool = False) -> None:
        object.__setattr__(self, "variables", tuple(variables))
        object.__setattr__(self, "shown", shown if shown is not None else ", ".join(variables))
        object.__setattr__(self, "empty", bool(empty))

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (a number or an expression) is not allowed, or ``None``."""
        text = str(value)
        if self.empty and not text:
            return None
        try:
            check(text)
            unknown = names_in(text) - set(self.variables)
        except ExpressionError as exc:
            return str(exc)
        return f"uses {', '.join(sorted(unknown))}; allowed: {self.shown}" if unknown else None

    __call__ = problem

    def param(self, name: str, default: Any = REQUIRED, help: str = "", **options: Any) -> Param:
        """``Param(name, (str, float), default, help, check=self, **options)``."""
        return Param(name, (str, float), default, help, check=self, **options)

    def value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """``value`` evaluated at ``variables`` (a mapping of every name in :attr:`variables`)."""
        return evaluate(str(value), dict(variables))


class Width:
    """A layer width: an ``int >= 1`` or an expression in the input dimension ``d``.

    Declare with :meth:`param` (one width, or ``many=True`` for a list of widths), resolve at
    the cell's ``d`` with :meth:`resolve`::

        params = (Width.param("widths", ["d", "d"], "hidden widths", many=True, min=1),)
        ...
        n = Width.resolve(self.widths[0], d, "architecture.fc.widths[0]")
    """

    VARIABLES = ("d",)
    TRIAL_D = 100
    """The input dimension at which width expressions are test-evaluated when a component is built."""

    @classmethod
    def problem(cls, value: Any) -> str | None:
        """Why ``value`` (an int or an expression in d) is not a valid width, or ``None``."""
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return f"{value!r} is not an integer or an expression in d"
        if isinstance(value, int):
            return None if value >= 1 else f"{value} is not >= 1"
        try:
            unknown = names_in(value) - set(cls.VARIABLES)
        except ExpressionError as exc:
            return str(exc)
        if unknown:
            return f"expression {value!r} uses {', '.join(sorted(unknown))}; only d is allowed"
        try:  # catches what parses but cannot be evaluated (unknown functions, attributes, ...)
            trial = evaluate(value, {"d": cls.TRIAL_D})
        except ExpressionError as exc:
            return str(exc)
        if isinstance(trial, bool) or not isinstance(trial, (int, float)):
            return f"expression {value!r} does not give a number"
        return None

    @classmethod
    def list_problem(cls, values: Sequence[Any]) -> str | None:
        """Param check for a list of widths: the first problem, naming the item index."""
        for i, value in enumerate(values):
            problem = cls.problem(value)
            if problem:
                return f"item {i}: {problem}"
        return None

    @classmethod
    def param(cls, name: str, default: Any = REQUIRED, help: str = "", *, many: bool = False,
              **options: Any) -> Param:
        """A width parameter: ``(int, str)`` checked by :meth:`problem`; with ``many``, a list
        of them checked by :meth:`list_problem`."""
        if many:
            return Param(name, list, default, help, item_type=(int, str), check=cls.list_problem, **options)
        return Param(name, (int, str), default, help, check=cls.problem, **options)

    @staticmethod
    def resolve(value: Any, d: int, key: str) -> int:
        """The width ``value`` at input dimension ``d``; a :class:`SpecError` naming ``key``
        if it is not an integer >= 1 there."""
        width: Any
        if isinstance(value, int):
            width = value
        else:
            try:
                width = evaluate(value, {"d": int(d)})
            except ExpressionError as exc:
                raise SpecError(None, key, value, str(exc)) from None
            if isinstance(width, float) and width.is_integer():
                width = int(width)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise SpecError(None, key, value, f"gives {width!r} at d = {d}; a width must be an integer >= 1")
        return width


def hidden_widths_resolved(arch: Any, shapes: Sequence[tuple[int, int]]) -> dict:
    """The hidden widths for the row's ``resolved``, from the layer ``shapes`` ``[(n_out, n_in),
    ...]`` of ``arch``: ``architecture.widths`` (into the row's components) when the architecture
    has a ``widths`` parameter; otherwise ``hidden_widths``, and ``architecture.width`` too for
    an architecture with one ``width``."""
    widths = [int(n) for n, _ in shapes[:-1]]
    config = getattr(arch, "config", {}) or {}
    if "widths" in config:
        return {"architecture.widths": widths}
    out: dict = {"hidden_widths": widths}
    if "width" in config and widths:
        out["architecture.width"] = widths[0]
    return out
