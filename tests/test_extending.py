"""docs/extending.md, followed literally: each walk-through's module is taken from the doc's code
block, written into a plug-in folder on its registry package's path (as if it were the file the doc
names), found by discovery, and the doc's shell commands are run through ``codetron.cli.main`` -- but for
``convert to-hf --check``, which builds a megatron-core model (process group, CPU patches) and so runs as a
child process with the plug-in folder on the family package's path (a ``sitecustomize``)."""
from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from codetron.cli import main as codetron

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def section(title: str) -> str:
    """The doc's ``## title`` section, up to the next ``##`` heading outside a fenced block."""
    lines = DOC.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index(f"## {title}\n")
    fenced, end = False, len(lines)
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].startswith("```")
        if not fenced and lines[i].startswith("## "):
            end = i
            break
    return "".join(lines[start:end])


def blocks(text: str, lang: str) -> list[str]:
    """Fenced blocks of ``lang``; a fence closes only at a line of its own (the code holds ``` in strings)."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.M | re.S)


def plug_in(monkeypatch, tmp_path: Path, package, code: str, folder: str) -> str:
    """Write the doc's module (its first line names the file) into a folder on ``package``'s path."""
    rel = code.splitlines()[0].removeprefix("# ")
    assert rel.startswith(folder) and rel.endswith(".py"), f"the block should start with '# {folder}NAME.py': {rel}"
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / Path(rel).name).write_text(code, encoding="utf-8")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(plugins)])
    name = f"{package.__name__}.{Path(rel).stem}"
    assert name not in sys.modules
    return name


def commands(text: str) -> list[list[str]]:
    """Each command of the doc's bash blocks (a line ending in a backslash goes on on the next)."""
    return [shlex.split(line) for block in blocks(text, "bash")
            for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def run(argv: list[str]) -> None:
    assert argv[0] == "codetron"
    assert codetron(argv[1:]) == 0, argv


PROBLEMS = [
    ("add", "x: int, y: int", "Add two numbers.", "    return x + y\n", "assert candidate(2, 3) == 5"),
    ("square", "x: int", "The square of x.", "    return x * x\n", "assert candidate(3) == 9"),
    ("bigger", "x: int, y: int", "The larger of x and y.", "    return x if x > y else y\n",
     "assert candidate(2, 7) == 7 and candidate(7, 2) == 7"),
]


def acme_problems() -> list[dict]:
    return [{"task_id": f"Acme/{i}", "entry_point": name,
             "prompt": f'def {name}({args}) -> int:\n    """{doc}"""\n', "canonical_solution": body,
             "test": f"def check(candidate):\n    {test}\n"} for i, (name, args, doc, body, test) in enumerate(PROBLEMS)]


def test_add_an_eval_task(tmp_path, monkeypatch, capsys):
    from codetron.eval import tasks as tasks_package
    from codetron.eval.prompts import EOS, STOP_CONTINUE
    from codetron.eval.tasks import base
    from codetron.templates import starcoder2_instruct_prompt

    text = section("Add an eval task")
    (code,) = blocks(text, "python")
    # the registry as it is now, restored afterwards: the plug-in task must not leak into other tests
    base.all_tasks()  # the shipped task modules are imported and registered first (into the real lists)
    monkeypatch.setattr(base, "REGISTRY", dict(base.REGISTRY))
    monkeypatch.setattr(base, "BUILDERS", list(base.BUILDERS))
    monkeypatch.setattr(base, "_BUILT", list(base._BUILT))
    module = plug_in(monkeypatch, tmp_path, tasks_package, code, "eval/tasks/")
    monkeypatch.chdir(tmp_path)
    problems = acme_problems()
    Path("acme.jsonl").write_text("".join(json.dumps(p) + "\n" for p in problems))
    try:
        task = base.get_task("acme-python")  # discovery found the new module: nothing else was edited
        assert sys.modules[module].__file__ == str(tmp_path / "plugins" / "acme.py")
        p0 = task.load("acme.jsonl")[0]
        assert task.prompt(p0, "continue") == p0["prompt"]
        assert task.stop("continue") == STOP_CONTINUE + [EOS]
        assert task.postprocess(p0, "continue", "    return x + y\n\ndef other():") == p0["prompt"] + "    return x + y\n"
        instruction = f"Complete the following Python function:\n```python\n{p0['prompt']}```"
        assert task.prompt(p0, "starcoder2-instruct") == (starcoder2_instruct_prompt(instruction)
                                                          + f"\n```python\n{p0['prompt']}")
        assert task.stop("starcoder2-instruct") == ["\n```"]
        assert task.postprocess(p0, "starcoder2-instruct", "\n    return x + y\n```\nDone.") == (
            p0["prompt"] + "\n    return x + y\n")

        # the doc's commands; generations.json (one right, one wrong sample per problem) is what
        # `codetron eval run/generate` would have written
        right = [task.postprocess(p, "continue", p["canonical_solution"] + "\nprint('done')") for p in problems]
        wrong = [r.replace("x + y", "x - y").replace("x * x", "x + x").replace("x > y", "x < y") for r in right]
        Path("generations.json").write_text(json.dumps([[r, w] for r, w in zip(right, wrong)]))
        cmds = commands(text)
        assert [c[:3] for c in cmds] == [["codetron", "eval", "tasks"]] + [["codetron", "eval", "execute"]] * 2
        run(cmds[0])
        assert re.search(r"^acme-python +python +--prompt continue\|starcoder2-instruct .*docs/extending.md",
                         capsys.readouterr().out, re.M)
        run(cmds[1])
        assert json.loads(Path("out/acme-canonical/metrics.json").read_text())["acme-python"]["pass@1"] == 1.0
        run(cmds[2])
        scored = json.loads(Path("out/acme/per_problem.json").read_text())
        assert [[s["passed"] for s in p["samples"]] for p in scored] == [[True, False]] * 3
        assert json.loads(Path("out/acme/metrics.json").read_text())["acme-python"]["pass@1"] == 0.5
    finally:
        sys.modules.pop(module, None)


def test_add_a_prompt_format(tmp_path, monkeypatch, capsys):
    from codetron.eval import formats
    from codetron.eval.tasks import base

    text = section("Add a prompt format")
    (code,) = blocks(text, "python")
    module = plug_in(monkeypatch, tmp_path, formats, code, "eval/formats/")
    # tasks are built again from the formats registered now, and restored afterwards
    base.all_tasks()
    monkeypatch.setattr(base, "REGISTRY", {})
    monkeypatch.setattr(base, "BUILDERS", list(base.BUILDERS))
    monkeypatch.setattr(base, "_BUILT", [])
    try:
        formats.discover()
        assert sys.modules[module].__file__ == str(tmp_path / "plugins" / "inst.py")
        assert codetron(["eval", "formats"]) == 0
        assert re.search(r"^inst +docs/extending.md \(example\)$", capsys.readouterr().out, re.M)
        data = Path(__file__).resolve().parent / "eval" / "data" / "humanevalpack_python.jsonl"
        synth = base.get_task("humanevalsynthesize-python")
        assert "inst" in synth.formats and synth.formats[0] == "instruct"  # the default is unchanged
        p0 = synth.load(data)[0]
        assert synth.prompt(p0, "inst") == f"[INST] {p0['instruction'].strip()} [/INST]\n{p0['prompt']}".strip()
        assert synth.stop("inst") == ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert", "[INST]",
                                      "<|endoftext|>"]
        fix = base.get_task("humanevalfixtests-python")
        f0 = fix.load(data)[0]
        context = f0["declaration"] + f0["buggy_solution"] + "\n" + f0["test"]
        # not context_first: the instruction, then the code it is about (as octocoder and starchat)
        assert fix.prompt(f0, "inst") == f"[INST] Fix bugs in add.\n{context} [/INST]\n{f0['declaration']}".strip()
        # the answer is cut at the format's stop sequence, then at the end of the function
        assert fix.postprocess(f0, "inst", "\n    return x + y\n[INST] more") == (
            f0["declaration"].rstrip() + "\n    return x + y\n")
    finally:
        formats.FORMATS.pop("inst", None)
        sys.modules.pop(module, None)


