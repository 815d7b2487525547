"""The folder tree is the architecture: stages talk through public names only, in one direction.

Read from the source with ``ast`` (imports inside functions count too):
- no module reaches a ``_private`` name (or a ``_private`` module) of another top-level folder;
- ``eval/`` never imports ``preprocess`` (generation may call eval's public APIs, not the reverse);
- ``megatron_ext/`` does no data generation: it imports neither eval (sandbox, decoding) nor an
  HTTP client.
Imports written as ``codetron.<stage>...`` (the namespaced install) count as ``<stage>``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("preprocess", "megatron_ext", "slurm", "convert", "eval", "codetron")
HTTP_MODULES = ("urllib.request", "http.client", "requests", "httpx", "aiohttp")


def owner(module: str) -> str:
    """The top-level folder a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] == "codetron" and len(parts) > 1 and parts[1] in FOLDERS:
        return parts[1]
    return parts[0]


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports(tree: ast.AST):
    """``(module, imported name or None, bound local name, line)`` for every absolute import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, a.asname or a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            for a in node.names:
                yield node.module, a.name, a.asname or a.name, node.lineno


def private_reaches(source: str, folder: str) -> list[str]:
    """Places in ``source`` (a module of ``folder``) that use a private name of another folder."""
    tree = ast.parse(source)
    found, foreign = [], set()
    for module, name, bound, line in imports(tree):
        if owner(module) not in FOLDERS or owner(module) == folder:
            continue
        dotted = module + ("." + name if name else "")
        if any(is_private(p) for p in dotted.split(".")):
            found.append(f"line {line}: imports {dotted}")
        foreign.add(bound)  # `import eval.generate` binds `eval`: its attribute chains start there
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in foreign and any(is_private(a) for a in chain):
                found.append(f"line {node.lineno}: uses {base.id}.{'.'.join(reversed(chain))}")
    return sorted(set(found))


def sources():
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield folder, path


def test_checker_sees_the_patterns_it_forbids():
    assert private_reaches("from eval.generate import _decode_batch, sample_seed\n", "megatron_ext") == [
        "line 1: imports eval.generate._decode_batch"]
    assert private_reaches("def f():\n    import eval.generate as g\n    return g._generate_vllm\n", "preprocess") == [
        "line 3: uses g._generate_vllm"]
    assert private_reaches("import codetron.eval.generate\ncodetron.eval.generate._x()\n", "preprocess") == [
        "line 2: uses codetron.eval.generate._x"]
    assert private_reaches("from eval import _sandbox\n", "codetron") == ["line 1: imports eval._sandbox"]
    # inside one folder, and dunders, are fine
    assert private_reaches("from eval.generate import _decode_batch\n", "eval") == []
    assert private_reaches("import eval.generate\nprint(eval.generate.__doc__)\n", "preprocess") == []


def test_no_private_name_crosses_a_folder():
    bad = [f"{path.relative_to(ROOT)} {place}" for folder, path in sources()
           for place in private_reaches(path.read_text(encoding="utf-8"), folder)]
    assert not bad, "private names used across folders (give the owner a public API):\n" + "\n".join(bad)


@pytest.mark.parametrize("folder, forbidden, why", [
    ("eval", ("preprocess",), "eval must not depend on preprocess (move what both need to its owner)"),
    ("megatron_ext", ("eval",) + HTTP_MODULES, "data generation belongs in preprocess/generate"),
])
def test_folder_does_not_import(folder, forbidden, why):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module, name, _, line in imports(ast.parse(path.read_text(encoding="utf-8"))):
            full = module + ("." + name if name else "")
            if owner(module) in forbidden or any(full == f or full.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {full}")
    assert not bad, f"{why}:\n" + "\n".join(bad)


def test_every_import_of_a_stage_is_namespaced():
    """The stages install as ``codetron.<stage>``: a bare ``import eval`` works only by accident in
    a checkout (and would load the module twice next to ``codetron.eval``)."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0].endswith(".egg-info"):
            continue
        for module, _, _, line in imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in FOLDERS[:-1]:
                bad.append(f"{rel}:{line}: {module}")
    assert not bad, "write stage imports as codetron.<stage>...:\n" + "\n".join(bad)


CONFIG_SUFFIXES = ("Config", "Preset", "Profile", "Options", "Settings")
"""Dataclasses named like these are what users set: each field carries a docstring (CONTRIBUTING.md, "Conventions")."""


