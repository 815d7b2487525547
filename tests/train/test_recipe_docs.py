"""docs/recipes.md, the fidelity table, cannot drift from the recipes in code: every value a recipe
sets has a row, and every config row's Codetron cell is the resolved value."""
from __future__ import annotations

import re

import pytest

from codetron.megatron_ext.presets import RECIPES, resolve_config
from codetron.megatron_ext.recipes import module_of
from tests.conftest import ROOT

DOC = ROOT / "docs" / "recipes.md"

KEY = re.compile(r"^`(\w+)\.(\w+)`$")
OPENING = re.compile(r"\A\s*`--recipe ([\w.-]+)`: `([\w/.]+)`\.\n")
"""The line a recipe's section opens with: `` `--recipe NAME`: `megatron_ext/recipes/MODULE.py`. ``"""


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def recipe_sections(text: str) -> dict[str, tuple[str, str]]:
    """``{recipe name: (module file the section names, section body)}`` for every ``##`` section that
    opens with a recipe's line."""
    found = {}
    for body in sections(text).values():
        if m := OPENING.match(body):
            assert m.group(1) not in found, f"two sections for recipe {m.group(1)}"
            found[m.group(1)] = (m.group(2), body)
    return found


def config_rows(body: str) -> dict[str, str]:
    """``{"section.field": Codetron cell}`` of one section's table (5 columns)."""
    rows = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (m := KEY.match(cells[0])):
            key = f"{m.group(1)}.{m.group(2)}"
            assert key not in rows, f"{key} listed twice"
            rows[key] = cells[3]
    return rows


def parse(cell: str):
    text = cell.strip("`")
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def test_every_recipe_has_its_section():
    found = recipe_sections(DOC.read_text())
    assert set(found) == set(RECIPES)
    for name, (path, _) in found.items():  # the module named is the one that registers the recipe
        assert module_of(name) == "codetron." + path.removesuffix(".py").replace("/", "."), name


def mismatches(name: str, text: str) -> list[str]:
    """What the section of recipe ``name`` in ``text`` gets wrong against the code."""
    rows = config_rows(recipe_sections(text)[name][1])
    set_here = RECIPES[name].overrides()
    out = [f"{name}: no row for {key}" for key in set_here if key not in rows]
    resolved = resolve_config(recipe=name)
    for key, cell in rows.items():
        sec, field = key.split(".")
        want, got = getattr(getattr(resolved, sec), field), parse(cell)
        if got != want or type(got) is not type(want):
            out.append(f"{name}: {key} is {want!r} in code, {cell} in {DOC.name}")
    return out


@pytest.mark.parametrize("name", list(RECIPES))
def test_table_lists_every_recipe_value_as_in_code(name):
    assert mismatches(name, DOC.read_text()) == []


def test_a_wrong_or_missing_value_is_caught():
    text = DOC.read_text()
    assert mismatches("wizardcoder-sft", text.replace("150 | `2e-05` |", "150 | `3e-05` |")) == [
        "wizardcoder-sft: optim.lr is 2e-05 in code, `3e-05` in recipes.md"]
    dropped = "\n".join(ln for ln in text.splitlines() if not ln.startswith("| `optim.lr_warmup_iters` | 30 |"))
    assert mismatches("wizardcoder-sft", dropped) == ["wizardcoder-sft: no row for optim.lr_warmup_iters"]
    assert mismatches("rrtf", text.replace("| `True` |", "| `1` |")) != []  # a bool is not a number
