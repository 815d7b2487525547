"""Whether generated tests test anything: one check for every generation stage that keeps an answer
because its own tests pass (``evolve self-instruct``, ``selfalign run``).

Two layers. ``vacuous_reason`` is static (ast, no execution): it rejects tests with no ``assert`` that
reaches a function or class the solution defines (``assert True``, asserts on literals only), tests
that define the solution's names again (the sandbox would run *their* copy), asserts in helper
functions that are never called, asserts inside ``try`` blocks that swallow ``AssertionError``, and
``assert x == x``. A name counts as reaching the solution when the assert mentions a solution name or
a variable assigned (in the same scope) from an expression that does.

What passes it still runs against stand-ins (``programs``): the tests once after the solution, then
once per ``WRONG_IMPLEMENTATIONS`` entry with every solution name they use rebound to a wrong one
(returns None; raises). Meaningful tests pass the first and fail every other (``fooled`` names the
stand-ins that passed). This catches what the static check cannot see: ``assert callable(f)``,
``assert f is not None``, ``assert f(2) == 4 or True`` -- all true of a function that returns None.
"""
from __future__ import annotations

import ast

_SWALLOWERS = {"AssertionError", "Exception", "BaseException"}

WRONG_IMPLEMENTATIONS = {
    "returns_none": "def {name}(*args, **kwargs):\n    return None\n",
    "raises": "def {name}(*args, **kwargs):\n    raise NotImplementedError('codetron: wrong implementation')\n",
}
"""Stand-ins for every function/class under test; meaningful tests fail against each of them."""


def program(solution: str, tests: str) -> str:
    """The solution followed by its tests, as the sandbox runs them."""
    return solution.rstrip() + "\n\n\n" + tests.strip() + "\n"


def names_under_test(solution: str, tests: str) -> list[str] | None:
    """Top-level functions/classes of ``solution`` that ``tests`` use (sorted), or None if either does not
    parse (the sandbox run then fails on its own)."""
    try:
        used = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        return sorted(defined_names(solution) & used)
    except (SyntaxError, ValueError):
        return None


def programs(solution: str, tests: str) -> list[str]:
    """``[solution + tests]`` then, when the tests use solution names, one program per wrong
    implementation (those names rebound to it between the solution and the tests)."""
    names = names_under_test(solution, tests) or []
    wrong = [solution.rstrip() + "\n\n\n" + "".join(stub.format(name=n) for n in names) + "\n\n" + tests.strip()
             + "\n" for stub in WRONG_IMPLEMENTATIONS.values()] if names else []
    return [program(solution, tests), *wrong]


def fooled(passed: list[bool]) -> list[str]:
    """The wrong implementations whose program passed (``passed`` in ``programs`` order, the first being
    the real solution's)."""
    return [kind for kind, ok in zip(WRONG_IMPLEMENTATIONS, passed[1:]) if ok]


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
