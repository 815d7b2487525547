"""Writes tests/eval/data: 3 hand-made problems per schema (add, larger, square), canonical and buggy."""
# Run: python tests/eval/make_task_data.py tests/eval/data  (MultiPL-E records carry an extra "canonical" body for the tests.)
import gzip, json, sys
from pathlib import Path
out = Path(sys.argv[1])
P = [  # name, camel, doc, args(py), body ok, body bad, tests [(args, expected)]
    ("add", "Add", "Add two numbers x and y", ("x", "y"), "x + y", "x - y", [((2, 3), 5), ((7, 5), 12), ((0, 0), 0)]),
    ("larger", "Larger", "Return the larger of x and y", ("x", "y"), "x if x > y else y", "x if x < y else y",
     [((2, 3), 3), ((9, 4), 9), ((5, 5), 5)]),
    ("square", "Square", "Return x times x", ("x",), "x * x", "x + x", [((3,), 9), ((0,), 0), ((2,), 4)]),
]
EXPR = {  # language-specific body expressions
    "js": {"add": ("x + y", "x - y"), "larger": ("x > y ? x : y", "x < y ? x : y"), "square": ("x * x", "x + x")},
}
for lang in ("java", "go", "cpp", "rust"):
    EXPR[lang] = EXPR["js"]
EXPR["go"] = None
EXPR["rust"] = None

def call_args(a): return ", ".join(str(v) for v in a)

