"""Safe arithmetic expressions used by benchmark files (derived grid values, widths tied to d).

Allowed: numbers, names bound in ``variables``, lists/tuples, + - * / // % **, unary minus,
comparisons, ``a if c else b`` and the functions in :data:`FUNCTIONS`. Nothing else (no
attributes, no subscripts, no imports).
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Any, Mapping

FUNCTIONS = {
    "floor": math.floor, "ceil": math.ceil, "sqrt": math.sqrt, "log": math.log,
    "log2": math.log2, "log10": math.log10, "exp": math.exp, "round": round, "int": int,
    "float": float, "min": min, "max": max, "abs": abs,
}

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}


class ExpressionError(ValueError):
    """The expression is malformed, uses something not allowed, or names an unknown variable."""


def names_in(text: str) -> set[str]:
    """The variable names an expression refers to (function names excluded)."""
    tree = _parse(text)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called


_ALLOWED_NODES = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.List, ast.Tuple, ast.BinOp,
                  ast.UnaryOp, ast.USub, ast.UAdd, ast.Compare, ast.IfExp, ast.Call,
                  *_BINOPS, *_CMPOPS)


def check(text: str) -> None:
    """Raise :class:`ExpressionError` if ``text`` is malformed or uses anything not allowed."""
    for node in ast.walk(_parse(text)):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                                               and not node.keywords):
            raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r}; functions: "
                                  + ", ".join(sorted(FUNCTIONS)))
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r}")


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate ``text`` with ``variables``; raises :class:`ExpressionError`."""
    tree = _parse(text)
    try:
        return _eval(tree.body, variables)
    except ExpressionError:
        raise
    except Exception as exc:  # arithmetic errors (division by zero, domain errors)
        raise ExpressionError(f"cannot evaluate {text!r}: {exc}") from None


def _parse(text: str) -> ast.Expression:
    try:
        return ast.parse(str(text), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {exc.msg}") from None


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise ExpressionError(f"unknown name {node.id!r}; known: {', '.join(sorted(env)) or 'none'}")
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
        return _CMPOPS[type(node.ops[0])](_eval(node.left, env), _eval(node.comparators[0], env))
    if isinstance(node, ast.IfExp):
        return _eval(node.body, env) if _eval(node.test, env) else _eval(node.orelse, env)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords):
        return FUNCTIONS[node.func.id](*[_eval(a, env) for a in node.args])
    raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r}")