def test_add_a_data_source(tmp_path, monkeypatch, capsys):
    import csv

    from codetron.preprocess import sources
    from codetron.preprocess.sources import base

    text = section("Add a data source")
    (code,) = blocks(text, "python")
    monkeypatch.setattr(base, "SOURCES", dict(base.SOURCES))
    monkeypatch.setattr(sources, "SOURCES", base.SOURCES)
    module = plug_in(monkeypatch, tmp_path, sources, code, "preprocess/sources/")
    monkeypatch.chdir(tmp_path)
    rows = [{"content": "def add(x, y):\n    return x + y\n", "repo": "acme/util", "path": "util/add.py"},
            {"content": "", "repo": "acme/util", "path": "util/__init__.py"},
            {"content": 'print("hello, world")\n', "repo": "acme/demo", "path": "demo.py"}]
    with open("snippets.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["content", "repo", "path"])
        writer.writeheader()
        writer.writerows(rows)
    try:
        sources.discover()
        assert sources.source_for("snippets.csv").name == "csv"
        cmds = commands(text)
        assert [c[:3] for c in cmds] == [["codetron", "preprocess", "code"], ["codetron", "preprocess", "inspect"]]
        run(cmds[0])
        summary = json.loads(Path("out/snippets.summary.json").read_text())
        assert (summary["docs_in"], summary["docs_kept"], summary["errors_total"]) == (3, 2, 1)
        assert summary["errors"] == ["snippets.csv:2: empty document"]
        run(cmds[1])
        assert "def add(x, y):" in capsys.readouterr().out

        # the same records as jsonl give the same tokens (metadata coins off: they hash the file name)
        with open("snippets.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        off = ["--p-repo", "0", "--p-path", "0", "--p-stars", "0", "--workers", "0", "--quiet"]
        run(["codetron", "preprocess", "code", "snippets.csv", "-o", "out/csv", *off])
        run(["codetron", "preprocess", "code", "snippets.jsonl", "-o", "out/jsonl", *off])
        for ext in (".bin", ".idx"):
            assert Path("out/csv" + ext).read_bytes() == Path("out/jsonl" + ext).read_bytes()
        assert Path("out/csv.bin").stat().st_size > 0
    finally:
        sys.modules.pop(module, None)


def test_a_source_cannot_take_a_builtin_suffix_or_give_non_records(tmp_path, monkeypatch):
    from codetron.errors import CodetronError
    from codetron.preprocess import readers
    from codetron.preprocess.sources import base

    monkeypatch.setattr(base, "SOURCES", dict(base.SOURCES))
    with pytest.raises(CodetronError, match=r"^data source 'mine': \.jsonl files are already read by codetron\.preprocess\.readers$"):
        base.register("mine", suffixes=(".jsonl",))(lambda path: iter(()))
    base.register("lines", suffixes=(".lines",))(lambda path: iter([{"text": "a"}, ["not", "a", "dict"]]))
    monkeypatch.setattr(readers.sources, "SOURCES", base.SOURCES)
    f = tmp_path / "x.lines"
    f.write_text("")
    got = list(readers.iter_chunks(str(f)))
    assert [i for c in got[:-1] for i in c.items] == [(1, {"text": "a"})]
    assert (got[-1].line, got[-1].reason) == (2, "data source 'lines' gave a list at row 2, not a record (dict)")


RECIPE_BOOT = ("import sys\nfrom codetron.megatron_ext import recipes\nrecipes.__path__.append(sys.argv[1])\n"
               "recipes.discover()\nfrom codetron.cli import main\nsys.exit(main(sys.argv[2:]))\n")
"""A child ``codetron`` that finds the plug-in folder ``argv[1]`` on the recipe package's path, as the
test process does (training runs in a child: megatron-core's parallel state is process-global)."""


def print_config_values(text: str) -> dict[str, tuple[object, str]]:
    """``{"section.field": (value, source)}`` from ``codetron train --print-config``'s annotated YAML."""
    import yaml

    out, sec = {}, None
    for line in text.splitlines():
        if m := re.match(r"^(\w+):(?: (.*?))?  # (.+)$", line):
            out[m.group(1)] = (yaml.safe_load(m.group(2) or ""), m.group(3))
        elif m := re.match(r"^(\w+):$", line):
            sec = m.group(1)
        elif m := re.match(r"^  (\w+): (.*?)  # (.+)$", line):
            out[f"{sec}.{m.group(1)}"] = (yaml.safe_load(m.group(2)), m.group(3))
    return out


def scaled_row(code: str) -> tuple[str, dict]:
    """The doc's ``SCALED`` row (``"name": dict(key=literal, ...),``) as (name, row)."""
    import ast

    row = ast.parse("{" + code.split("\n", 1)[1].strip().rstrip(",") + "}", mode="eval").body
    (key,), (entry,) = row.keys, row.values
    assert isinstance(entry, ast.Call) and entry.func.id == "dict" and not entry.args
    return key.value, {kw.arg: ast.literal_eval(kw.value) for kw in entry.keywords}


@pytest.mark.slow
def test_add_a_recipe(tmp_path, monkeypatch, capsys):
    import math
    import os
    import subprocess

    import yaml

    from codetron.megatron_ext import presets, recipes
    from codetron.megatron_ext.recipes import base
    from tests.conftest import PYTHON, ROOT, subprocess_env
    from tests.train import test_recipe_docs, test_recipes

    text = section("Add a recipe")
    code, row = blocks(text, "python")
    (doc_section,) = blocks(text, "markdown")
    module = plug_in(monkeypatch, tmp_path, recipes, code, "megatron_ext/recipes/")
    name = "santacoder-pretrain"
    assert name not in recipes.RECIPES  # an example: not shipped
    try:
        recipes.discover()  # discovery found the new module: nothing else was edited
        assert sys.modules[module].__file__ == str(tmp_path / "plugins" / "santacoder_pretrain.py")
        recipe = presets.RECIPES[name]
        assert recipes.module_of(name) == module and presets.get_recipe(name) is recipe
        assert recipe.model_preset == "santacoder-1b" and recipe.published_gpus == 96
        settings = recipe.overrides()
        assert settings == {
            "optim.global_batch_size": 192, "optim.train_iters": 600_000, "optim.lr": 2e-4, "optim.min_lr": 2e-5,
            "optim.lr_warmup_iters": 6000, "optim.lr_decay_style": "cosine", "optim.weight_decay": 0.1,
            "optim.adam_beta1": 0.9, "optim.adam_beta2": 0.95, "optim.adam_eps": 1e-8, "optim.precision": "bf16",
            "data.fim_rate": 0.5}

        # the section for docs/recipes.md, checked as test_recipe_docs checks the shipped ones
        doc = test_recipe_docs.DOC.read_text() + "\n" + doc_section
        assert test_recipe_docs.recipe_sections(doc)[name][0] == "megatron_ext/recipes/santacoder_pretrain.py"
        assert test_recipe_docs.mismatches(name, doc) == []
        assert test_recipe_docs.mismatches(name, doc.replace("| `6000` |", "| `2000` |")) == [
            f"{name}: optim.lr_warmup_iters is 6000 in code, `2000` in recipes.md"]
        # the SCALED row: test_recipes' argument builder takes it as it is
        row_name, scaled = scaled_row(row)
        assert row.startswith("# tests/train/test_recipes.py") and row_name == name
        assert scaled["data"] in test_recipes.SCALED and set(scaled) <= {"tp", "pp", "nproc", "gbs", "iters", "seq",
                                                                        "preset", "data"}
        monkeypatch.setitem(test_recipes.SCALED, name, scaled)
        args = test_recipes._recipe_args(name, "D", tmp_path / "s", None, tmp_path / "l")
        assert args[:3] == ["train", "--recipe", name] and "--optim.train_iters" in args

        cmds = commands(text)
        assert [c[:3] for c in cmds] == [["codetron", "presets"], ["codetron", "train", "--recipe"],
                                         ["codetron", "preprocess", "code"], ["codetron", "train", "--recipe"]]
        run(cmds[0])
        assert re.search(rf"^  {name} +on santacoder-1b +SantaCoder 1.1B pretraining on 96 GPUs$",
                         capsys.readouterr().out, re.M)
        run(cmds[1])
        shown = print_config_values(capsys.readouterr().out)
        assert shown["recipe"] == (name, "command line") and shown["preset"] == ("santacoder-1b", f"recipe {name}")
        assert {k: shown[k] for k in settings} == {k: (v, f"recipe {name}") for k, v in settings.items()}
        assert shown["model.num_layers"] == (24, "preset santacoder-1b")

        # scaled down: the bundled samples and tokenizer as the doc names them (data/ of this checkout)
        monkeypatch.chdir(tmp_path)
        os.symlink(ROOT / "data", tmp_path / "data")
        run(cmds[2])
        assert Path("out/stack.bin").stat().st_size > 0
        proc = subprocess.run([PYTHON, "-c", RECIPE_BOOT, str(tmp_path / "plugins"), *cmds[3][1:]], cwd=tmp_path,
                              env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert "training finished at step 2" in proc.stdout, proc.stdout[-3000:]
        losses = [json.loads(x) for x in Path("runs/santacoder-tiny.jsonl").read_text().splitlines() if x.strip()]
        assert [r["step"] for r in losses] == [1, 2]
        assert all(math.isfinite(r["loss"]) and 0 < r["loss"] < 20 for r in losses), losses
        save = Path("runs/santacoder-tiny")
        it = int((save / "latest_checkpointed_iteration.txt").read_text())
        saved = yaml.safe_load((save / f"iter_{it:07d}" / "codetron_config.yaml").read_text())
        assert (it, saved["recipe"], saved["preset"]) == (2, name, "debug-tiny")
        # only size, batch, steps and warmup were changed on the command line; the rest is the recipe's
        changed = {"optim.global_batch_size": 4, "optim.train_iters": 2, "optim.lr_warmup_iters": 1}
        for key, value in {**settings, **changed}.items():
            sec, field = key.split(".")
            assert saved[sec][field] == value, key
        assert saved["model"]["seq_length"] == 64 and saved["model"]["num_layers"] == 4
    finally:
        presets.RECIPES.pop(name, None)
        base._MODULES.pop(name, None)
        sys.modules.pop(module, None)


def test_a_recipe_name_is_registered_once(tmp_path, monkeypatch):
    from codetron.errors import ConfigError
    from codetron.megatron_ext import recipes
    from codetron.megatron_ext.recipes import RECIPES, base

    monkeypatch.setattr(base, "_MODULES", dict(base._MODULES))
    shipped = RECIPES["rrtf"]
    code = ("# megatron_ext/recipes/rrtf_copy.py\nfrom codetron.megatron_ext.recipes import RECIPES, register\n"
            "register('rrtf', RECIPES['rrtf'])\n")
    module = plug_in(monkeypatch, tmp_path, recipes, code, "megatron_ext/recipes/")
    try:
        with pytest.raises(ConfigError, match=r"^recipe 'rrtf' is registered twice: by codetron\.megatron_ext\."
                                              r"recipes\.rrtf and by codetron\.megatron_ext\.recipes\.rrtf_copy$"):
            recipes.discover()
    finally:
        sys.modules.pop(module, None)
    with pytest.raises(ConfigError, match=rf"^recipe 'mine' \({re.escape(__name__)}\): register\(\) takes a Recipe, "
                                          r"got dict$"):
        base.register("mine", {"lr": 1e-4})
    assert RECIPES["rrtf"] is shipped and "mine" not in RECIPES


def plug_in_family(monkeypatch, tmp_path: Path, code: str) -> str:
    """The doc's family module on the family package's path, found by a fresh registry: the patched
    ``_registry`` (its own cache) is undone with the path, so the shipped families' cache never sees it."""
    import functools

    from codetron.megatron_ext import families

    module = plug_in(monkeypatch, tmp_path, families, code, "megatron_ext/families/")
    monkeypatch.setattr(families, "_registry", functools.lru_cache(maxsize=None)(families._registry.__wrapped__))
    return module


def unplug(module: str) -> None:
    from codetron.megatron_ext import families

    sys.modules.pop(module, None)
    vars(families).pop(module.rsplit(".", 1)[1], None)


def cited_config(source: str) -> dict:
    """``key value`` pairs of a preset's first parenthesis (``config.json (Arch, key value, ...)``)."""
    inner = source.split("(", 1)[1].split(")", 1)[0]
    return {k: json.loads(v) for k, v in (item.split(" ") for item in inner.split(", ") if " " in item)}


def tiny_mistral(out: Path, window: int) -> Path:
    """A random MistralForCausalLM and a tiny byte-level BPE tokenizer (321 tokens), saved by transformers."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

    from tests.convert.conftest import make_tokenizer, save_perturbed

    tok_file = make_tokenizer(out.parent / "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="[PAD]")
    eos = tok.eos_token_id
    config = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=176, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                           sliding_window=window, rms_norm_eps=1e-6, tie_word_embeddings=False,
                           bos_token_id=eos, eos_token_id=eos, initializer_range=0.2)
    torch.manual_seed(0)
    save_perturbed(MistralForCausalLM(config), out, norm_marker="norm")  # RMSNorm weights off their ones
    tok.save_pretrained(str(out))
    return out


def run_with_plugin(argv: list[str], plugins: Path, site: Path) -> "subprocess.CompletedProcess":
    """``argv`` as ``python -m codetron ...`` in a child process whose ``sitecustomize`` puts the plug-in
    folder on the family package's path, as the module's file in megatron_ext/families/ would be."""
    import os
    import subprocess

    from tests.conftest import PYTHON, ROOT, subprocess_env

    site.mkdir()
    (site / "sitecustomize.py").write_text("from codetron.megatron_ext import families\n"
                                           f"families.__path__.append({str(plugins)!r})\n")
    env = subprocess_env()
    env["PYTHONPATH"] = str(site) + os.pathsep + env["PYTHONPATH"]
    assert argv[0] == "codetron"
    return subprocess.run([PYTHON, "-m", "codetron", *argv[1:]], cwd=Path.cwd(), env=env, capture_output=True,
                          text=True, timeout=300)


WINDOW = 16
"""The tiny model's sliding window: an eighth of the 128 tokens `convert check` compares."""


@pytest.mark.slow
def test_add_a_model_family(tmp_path, monkeypatch):
    import torch

    from codetron.megatron_ext import families
    from tests.convert.conftest import read_tensors

    text = section("Add a model family")
    code = blocks(text, "python")[0]
    shipped_path = list(families.__path__)
    monkeypatch.chdir(tmp_path)
    tiny_mistral(tmp_path / "mistral-hf", WINDOW)
    cmds = commands(text)
    assert [c[:3] for c in cmds[:2]] == [["codetron", "convert", "from-hf"], ["codetron", "convert", "to-hf"]]
    assert cmds[0][3] == "mistral-hf" and "--check" in cmds[1]
    module = plug_in_family(monkeypatch, tmp_path, code)
    try:
        family = families.for_model_type("mistral")  # discovery found the new module: nothing else was edited
        assert family.name == "mistral" and sys.modules[module].__file__ == str(tmp_path / "plugins" / "mistral.py")

        run(cmds[0])  # from-hf in this process: it only streams tensors
        import yaml

        saved = yaml.safe_load(Path(cmds[0][4], "iter_0000000", "codetron_config.yaml").read_text())["model"]
        assert (saved["family"], saved["sliding_window"], saved["num_query_groups"]) == ("mistral", WINDOW, 2)
        # to-hf --check builds megatron-core's model (process group, CPU patches): a child process
        proc = run_with_plugin(cmds[1], tmp_path / "plugins", tmp_path / "site")
        assert proc.returncode == 0 and "check passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-5000:]
        diff = float(re.search(r"max \|logit diff\| (\S+)", proc.stdout).group(1))
        assert diff <= 1e-4 and "argmax agreement 1.0000" in proc.stdout and "tokens identical" in proc.stdout

        back = Path(cmds[1][4])
        original, converted = read_tensors(tmp_path / "mistral-hf"), read_tensors(back)
        assert original.keys() == converted.keys() and "lm_head.weight" in converted
        for k in original:  # bit-identical: same dtype, same bytes
            assert original[k].dtype == converted[k].dtype, k
            assert torch.equal(original[k].view(torch.uint8), converted[k].view(torch.uint8)), k
        cfg = json.loads((back / "config.json").read_text())
        assert (cfg["architectures"], cfg["model_type"], cfg["sliding_window"]) == (["MistralForCausalLM"], "mistral",
                                                                                     WINDOW)
        assert "attention_bias" not in cfg and cfg["num_key_value_heads"] == 2

        # known wrong: the same module with the window left out (no from_hf_config) converts without
        # error, and the comparison with transformers' Mistral on the same folder fails
        start, end = code.index("    def from_hf_config("), code.index("\n\n\nFAMILY = ")
        wrong = code[:start].rstrip() + "\n" + code[end:]
        unplug(module)
        monkeypatch.setattr(families, "__path__", shipped_path)
        (tmp_path / "wrong").mkdir()
        module = plug_in_family(monkeypatch, tmp_path / "wrong", wrong)
        run(["codetron", "convert", "from-hf", "mistral-hf", "ckpt/no-window", "--quiet"])
        no_window = run_with_plugin(["codetron", "convert", "check", "ckpt/no-window", "mistral-hf", "--json"],
                                    tmp_path / "wrong" / "plugins", tmp_path / "wrong" / "site")
        res = json.loads([ln for ln in no_window.stdout.splitlines() if ln.startswith("{")][-1])
        assert no_window.returncode == 1 and not res["ok"], res
        assert res["max_abs_diff"] > 100 * diff + 1e-3, res
    finally:
        unplug(module)


def test_add_a_model_family_preset(tmp_path, monkeypatch, capsys):
    import dataclasses

    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from codetron.convert.cli import build_parser
    from codetron.convert.hf_config import from_hf_config
    from codetron.megatron_ext import families, presets
    from codetron.megatron_ext.model import check_architecture

    text = section("Add a model family")
    code, preset_code = blocks(text, "python")
    module = plug_in_family(monkeypatch, tmp_path, code)
    try:
        entry = eval("{" + preset_code + "}", vars(presets))  # the doc's dict entry, as presets.py would hold it
        monkeypatch.setattr(presets, "MODEL_PRESETS", {**presets.MODEL_PRESETS, **entry})
        preset = presets.get_model_preset("mistral-7b")
        check_architecture(preset.model, tensor_parallel=8)
        # the preset is its cited config.json as the family reads it (the paper's 8192 is the training length)
        cited = cited_config(preset.source)
        assert cited["sliding_window"] == 4096 and len(cited) == 12, cited
        hf_config = MistralConfig(**cited)
        read = from_hf_config(hf_config.to_dict(), "config.json")
        assert read.family == "mistral" and dataclasses.replace(read, seq_length=8192) == preset.model
        with torch.device("meta"):
            hf_params = sum(p.numel() for p in MistralForCausalLM(hf_config).parameters())
        assert families.num_parameters(preset.model) == hf_params == 7_241_732_096

        cmds = commands(text)[2:]
        assert cmds == [["codetron", "train", "--fields"], ["codetron", "presets"]]
        run(cmds[0])
        assert "--model.family (default 'gpt_bigcode'; one of gpt_bigcode, llama, mistral, starcoder2)" in (
            capsys.readouterr().out)
        run(cmds[1])
        assert re.search(r"^  mistral-7b +32L h4096 +32 heads +seq 8192 +~ ?7\.24B +Mistral 7B v0\.1 ",
                         capsys.readouterr().out, re.M)
        assert "MistralForCausalLM" in build_parser().format_help()
    finally:
        unplug(module)
