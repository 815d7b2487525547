"""The training loop and the HF importer read as a few named steps (issue 13): no function in them
runs over 60 lines, so each step has a name and a docstring instead of a comment banner."""
import ast

import pytest

from tests.conftest import ROOT

MAX_LINES = 60


@pytest.mark.parametrize("path", ["megatron_ext/training.py", "convert/from_hf.py"])
def test_no_long_functions(path):
    tree = ast.parse((ROOT / path).read_text())
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_LINES}
    assert not long, f"{path}: split into named steps: {long}"