def undocumented_config_fields(source: str) -> list[str]:
    """``Class.field`` of config-named dataclasses in ``source`` with no string literal under the field."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.ClassDef) and node.name.endswith(CONFIG_SUFFIXES)):
            continue
        if not any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            continue
        for field, after in zip(node.body, node.body[1:] + [None]):
            if not isinstance(field, ast.AnnAssign) or "ClassVar" in ast.unparse(field.annotation):
                continue
            documented = (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                          and isinstance(after.value.value, str) and after.value.value.strip())
            if not documented:
                found.append(f"{node.name}.{ast.unparse(field.target)} (line {field.lineno})")
    return found


def test_config_field_checker_sees_a_missing_docstring():
    src = "@dataclass\nclass XConfig:\n    a: int = 1\n    '''doc'''\n    b: int = 2\n    c: int = 3\n    ''\n"
    assert undocumented_config_fields(src) == ["XConfig.b (line 5)", "XConfig.c (line 6)"]


def test_every_config_field_has_a_docstring():
    missing = [f"{path.relative_to(ROOT)}: {where}" for _, path in sources()
               for where in undocumented_config_fields(path.read_text())]
    assert not missing, "config fields without a docstring:\n" + "\n".join(missing)


def test_train_fields_listing_documents_every_field():
    from codetron.megatron_ext.train import list_fields

    bare = [line for line in list_fields().splitlines() if line.startswith("  --") and line.rstrip().endswith("):")]
    assert not bare, "fields listed by `codetron train --fields` without a description:\n" + "\n".join(bare)


# ---- model families: one module each, reached through the registry --------------------------------

FAMILY_PACKAGE = ROOT / "megatron_ext" / "families"
FAMILY_NAMES = ("gpt_bigcode", "starcoder2")
"""Literal names no code outside the family package may compare with (the registry lists more)."""


def _is_family_value(node: ast.AST) -> bool:
    """``family``, ``x.family``, ``getattr(x, "family"...)``, ``x.get("family"...)``, ``x["family"]``."""
    if isinstance(node, ast.Name):
        return node.id == "family"
    if isinstance(node, ast.Attribute):
        return node.attr == "family"
    if isinstance(node, ast.Call) and node.args:
        first = node.args[0] if isinstance(node.func, ast.Attribute) and node.func.attr == "get" else \
            node.args[1] if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) > 1 else None
        return isinstance(first, ast.Constant) and first.value == "family"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "family"
    return False


def _strings(node: ast.AST) -> list[str]:
    """String constants of a literal (``"x"`` or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def family_branches(source: str, names=FAMILY_NAMES) -> list[str]:
    """Places in ``source`` that branch on a family: a family value compared with (or matched against)
    a string literal, or any comparison with a literal family name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [s for o in operands for s in _strings(o)]
            if literals and any(_is_family_value(o) for o in operands):
                found.append(f"line {node.lineno}: compares a family with {literals}")
            elif any(s in names for s in literals):
                found.append(f"line {node.lineno}: compares with the family name(s) "
                             f"{[s for s in literals if s in names]}")
        elif isinstance(node, ast.Match) and _is_family_value(node.subject):
            found.append(f"line {node.lineno}: matches on a family")
    return found


def test_family_checker_sees_the_patterns_it_forbids():
    assert family_branches("if model.family == 'starcoder2':\n    pass\n") == [
        "line 1: compares a family with ['starcoder2']"]
    assert family_branches("x = family != 'llama'\n") == ["line 1: compares a family with ['llama']"]
    assert family_branches("ok = cfg.family in ('a', 'b')\n") == ["line 1: compares a family with ['a', 'b']"]
    assert family_branches("y = getattr(m, 'family', 'gpt_bigcode') == 'gpt_bigcode'\n") == [
        "line 1: compares a family with ['gpt_bigcode']"]
    assert family_branches("z = doc.get('family') == 'x'\n") == ["line 1: compares a family with ['x']"]
    assert family_branches("if cfg.get('model_type') == 'starcoder2': pass\n") == [
        "line 1: compares with the family name(s) ['starcoder2']"]
    assert family_branches("match m.family:\n    case 'a':\n        pass\n") == ["line 1: matches on a family"]
    # comparing two families, or asking the registry, is no branch on a name
    assert family_branches("if preset.model.family != cfg.model.family: pass\n") == []
    assert family_branches("fam = families.get(model.family)\nx = {'starcoder2': 1}\n") == []


def test_no_family_branches_outside_the_family_package():
    """Adding a family is one module in ``megatron_ext/families``: nothing else names one to branch on."""
    from codetron.megatron_ext import families

    names = tuple(families.names())
    assert set(FAMILY_NAMES) <= set(names)
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "build") or rel.parts[0].startswith(".") or rel.parts[0].endswith(".egg-info") \
                or path.is_relative_to(FAMILY_PACKAGE):
            continue
        bad += [f"{rel} {place}" for place in family_branches(path.read_text(encoding="utf-8"), names)]
    assert not bad, "branches on a model family outside megatron_ext/families (ask the family instead):\n" + "\n".join(bad)


def test_every_family_module_registers_itself():
    """Discovery, not a list: each module of the package (but the shared ones) is a family named like it."""
    from codetron.megatron_ext import families

    modules = sorted(p.stem for p in FAMILY_PACKAGE.glob("*.py")
                     if p.stem not in families.NOT_FAMILIES and not p.stem.startswith("_"))
    assert list(families.names()) == modules
    for name in modules:
        family = families.get(name)
        assert isinstance(family, families.Family) and family.name == name
