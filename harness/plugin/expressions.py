"""Safe arithmetic expressions used by benchmark files (derived grid values, widths tied to d).

Allowed: numbers, names bound in ``variables``, lists/tuples, + - * / // % **, unary minus,
comparisons, ``a if c else b`` and the functions in :data:`FUNCTIONS`. Nothing else (no
attributes, no subscripts, no imports).

Evaluation has a bounded cost, whatever the text: an expression has at most
:data:`MAX_LENGTH` characters, :data:`MAX_NODES` syntax nodes and :data:`MAX_DEPTH` levels of
nesting; every intermediate integer has at most :data:`MAX_INT_DIGITS` digits and every list or
string at most :data:`MAX_ITEMS` items (checked *before* an operation that would exceed them:
``10**10**10`` and ``[4]*3*10**8`` are refused at once, never computed); an evaluation stops
after :data:`MAX_SECONDS`. Breaking a limit is an :class:`ExpressionError` saying which.
"""
from __future__ import annotations

import ast
import math
import operator
import time
from typing import Any, Mapping

MAX_LENGTH = 4000
"""Characters of an expression."""
MAX_NODES = 1000
"""Syntax nodes of an expression (a sum of n terms has about 2n)."""
MAX_DEPTH = 100
"""Nesting depth of an expression's syntax tree (a sum of n terms nests n deep)."""
MAX_INT_DIGITS = 300
"""Decimal digits of any integer an expression computes (a float is at most 1.8e308 anyway)."""
MAX_ITEMS = 10_000
"""Items of any list (counting nested lists' items) or characters of any string it computes."""
MAX_SECONDS = 1.0
"""Time one evaluation may take."""
_INT_LIMIT = 10 ** MAX_INT_DIGITS

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
    """Raise :class:`ExpressionError` if ``text`` is malformed, uses anything not allowed or is
    too large (see the module docstring)."""
    for node in ast.walk(_parse(text)):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"not allowed in an expression: {short(ast.unparse(node))}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                                               and not node.keywords):
            raise ExpressionError(f"not allowed in an expression: {short(ast.unparse(node))}; functions: "
                                  + ", ".join(sorted(FUNCTIONS)))
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ExpressionError(f"not allowed in an expression: {short(ast.unparse(node))}")


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate ``text`` with ``variables``; raises :class:`ExpressionError`."""
    tree = _parse(text)
    try:
        return _Evaluator(variables).eval(tree.body)
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError(f"expression {short(text)} is nested too deeply") from None
    except Exception as exc:  # arithmetic errors (division by zero, domain errors, overflow)
        raise ExpressionError(f"cannot evaluate {short(text)}: {exc}") from None


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(text: str) -> ast.Expression:
    text = str(text)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression {short(text)} is too long ({len(text)} characters; "
                              f"at most {MAX_LENGTH})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {short(text)}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"expression {short(text)} is nested too deeply") from None
    nodes, stack = 0, [(tree.body, 1)]
    while stack:  # iterative: a deep tree cannot overflow the stack here
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ExpressionError(f"expression {short(text)} is too large (more than {MAX_NODES} "
                                  "terms, names and operators)")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression {short(text)} is nested too deeply (more than "
                                  f"{MAX_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))  # type: ignore[misc]
    return tree


def _size(value: Any, limit: int = MAX_ITEMS) -> int:
    """Items of a list (nested lists' items included) or characters of a string; stops counting
    past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if not isinstance(value, (list, tuple)):
        return 0
    total = len(value)
    for item in value:
        if total > limit:
            break
        if isinstance(item, (list, tuple, str)):
            total += _size(item, limit - total)
    return total


class _Evaluator:
    def __init__(self, env: Mapping[str, Any]) -> None:
        self.env = env
        self.deadline = time.monotonic() + MAX_SECONDS

    def eval(self, node: ast.AST) -> Any:
        if time.monotonic() > self.deadline:
            raise ExpressionError(f"evaluation takes longer than {MAX_SECONDS:g} s")
        return _checked(self._eval(node))

    def _eval(self, node: ast.AST) -> Any:
        ev, env = self.eval, self.env
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            known = sorted(env)
            text = ", ".join(known[:20]) + (f", ... ({len(known)} names)" if len(known) > 20 else "")
            raise ExpressionError(f"unknown name {node.id!r}; known: {text or 'none'}")
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            _precheck(type(node.op), left, right)
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
            return _CMPOPS[type(node.ops[0])](ev(node.left), ev(node.comparators[0]))
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and not node.keywords):
            args = [ev(a) for a in node.args]
            if node.func.id == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > 400:
                raise ExpressionError(f"round(x, {short(args[1], 20)}): at most 400 digits")
            return FUNCTIONS[node.func.id](*args)  # type: ignore[operator]
        raise ExpressionError(f"not allowed in an expression: {short(ast.unparse(node))}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _precheck(op: type, left: Any, right: Any) -> None:
    """Refuse an operation whose result would break the size limits, before computing it."""
    if op is ast.Pow and _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        if right * math.log10(abs(left)) >= MAX_INT_DIGITS:
            raise ExpressionError(f"{short(left, 20)} ** {short(right, 20)} has more than {MAX_INT_DIGITS} "
                                  "digits (integers are limited to that)")
    if op is ast.Mult:
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (list, tuple, str)) and _is_int(n) and n > 0:
                if _size(seq) * n > MAX_ITEMS:
                    raise ExpressionError(f"a list or string of more than {MAX_ITEMS} items "
                                          f"({_size(seq)} x {short(n, 20)})")
    if op is ast.Add and isinstance(left, (list, tuple, str)) and isinstance(right, (list, tuple, str)):
        if _size(left) + _size(right) > MAX_ITEMS:
            raise ExpressionError(f"a list or string of more than {MAX_ITEMS} items")


def _checked(value: Any) -> Any:
    """``value`` if within the size limits (see the module docstring)."""
    if _is_int(value):
        if abs(value) >= _INT_LIMIT:
            raise ExpressionError(f"an integer with more than {MAX_INT_DIGITS} digits")
    elif isinstance(value, (list, tuple, str)) and _size(value) > MAX_ITEMS:
        raise ExpressionError(f"a list or string of more than {MAX_ITEMS} items")
    return value
