"""Reading one I->R response: its solution, its self-validation tests, and whether those tests test anything.

A response is free text with ```python blocks, then a ``[Tests]`` line and exactly one ```python block
of tests (the published sanitiser's shape). ``parse_response`` returns the sanitised response (cut
right after the tests block: what follows is the model rambling on), the solution code (every block
before ``[Tests]`` that compiles, joined: the published execution filter runs the same) and the tests,
or the drop reason.

``vacuous_reason`` rejects tests that would pass whatever the solution does: no ``assert`` that
reaches a function or class the solution defines (``assert True``, asserts on literals only), tests
that define the solution's names again (the sandbox would run *their* copy), asserts in helper
functions that are never called, asserts inside ``try`` blocks that swallow ``AssertionError``, and
``assert x == x``. A name counts as reaching the solution when the assert mentions a solution name or
a variable assigned (in the same scope) from an expression that does.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

RESPONSE_RULES = ("response_unparsed", "no_solution", "incomplete", "vacuous_tests")
"""Why a response is dropped before execution, in checking order."""

INCOMPLETE_MARKERS = re.compile(r"\btodo\b|\bfixme\b|your code (?:here|goes here)|notimplemented", re.I)
"""Text that marks an unfinished answer (the published sanitiser's list, as whole words: "mastodon"
holds "todo")."""

_BLOCK = re.compile(r"^```[ \t]*(python|py)?[ \t]*\n(.*?)^```", re.S | re.M)
_TESTS = "[Tests]"
_SWALLOWERS = {"AssertionError", "Exception", "BaseException"}


@dataclass(slots=True)
class Parsed:
    response: str
    """The sanitised response (training text)."""
    solution: str
    """Solution code (compilable blocks before [Tests])."""
    tests: str
    """The tests block."""


def compiles(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def parse_response(text: str) -> Parsed | str:
    """A ``Parsed`` response, or the name of the rule it fails."""
    text = text.strip()
    if text.count(_TESTS) != 1:
        return "response_unparsed"
    at = text.index(_TESTS)
    blocks = list(_BLOCK.finditer(text, at))
    if len(blocks) != 1 or text.count("```", at) != 2 or not compiles(blocks[0].group(2)):
        return "response_unparsed"
    before = [m.group(2) for m in _BLOCK.finditer(text[:at])]
    solution = "\n\n".join(code.strip("\n") for code in before if compiles(code) and code.strip())
    if not solution:
        return "no_solution"
    kept = text[:blocks[0].end()].rstrip()
    if INCOMPLETE_MARKERS.search(kept):
        return "incomplete"
    return Parsed(kept, solution + "\n", blocks[0].group(2))


def defined_names(code: str) -> set[str]:
    """Top-level functions and classes of ``code``."""
    return {n.name for n in ast.parse(code).body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def vacuous_reason(solution: str, tests: str) -> str | None:
    """Why ``tests`` cannot tell a right solution from a wrong one, or None when they can."""
    targets = defined_names(solution)
    if not targets:
        return "the solution defines no function or class"
    tree = ast.parse(tests)
    redefined = sorted(targets & _bound_at_top(tree))
    if redefined:
        return f"the tests define {redefined[0]} themselves"
    helpers = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    module_code = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    # a helper reaches the solution when its body does (directly or through another helper)
    reaching_helpers: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, fn in helpers.items():
            if name not in reaching_helpers and _names(fn) & (targets | reaching_helpers):
                reaching_helpers.add(name)
                changed = True
    base = targets | reaching_helpers
    module_reaching = _reaching_names(module_code, base)
    scopes: list[tuple[list[ast.stmt], set[str]]] = [(module_code, base)]
    called = {c.func.id for stmt in module_code for c in ast.walk(stmt)
              if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    for name in sorted(called & set(helpers)):
        fn = helpers[name]
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        # `def check(fn): assert fn(2) == 4` reaches the solution when called as `check(square)`
        scopes.append((fn.body, base | params if _called_with_reaching(module_code, name, module_reaching) else base))
    if _runs_unittest(module_code):
        scopes += [(m.body, base) for c in tree.body if isinstance(c, ast.ClassDef) for m in c.body
                   if isinstance(m, ast.FunctionDef) and m.name.startswith("test")]
    for body, seeds in scopes:
        reaching = _reaching_names(body, seeds)
        if any(_meaningful(check, reaching) for check in _live_checks(body)):
            return None
    return "no assert reaches a function or class of the solution"


def _bound_at_top(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _called_with_reaching(module_code: list[ast.stmt], name: str, reaching: set[str]) -> bool:
    for stmt in module_code:
        for c in ast.walk(stmt):
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == name \
                    and any(_names(a) & reaching for a in [*c.args, *(k.value for k in c.keywords)]):
                return True
    return False


def _runs_unittest(module_code: list[ast.stmt]) -> bool:
    for stmt in module_code:
        for c in ast.walk(stmt):
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "main" \
                    and isinstance(c.func.value, ast.Name) and c.func.value.id == "unittest":
                return True
    return False


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _reaching_names(body: list[ast.stmt], targets: set[str]) -> set[str]:
    """``targets`` plus every variable of ``body`` assigned (or looped over) from something reaching them."""
    reaching = set(targets)
    bindings = []
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Assign):
                bindings += [(t, node.value) for t in node.targets]
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
                bindings.append((node.target, node.value))
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                bindings.append((node.target, node.iter))
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                bindings += [(i.optional_vars, i.context_expr) for i in node.items if i.optional_vars is not None]
    changed = True
    while changed:  # a fixpoint: `a = f(1); b = a + 1; assert b == 3` reaches f through a
        changed = False
        for target, value in bindings:
            if _names(value) & reaching:
                new = _names(target) - reaching
                if new:
                    reaching |= new
                    changed = True
    return reaching


def _live_checks(body: list[ast.stmt]):
    """Assert statements and ``assert*(...)`` calls that run when ``body`` runs: not inside nested
    functions or classes, nor in a ``try`` whose handler swallows AssertionError."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(stmt, ast.Assert):
            yield stmt.test
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            func = stmt.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("assert"):
                yield stmt.value
                continue
        if isinstance(stmt, (ast.Try, ast.TryStar)):
            if not any(_swallows(h) for h in stmt.handlers):
                yield from _live_checks(stmt.body)
            for h in stmt.handlers:
                yield from _live_checks(h.body)
            yield from _live_checks(stmt.orelse)
            yield from _live_checks(stmt.finalbody)
            continue
        for field in ("body", "orelse"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from _live_checks(inner)
        if isinstance(stmt, ast.Match):
            for case in stmt.cases:
                yield from _live_checks(case.body)


def _swallows(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _SWALLOWERS for t in types)


def _meaningful(check: ast.expr, reaching: set[str]) -> bool:
    if not (_names(check) & reaching):
        return False
    if isinstance(check, ast.Compare) and len(check.comparators) == 1 \
            and ast.dump(check.left) == ast.dump(check.comparators[0]):
        return False  # `assert f(1) == f(1)` holds for every f
    return True
