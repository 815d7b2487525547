from codetron.preprocess import formats


def test_stars_buckets():
    assert [formats.stars_bucket(s) for s in (0, None, 1, 9, 10, 99, 100, 999, 1000, 52000)] == [
        "0", "0", "1-10", "1-10", "10-100", "10-100", "100-1000", "100-1000", "1000+", "1000+"]


def test_render_code_metadata_subsets():
    assert formats.render_code("x = 1\n", "a/b", "src/x.py", 42) == "<reponame>a/b<filename>src/x.py<gh_stars>10-100\nx = 1\n"
    assert formats.render_code("x = 1\n", None, "src/x.py", None) == "<filename>src/x.py\nx = 1\n"
    assert formats.render_code("x = 1\n") == "x = 1\n"


def test_wizardcoder_template_exact_text():
    p, r = formats.render_wizardcoder("Write hello world.", "print('hi')")
    assert p == ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\nWrite hello world.\n\n### Response:")
    assert r == "print('hi')"
    p2, _ = formats.render_wizardcoder("Sum.", "x", input="1 2")
    assert p2 == ("Below is an instruction that describes a task, paired with an input that provides further context. "
                  "Write a response that appropriately completes the request.\n\n### Instruction:\nSum.\n\n"
                  "### Input:\n1 2\n\n### Response:")
    assert formats.wizardcoder_prompt("Write hello world.") == p


def test_octocoder_and_commit_formats():
    # octopack finetune.py (target loss): "Question: " + Q + "\n\nAnswer: " is the masked part, space included
    assert formats.render_octocoder("Q?", "A.") == ("Question: Q?\n\nAnswer: ", "A.")
    assert formats.render_commit_octocoder("a = 1\n", "Fix it", "a = 2\n") == ("Question: a = 1\n\nFix it\n\nAnswer: ", "a = 2\n")
    assert formats.render_commit_octocoder("", "Add file", "x") == ("Question: Add file\n\nAnswer: ", "x")
    assert formats.render_commit_starcoder("O", "S", "N") == ("<commit_before>O<commit_msg>S<commit_after>", "N")
    assert formats.render_commit_starcoder("O", "S", "N", "f.py")[0] == "<filename>f.py<commit_before>O<commit_msg>S<commit_after>"
    assert formats.PROMPT_TEMPLATES["octocoder"]("Do X", "") == "Question: Do X\n\nAnswer:"
    assert formats.render_plain("Do X", "Y", "in") == ("Do X\n\nin\n\n", "Y")
