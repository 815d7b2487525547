"""HumanEvalPack Go/27 (FlipCase), the published record (tests/eval/data/humanevalpack_go27.jsonl, copied
from bigcode-project/octopack evaluation/create/humaneval-x/data/go/data/humanevalpack.jsonl, the file
the hub's bigcode/humanevalpack Go split is built from; MIT): its prompt imports "strings", which the
canonical solution never uses.

The reference runner, bigcode-evaluation-harness ``bigcode_eval/tasks/humanevalpack.py``
``process_results`` (Go branch), keeps the prompt's import block in the program: it only checks that
``doc["import"]`` names packages of its ``IMPORT_HELPER`` and adds the ones the code uses that are not
imported yet; it never removes one. ``go test`` then stops at ``"strings" imported and not used``, so
the canonical solution scores failed there, and must here too (CodeGeeX's HumanEval-X runner removes
the import, ``evaluate_humaneval_x.py`` lines 59-60; the harness does not). A solution that uses
``strings`` passes: the import is the only cause."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codetron.eval.languages import humanevalpack_program, toolchain_missing
from codetron.eval.tasks import get_task, run_programs

RECORD = json.loads((Path(__file__).parent / "data" / "humanevalpack_go27.jsonl").read_text())

UNUSED = re.compile(r'imported and not used: "strings"|"strings" imported and not used')
"""Go up to 1.19 / from 1.20 on."""

USES_STRINGS = """    var b strings.Builder
    for _, c := range str {
        switch {
        case c >= 'a' && c <= 'z':
            b.WriteRune(c - 32)
        case c >= 'A' && c <= 'Z':
            b.WriteRune(c + 32)
        default:
            b.WriteRune(c)
        }
    }
    return b.String()
}
"""


def test_program_keeps_the_prompts_import_as_the_harness_does():
    task = get_task("humanevalsynthesize-go")
    (doc,) = task.load(Path(__file__).parent / "data" / "humanevalpack_go27.jsonl")
    assert doc["import"] == 'import (\n    "strings"\n)' and "strings." not in doc["canonical_solution"]
    program = humanevalpack_program("go", task.canonical(doc), doc)
    # the test setup, no extra import block (every package the code names is imported), then the
    # prompt with its own import, the solution and the test
    assert program.startswith(doc["test_setup"] + "\n" + doc["prompt"] + doc["canonical_solution"])
    assert program.count('"strings"') == 1 and program.endswith(doc["test"])


@pytest.mark.slow
def test_canonical_fails_as_under_the_reference_and_strings_user_passes():
    missing = toolchain_missing("go")
    if missing:
        pytest.skip(f"cannot run Go here: {missing}")
    task = get_task("humanevalsynthesize-go")
    (doc,) = task.load(Path(__file__).parent / "data" / "humanevalpack_go27.jsonl")
    programs = [task.program(doc, code) for code in
                (task.canonical(doc), doc["prompt"] + USES_STRINGS, doc["prompt"] + doc["buggy_solution"])]
    canonical, strings_user, buggy = run_programs(programs, "go", 20.0, 2, task=task.name)
    assert (canonical.passed, canonical.error_kind) == (False, "compile"), canonical
    assert UNUSED.search(canonical.output), canonical.output
    assert strings_user.passed, strings_user
    assert not buggy.passed and UNUSED.search(buggy.output)