recs = {l: [] for l in ("python", "js", "java", "go", "cpp", "rust")}
for i, (name, camel, doc, args, ok, bad, tests) in enumerate(P):
    sig_args = ", ".join(f"{a}: int" for a in args)
    ex_args, ex_out = tests[0]
    # ---- python
    prompt = f'def {name}({sig_args}) -> int:\n    """{doc}\n    >>> {name}({call_args(ex_args)})\n    {ex_out}\n    """\n'
    test = "\n\nMETADATA = {}\n\n\ndef check(candidate):\n" + "".join(
        f"    assert candidate({call_args(a)}) == {e}\n" for a, e in tests) + f"\ncheck({name})"
    docstring = f"{doc}\n>>> {name}({call_args(ex_args)})\n{ex_out}"
    recs["python"].append(dict(task_id=f"Python/{i}", prompt=prompt, declaration=f"def {name}({sig_args}) -> int:\n",
        canonical_solution=f"    return {ok}\n", buggy_solution=f"    return {bad}\n", bug_type="operator misuse",
        failure_symptoms="incorrect output", entry_point=name, import_="", test_setup="", test=test,
        example_test="", signature=f"{name}({sig_args}) -> int", docstring=docstring,
        instruction=f"Write a Python function `{name}({sig_args}) -> int` to solve the following problem:\n{docstring}"))
    jok, jbad = EXPR["js"][name]
    # ---- js
    jsargs = ", ".join(args)
    recs["js"].append(dict(task_id=f"JavaScript/{i}",
        prompt=f"/*{doc}\n  >>> {name}({call_args(ex_args)})\n  {ex_out}\n  */\nconst {name} = ({jsargs}) => {{\n",
        declaration=f"\nconst {name} = ({jsargs}) => {{\n", canonical_solution=f"  return {jok};\n}}\n\n",
        buggy_solution=f"  return {jbad};\n}}\n\n", entry_point=name, import_="", test_setup="",
        # as published: console.assert, which prints "Assertion failed" and exits 0
        test="const test" + camel + " = () => {\n" + "".join(
            f"  console.assert({name}({call_args(a)}) === {e})\n" for a, e in tests) + "}\n\ntest" + camel + "()\n",
        example_test="", signature=f"const {name} = ({jsargs})", docstring=f"{doc}\n>>> {name}({call_args(ex_args)})\n{ex_out}",
        instruction=f"Write a JavaScript function `const {name} = ({jsargs})` to solve the following problem:\n{docstring}"))
    # ---- java
    jargs = ", ".join(f"int {a}" for a in args)
    head = "import java.util.*;\nimport java.lang.*;\n\nclass Solution {\n"
    recs["java"].append(dict(task_id=f"Java/{i}",
        prompt=head + f"    /**\n    {doc}\n    >>> {name}({call_args(ex_args)})\n    {ex_out}\n     */\n    public int {name}({jargs}) {{\n",
        declaration=head + f"    public int {name}({jargs}) {{\n", canonical_solution=f"        return {jok};\n    }}\n}}",
        buggy_solution=f"        return {jbad};\n    }}\n}}", entry_point=name, import_="", test_setup="",
        test="public class Main {\n    public static void main(String[] args) {\n        Solution s = new Solution();\n"
             "        List<Boolean> correct = Arrays.asList(\n" + ",\n".join(
                 f"                s.{name}({call_args(a)}) == {e}" for a, e in tests) +
             "\n        );\n        if (correct.contains(false)) {\n            throw new AssertionError();\n        }\n    }\n}",
        example_test="", signature=f"public int {name}({jargs})", docstring=docstring,
        instruction=f"Write a Java function `public int {name}({jargs})` to solve the following problem:\n{docstring}"))
    # ---- go
    gargs = ", ".join(f"{a} int" for a in args)
    gok = {"add": "x + y", "larger": ">", "square": "x * x"}[name]
    gbad = {"add": "x - y", "larger": "<", "square": "x + x"}[name]
    def go_body(e):  # Go before 1.21 has no max builtin
        if e in "<>":
            return f"    if x {e} y {{\n        return x\n    }}\n    return y\n}}\n\n"
        return f"    return {e}\n}}\n\n"
    recs["go"].append(dict(task_id=f"Go/{i}",
        prompt=f"\n// {doc}\n// >>> {camel}({call_args(ex_args)})\n// {ex_out}\nfunc {camel}({gargs}) int {{\n",
        declaration=f"\nfunc {camel}({gargs}) int {{\n", canonical_solution=go_body(gok),
        buggy_solution=go_body(gbad), entry_point=camel, import_="",
        test_setup='package main\n\nimport (\n    "testing"\n)\n',
        test=f"func Test{camel}(t *testing.T) {{\n" + "".join(
            f"    if got := {camel}({call_args(a)}); got != {e} {{\n        t.Fatalf(\"{camel}({call_args(a)}) = %d\", got)\n    }}\n"
            for a, e in tests) + "}\n",
        example_test="", signature=f"{camel}({gargs}) int", docstring=docstring,
        instruction=f"Write a Go function `func {camel}({gargs}) int` to solve the following problem:\n{docstring}"))
    # ---- cpp
    cargs = ",".join(f"int {a}" for a in args)
    recs["cpp"].append(dict(task_id=f"CPP/{i}",
        prompt=f"/*\n{doc}\n>>> {name}({call_args(ex_args)})\n{ex_out}\n*/\n#include<stdio.h>\nusing namespace std;\nint {name}({cargs}){{\n",
        declaration=f"#include<stdio.h>\nusing namespace std;\nint {name}({cargs}){{\n",
        canonical_solution=f"    return {jok};\n}}\n", buggy_solution=f"    return {jbad};\n}}\n", entry_point=name,
        import_="", test_setup="",
        test="#undef NDEBUG\n#include<assert.h>\nint main(){\n" + "".join(
            f"    assert ({name}({call_args(a)})=={e});\n" for a, e in tests) + "}\n",
        example_test="", signature=f"int {name}({cargs})", docstring=docstring,
        instruction=f"Write a C++ function `int {name}({cargs})` to solve the following problem:\n{docstring}"))
    # ---- rust
    rargs = ", ".join(f"{a}:i32" for a in args)
    rok = {"add": "x + y", "larger": "if x > y { x } else { y }", "square": "x * x"}[name]
    rbad = {"add": "x - y", "larger": "if x < y { x } else { y }", "square": "x + x"}[name]
    recs["rust"].append(dict(task_id=f"Rust/{i}",
        prompt=f"\n/*\n {doc}\n >>> {name}({call_args(ex_args)})\n {ex_out}\n*/\nfn {name}({rargs}) -> i32{{\n",
        declaration=f"\nuse std::cmp::max;\n\nfn {name}({rargs}) -> i32{{\n",
        canonical_solution=f"    return {rok};\n}}\n", buggy_solution=f"    return {rbad};\n}}\n", entry_point=name,
        import_="", test_setup="",
        test="\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn test_" + name + "() {\n" + "".join(
            f"        assert!({name}({call_args(a)}) == {e});\n" for a, e in tests) + "    }\n}\n",
        example_test="", signature=f"{name}({rargs}) -> i32", docstring=docstring,
        instruction=f"Write a Rust function `{name}({rargs}) -> i32` to solve the following problem:\n{docstring}"))
