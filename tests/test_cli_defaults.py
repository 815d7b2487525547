"""Each default is written once: every stage's command line takes its defaults (and help) from the
config dataclasses through ``codetron.cli_args.add_field``.

The parsers are built the way ``codetron <stage>`` builds them: each stage's ``main`` runs until it
asks argparse to parse, and that parser is taken. A literal default in a parser (a second copy of a
dataclass default, free to drift: ``--prompt`` None against ``GenerationConfig.prompt`` "continue"
was one) fails here; so does a derived option whose default no longer equals its field's.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib

import pytest

from codetron.cli import STAGES
from codetron.cli_args import DERIVED, Repeat, add_field, field_docs, resolve, walk

NO_DEFAULT = (None, False, argparse.SUPPRESS)
"""Defaults that restate nothing: no value, a switch that is off, argparse's own help."""


class _Built(Exception):
    def __init__(self, parser):
        self.parser = parser


def stage_parser(stage: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``codetron STAGE`` parses its arguments with."""
    def capture(self, *args, **kwargs):
        raise _Built(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        m.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        module = importlib.import_module(STAGES[stage][0])
        with pytest.raises(_Built) as built:
            module.main([])
    return built.value.parser


def _literal(default) -> bool:
    if isinstance(default, (list, tuple, frozenset, set, dict)):
        return len(default) > 0
    return not any(default is d or (default == d and type(default) is type(d)) for d in NO_DEFAULT)


def _same(a, b) -> bool:
    """Equal as the command line holds it: a repeatable option keeps a tuple or set default as a list."""
    def norm(v):
        if isinstance(v, (set, frozenset)):
            return sorted(v)
        return list(v) if isinstance(v, (list, tuple)) else v
    return norm(a) == norm(b)


def violations(parser: argparse.ArgumentParser) -> list[str]:
    """One line per option whose default is not its dataclass field's, read through add_field."""
    out = []
    for prog, action in walk(parser):
        flag = "/".join(action.option_strings) or action.dest
        tag = getattr(action, DERIVED, None)
        if tag is None:
            if _literal(action.default):
                out.append(f"{prog} {flag}: literal default {action.default!r}; build it with add_field")
            continue
        cls, path, convert = tag
        if hasattr(cls, "__static_of__"):  # read from source for a fast --help: check the real class
            module, qualname = cls.__static_of__
            cls = getattr(importlib.import_module(module), qualname)
        owner, name, default, _ = resolve(cls, path)
        expected = None if default is dataclasses.MISSING else (convert(default) if convert else default)
        if not _same(action.default, expected):
            out.append(f"{prog} {flag}: default {action.default!r}, but {cls.__name__}.{path} is {expected!r}")
        doc = field_docs(owner).get(name)
        if not doc:
            out.append(f"{prog} {flag}: {owner.__name__}.{name} has no docstring to be its help")
        elif doc.replace("``", "") not in (action.help or "").replace("%%", "%"):
            out.append(f"{prog} {flag}: help is not {owner.__name__}.{name}'s docstring")
    return out


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_default_comes_from_a_dataclass(stage, monkeypatch):
    parser = stage_parser(stage, monkeypatch)
    options = [a for _, a in walk(parser) if a.option_strings]
    assert options, f"codetron {stage}: no options found: the parser was not captured"
    assert violations(parser) == []


def test_derived_options_are_counted(monkeypatch):
    """The stages that had literal defaults now derive them: at least as many as there were restated."""
    derived = sum(1 for stage in STAGES for _, a in walk(stage_parser(stage, monkeypatch)) if hasattr(a, DERIVED))
    assert derived >= 91


# --------------------------------------------------------------------------------- the checker itself


@dataclasses.dataclass(kw_only=True)
class _Demo:
    """A config for the checker's own tests."""

    temperature: float = 0.2
    """Softmax temperature."""
    names: tuple[str, ...] = ("a",)
    """Names."""
    on: bool = True
    """A switch that is on."""


def test_checker_flags_a_restated_literal():
    p = argparse.ArgumentParser(prog="demo")
    p.add_argument("--temperature", type=float, default=0.2, help="restates _Demo.temperature")
    assert violations(p) == ["demo --temperature: literal default 0.2; build it with add_field"]


def test_checker_flags_a_derived_default_that_drifted():
    p = argparse.ArgumentParser(prog="demo")
    add_field(p, _Demo, "temperature").default = 0.7
    assert violations(p) == ["demo --temperature: default 0.7, but _Demo.temperature is 0.2"]


def test_add_field_takes_default_type_and_help_from_the_field():
    p = argparse.ArgumentParser(prog="demo")
    t = add_field(p, _Demo, "temperature")
    add_field(p, _Demo, "names", "--name", action=Repeat)
    add_field(p, _Demo, "on", "--off", negate=True)
    assert t.default == 0.2 and t.type is float and t.help.startswith("Softmax temperature.")
    assert p.parse_args([]) == argparse.Namespace(temperature=0.2, name=["a"], on=True)
    # a repeatable option's first use replaces its default list; negation stores the field's value
    assert p.parse_args(["--name", "b", "--name", "c", "--off", "--temperature", "1"]) == \
        argparse.Namespace(temperature=1.0, name=["b", "c"], on=False)
    assert violations(p) == []
    with pytest.raises(TypeError, match="the default comes from _Demo.temperature"):
        add_field(p, _Demo, "temperature", "--t2", default=0.5)


def test_static_dataclass_reads_the_source_as_the_class_is():
    """convert's --help reads ToHFOptions/FromHFOptions from source (no torch import): same fields,
    defaults, types and docstrings as the imported classes."""
    import typing

    from codetron.cli_args import static_dataclass

    for module, name in (("codetron.convert.to_hf", "ToHFOptions"), ("codetron.convert.from_hf", "FromHFOptions")):
        static, real = static_dataclass(module, name), getattr(importlib.import_module(module), name)
        assert [(f.name, f.default) for f in dataclasses.fields(static)] == \
            [(f.name, f.default) for f in dataclasses.fields(real)]
        assert typing.get_type_hints(static) == typing.get_type_hints(real)
        assert field_docs(static) == field_docs(real)
    with pytest.raises(TypeError, match="not a literal default"):
        static_dataclass("codetron.eval.evaluate", "ExecConfig")  # default_factory: import it instead


def test_nested_field_default_is_the_stage_factory_value():
    """A stage's sampling defaults are its own (the factory's values), not SamplingParams' generic ones."""
    from codetron.preprocess.generate.evolve.evolver import EvolConfig
    from codetron.preprocess.generate.selfalign.pipeline import SelfAlignConfig
    from codetron.sampling import SamplingParams

    assert resolve(EvolConfig, "sampling.temperature")[2] == EvolConfig().sampling.temperature == 1.0
    assert resolve(SelfAlignConfig, "sampling.max_new_tokens")[2] == 1536
    assert resolve(EvolConfig, "sampling.temperature")[0] is SamplingParams
