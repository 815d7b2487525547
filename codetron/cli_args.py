"""Command-line options derived from config dataclasses: each default is written once, in the field.

``codetron train`` reads ``--section.field`` straight into ``TrainConfig``; the other stages keep
their argparse surface (short, stage-specific option names such as ``--n-samples``) but build every
option that sets a config field with :func:`add_field`, which takes the default, the type and the
help text from the field and its docstring. An option whose default is written as a literal in a
parser is a second copy that drifts (``GenerationConfig.prompt`` said "continue" while ``--prompt``
said None); ``tests/test_cli_defaults.py`` builds every stage's parser and fails on one.

argparse rather than jsonargparse or tyro: see CONTRIBUTING.md ("Command-line options") for the
measured start-up cost and error messages behind that choice.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from typing import Any, Callable

DERIVED = "codetron_field"
"""Attribute set on every argparse action built by :func:`add_field`: ``(dataclass, field path,
conversion or None)``, so a test can recompute the default from the field."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass and its bases (the string under each field, whitespace
    folded); a subclass's docstring wins over its base's."""
    if hasattr(cls, "__field_docs__"):  # a static_dataclass
        return dict(cls.__field_docs__)
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. a class made at run time)
            continue
        body = tree.body[0].body
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr) \
                    and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _class_node(module: str, name: str) -> tuple[ast.ClassDef, str]:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ImportError(f"no source for {module}")
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), spec.origin)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, spec.origin
    raise AttributeError(f"{module} has no class {name}")


_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "None": None, "tuple": tuple, "list": list,
          "frozenset": frozenset}


@functools.cache
def static_dataclass(module: str, name: str) -> type:
    """A stand-in for dataclass ``module.name`` read from its source without importing the module, for
    a command line whose --help must not pay for that module's imports (``convert``'s import torch).
    Only literal defaults and builtin annotations are read; anything else raises. The stand-in
    remembers what it stands for (``__static_of__``) so a test can compare it with the real class."""
    node, origin = _class_node(module, name)
    specs, docs = [], {}
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        fname = stmt.target.id
        try:
            tp = eval(compile(ast.Expression(stmt.annotation), origin, "eval"), {"__builtins__": {}}, _TYPES)
            default = dataclasses.MISSING if stmt.value is None else ast.literal_eval(stmt.value)
        except (ValueError, NameError, TypeError, SyntaxError):
            raise TypeError(f"{module}.{name}.{fname}: not a literal default with a builtin type; import the "
                            "class itself") from None
        specs.append((fname, tp, dataclasses.field(default=default)))
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[fname] = " ".join(nxt.value.value.split())
    cls = dataclasses.make_dataclass(name, specs, kw_only=True)
    cls.__field_docs__ = docs
    cls.__static_of__ = (module, name)
    return cls


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise AttributeError(f"{cls.__name__} has no field {name!r}")


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def resolve(cls: type, path: str) -> tuple[type, str, Any, Any]:
    """``(owner dataclass, field name, default, annotated type)`` of ``path`` ("field" or
    "nested.field"); a nested field's default is read from its parent's default instance, so a stage
    that sets its own sampling defaults (``field(default_factory=lambda: SamplingParams(...))``) is
    the one source of them."""
    owner, value = cls, dataclasses.MISSING
    *parents, name = path.split(".")
    for part in parents:
        value = _default_of(_field(owner, part)) if value is dataclasses.MISSING else getattr(value, part)
        owner = type(value)
    f = _field(owner, name)
    default = _default_of(f) if value is dataclasses.MISSING else getattr(value, name)
    return owner, name, default, typing.get_type_hints(owner)[name]


def field_default(cls: type, path: str) -> Any:
    """The default of ``path`` in ``cls`` (see :func:`resolve`)."""
    return resolve(cls, path)[2]


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``tuple[str, ...]`` -> str; ``list[float]`` -> float."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) in (list, tuple, frozenset, set):
        tp = typing.get_args(tp)[0]
    return tp


def _show(value: Any) -> str:
    """A default as it is typed on the command line: ``1,10,100`` for a tuple."""
    if isinstance(value, (tuple, list, set, frozenset)):
        return ",".join(str(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value))
    return str(value)


def add_field(parser, cls: type, path: str, *flags: str, negate: bool = False, note: str | None = None,
              convert: Callable[[Any], Any] | None = None, show: Callable[[Any], str] = _show,
              **kwargs) -> argparse.Action:
    """Add the option that sets ``cls``'s field ``path``: default, type and help from the field.

    ``flags`` default to ``--field-name``. ``negate=True`` makes a ``--no-...`` switch of a field
    that defaults to True (``args.<field>`` becomes False when given). ``note`` adds CLI-only words to the help (how
    to repeat the option, what None means on the command line). Other keywords go to argparse
    (``choices``, ``metavar``, ``nargs``, ``action``, ``dest``, ``type`` for a parser of its own).
    ``convert`` maps the field's default to the option's unit (``--memory-mb`` of ``memory_bytes``);
    the caller converts the parsed value back. ``show`` writes the default in the help as it is typed.
    """
    if "default" in kwargs:
        raise TypeError(f"--{path}: the default comes from {cls.__name__}.{path}, not from the parser")
    owner, name, default, tp = resolve(cls, path)
    if default is dataclasses.MISSING:
        default = None  # a required field: the parser leaves it to `required=` or to the caller
    elif convert is not None:
        default = convert(default)
    flags = flags or ("--" + name.replace("_", "-"),)
    doc = field_docs(owner).get(name, "")
    help_text = doc.replace("``", "") + (f" {note}" if note else "")  # reST quotes read badly in a terminal
    base = _base_type(tp)
    if negate:
        if default is not True:
            raise TypeError(f"{flags[0]}: negate=True needs a field that defaults to True")
        kwargs.setdefault("action", "store_false")
        kwargs.setdefault("dest", name)  # args.<field> holds the field's value, not its negation
        help_text = f"turn off: {help_text}"
    elif base is bool and "action" not in kwargs:
        if default is True:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["action"] = "store_true"
    elif "type" not in kwargs and kwargs.get("action") not in ("store_true", "store_false", "store_const"):
        if base in (int, float, str):
            kwargs["type"] = base
    if isinstance(default, (tuple, frozenset, set)) and kwargs.get("action") in ("append", Repeat):
        default = list(default)
    empty = default is None or default is False or (isinstance(default, (str, tuple, list, set, frozenset))
                                                      and not default)
    shown = not empty and not negate and kwargs.get("action") not in (
        "store_true", argparse.BooleanOptionalAction)  # the latter prints its own default
    if shown:
        help_text += f" (default: {show(default)})"
    action = parser.add_argument(*flags, default=default, help=help_text.replace("%", "%%"), **kwargs)
    setattr(action, DERIVED, (cls, path, convert))
    return action


class Repeat(argparse.Action):
    """A repeatable option whose first use replaces the default list (argparse's ``append`` would add
    to it: ``--suffix .js`` must mean .js only, not .py and .js)."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        # argparse starts the namespace with the default object itself: the first use replaces it
        setattr(namespace, self.dest, [values] if current is self.default or current is None else [*current, values])


def walk(parser: argparse.ArgumentParser, prog: str | None = None):
    """Yield ``(prog, action)`` for every option of ``parser`` and of its subcommands."""
    prog = prog or parser.prog
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prog} {name}")
        else:
            yield prog, action