for lang, rs in recs.items():
    for r in rs:
        r["import"] = r.pop("import_")
    with open(out / f"humanevalpack_{lang}.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rs)
# HumanEval+ (HumanEval schema, gzipped as EvalPlus ships it)
with gzip.open(out / "humanevalplus.jsonl.gz", "wt") as fh:
    for i, r in enumerate(recs["python"]):
        test = "\n\nMETADATA = {}\n\n\ndef check(candidate):\n" + "".join(
            f"    assert candidate({call_args(a)}) == {e}\n" for a, e in P[i][6])
        fh.write(json.dumps(dict(task_id=f"HumanEval/{i}", prompt=r["prompt"], canonical_solution=r["canonical_solution"],
                                 entry_point=r["entry_point"], test=test)) + "\n")
# MBPP (google-research mbpp.jsonl schema; task 2 is outside the harness's test split 11-510)
mbpp = []
for tid, (name, _, doc, args, ok, bad, tests) in zip((2, 11, 12, 13), [P[0]] + P):
    mbpp.append(dict(task_id=tid, text=f"Write a function to {doc[0].lower() + doc[1:]}.",
                     code=f"def {name}({', '.join(args)}):\n    return {ok}",
                     test_list=[f"assert {name}({call_args(a)}) == {e}" for a, e in tests],
                     test_setup_code="", challenge_test_list=[]))
with open(out / "mbpp.jsonl", "w") as fh:
    fh.writelines(json.dumps(r) + "\n" for r in mbpp)
# MBPP+ (evalplus/mbppplus parquet schema)
import pyarrow as pa, pyarrow.parquet as pq
rows = []
for tid, (name, _, doc, args, ok, bad, tests) in zip((11, 12, 13), P):
    rows.append(dict(task_id=tid, code=f"def {name}({', '.join(args)}):\n    return {ok}",
                     prompt=f"Write a function to {doc[0].lower() + doc[1:]}.", source_file="hand-made",
                     test_imports=[], test_list=[f"assert {name}({call_args(a)}) == {e}" for a, e in tests],
                     test="inputs = " + repr([list(a) for a, _ in tests] + [[a[0] + 100] + list(a[1:]) for a, _ in tests])
                          + f"\nref = lambda {', '.join(args)}: {ok}\nfor inp in inputs:\n    assert {name}(*inp) == ref(*inp), inp\n"))
pq.write_table(pa.Table.from_pylist(rows), out / "mbppplus.parquet")
# MultiPL-E (humaneval-js / humaneval-rs prompt-file schema, as a JSON list)
js, rs = [], []
for i, (name, camel, doc, args, ok, bad, tests) in enumerate(P):
    jok = EXPR["js"][name][0]
    js.append(dict(name=f"HumanEval_{i}_{name}", language="js",
        prompt=f"//{doc}\n// >>> {name}({call_args(tests[0][0])})\n// {tests[0][1]}\nfunction {name}({', '.join(args)}){{\n",
        doctests="transform", original=f"humaneval/HumanEval_{i}_{name}.py", prompt_terminology="reworded",
        tests="const assert = require('node:assert');\n\n\nfunction test() {\n  let candidate = " + name + ";\n" + "".join(
            f"  assert.deepEqual(candidate({call_args(a)}),{e});\n" for a, e in tests) + "}\n\ntest();",
        stop_tokens=["\nfunction ", "\n/*", "\n//", "\nconsole.log"],
        canonical=f"  return {jok};\n}}"))
    rok = {"add": "x + y", "larger": "if x > y { x } else { y }", "square": "x * x"}[name]
    rs.append(dict(name=f"HumanEval_{i}_{name}", language="rs",
        prompt=f"/// {doc}\n/// >>> {name}({call_args(tests[0][0])})\n/// {tests[0][1]}\nfn {name}({', '.join(f'{a}: isize' for a in args)}) -> isize {{\n",
        doctests="transform", original=f"humaneval/HumanEval_{i}_{name}.py", prompt_terminology="reworded",
        tests="}\n\nfn main() {\n    let candidate = " + name + ";\n" + "".join(
            f"    assert_eq!(candidate({call_args(a)}), {e});\n" for a, e in tests) + "}\n",
        stop_tokens=["\n}"], canonical=f"    {rok}\n}}"))
(out / "multiple_js.json").write_text(json.dumps(js, indent=1))
with open(out / "multiple_rs.jsonl", "w") as fh:
    fh.writelines(json.dumps(r) + "\n" for r in rs)
