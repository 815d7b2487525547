"""Rendered launchers carry the published settings; the planner agrees with published and measured numbers."""
import re
import shlex
import subprocess

import pytest

from codetron.errors import ConfigError
from codetron.megatron_ext.config import parse_cli_overrides
from codetron.megatron_ext.presets import resolve_config
from codetron.slurm.plan import estimate_memory, estimate_step, get_gpu, implied_mfu
from tests.conftest import PYTHON, ROOT, subprocess_env


def _slurm(*args, check=True):
    proc = subprocess.run([PYTHON, "-m", "codetron", "slurm", *args], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _train_args(script: str) -> list[str]:
    """The trainer command line of a rendered script (its TRAIN_ARGS array), without shell variables."""
    block = script.split("TRAIN_ARGS=(\n", 1)[1].split("\n)\n", 1)[0]
    words = shlex.split(block)
    out = []
    for i, word in enumerate(words):
        if "$" in word or (word.startswith("--") and i + 1 < len(words) and "$" in words[i + 1]):
            continue  # $DATA_PATH, $SAVE_DIR, ...: filled in at submit time
        out.append(word)
    return out


def test_starcoder_15b_script_carries_the_published_layout_and_hyperparameters():
    script = _slurm("render", "train", "--recipe", "starcoder-pretrain", "--profile", "a100-64node", "--no-check-data",
                    "--data", "/data/stack", "--save", "/ckpt/sc", "--stdout").stdout
    directives = dict(re.findall(r"^#SBATCH --([a-z-]+)=?(\S*)", script, re.M))
    assert directives["nodes"] == "64" and directives["gpus-per-node"] == "8" and directives["ntasks-per-node"] == "8"
    assert "requeue" in directives and directives["signal"].startswith("B:USR1@")
    assert directives["output"] == "logs/%x-%j.out" and directives["open-mode"] == "append"
    assert re.search(r"^srun --kill-on-bad-exit=1 .* -m codetron train ", script, re.M)
    flags = dict(re.findall(r"^\s+--(\S+) (\S+)$", script, re.M))
    want = {"parallel.tensor_model_parallel_size": "4", "parallel.pipeline_model_parallel_size": "4",
            "parallel.sequence_parallel": "true", "optim.global_batch_size": "512", "optim.micro_batch_size": "1",
            "optim.lr": "0.0003", "optim.min_lr": "3e-05", "optim.lr_warmup_iters": "2000",
            "optim.train_iters": "250000", "optim.weight_decay": "0.1", "optim.adam_beta2": "0.95",
            "optim.clip_grad": "1.0", "optim.lr_decay_style": "cosine"}
    for key, value in want.items():
        assert flags.get(key) == value, (key, flags.get(key))

    # What the trainer will actually run with: the script's command line resolved like `codetron train` does.
    cfg = resolve_config(overrides=parse_cli_overrides(_train_args(script)))
    m, o, par, d = cfg.model, cfg.optim, cfg.parallel, cfg.data
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups) == (40, 6144, 48, 1)  # MQA
    assert (m.seq_length, m.vocab_size) == (8192, 49152)
    assert (o.global_batch_size, o.micro_batch_size, o.lr, o.min_lr, o.lr_warmup_iters) == (512, 1, 3e-4, 3e-5, 2000)
    assert (o.adam_beta1, o.adam_beta2, o.adam_eps, o.weight_decay, o.train_iters) == (0.9, 0.95, 1e-8, 0.1, 250_000)
    assert (d.fim_rate, d.fim_spm_rate) == (0.5, 0.5)
    assert par.sequence_parallel and par.use_distributed_optimizer
    world = int(directives["nodes"]) * int(directives["ntasks-per-node"])
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    assert (world, tp, pp, world // (tp * pp)) == (512, 4, 4, 32)  # DP32
    # 250k steps x 512 x 8192 tokens = the published ~1T tokens
    assert abs(o.train_iters * o.global_batch_size * m.seq_length / 1e12 - 1.0) < 0.1


def test_rrtf_launcher_fine_tunes_with_ranking_pairs():
    script = _slurm("render", "train", "--recipe", "rrtf", "--profile", "a100-64node", "--no-check-data",
                    "--data", "/data/rrtf", "--stdout").stdout
    assert "LOAD_DIR=${LOAD_DIR:?" in script and '--checkpoint.load "$LOAD_DIR"' in script
    cfg = resolve_config(overrides=parse_cli_overrides(_train_args(script)))
    assert cfg.data.mode == "rrtf" and cfg.checkpoint.finetune
    assert cfg.optim.micro_batch_size % 2 == 0  # a chosen/rejected pair shares a micro-batch
    assert (ROOT / "slurm" / "rrtf.sbatch").is_file()


def test_shipped_example_scripts_match_a_fresh_render():
    _slurm("examples", "--check")


@pytest.mark.parametrize("extra,needle", [
    (["--nodes", "3", "--gpus-per-node", "1"], "not divisible"),
    (["--nodes", "1", "--parallel.tensor_model_parallel_size", "4", "--parallel.pipeline_model_parallel_size", "1",
      "--parallel.use_distributed_optimizer", "false", "--parallel.sequence_parallel", "false"], "exceeds a100-80gb's 80 GiB"),
])
def test_validation_fails_in_one_line_before_submitting(extra, needle):
    proc = _slurm("render", "train", "--recipe", "starcoder-pretrain", "--profile", "a100-64node", "--no-check-data",
                  "--data", "/data/x", "--save", "/ckpt/x", "--stdout", *extra, check=False)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


_SC = ["render", "train", "--recipe", "starcoder-pretrain", "--profile", "a100-64node", "--stdout"]


@pytest.mark.parametrize("argv,needle", [
    (_SC + ["--no-check-data", "--data", "/d", "--save", "/c", "--optim.global_batch_size", "500"],
     "optim.global_batch_size 500 is not divisible by micro_batch_size x data-parallel size = 1x32 = 32"),
    (_SC + ["--data", "/nonexistent/stack", "--save", "/c"], "data.data_path: /nonexistent/stack.bin does not exist"),
    (["render", "train", "--preset", "no-such-preset", "--stdout", "--no-check-data", "--data", "/d"],
     "unknown preset 'no-such-preset'"),
    (["render", "train", "--recipe", "no-such", "--stdout", "--no-check-data", "--data", "/d"], "unknown recipe 'no-such'"),
    (["render", "train", "--recipe", "rrtf", "--profile", "a100-64node", "--stdout", "--no-check-data", "--data", "/d",
      "--optim.micro_batch_size", "1"], "needs an even optim.micro_batch_size"),
    (["plan", "--recipe", "starcoder-pretrain", "--gpus", "100"], "world size 100 is not divisible by tensor x pipeline parallel = 4x4 = 16"),
])
def test_bad_layouts_paths_and_presets_fail_in_one_line(argv, needle):
    proc = _slurm(*argv, check=False)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_starcoder_step_time_is_consistent_with_24_days_on_512_a100():
    cfg = resolve_config(recipe="starcoder-pretrain")
    gpu = get_gpu("a100-80gb")
    step = estimate_step(cfg, 512, gpu, mfu=0.35, vocab=49152)
    days = step.days_for(1e12)
    assert 18 < days < 32, days  # published: ~24 days for 1T tokens
    mfu = implied_mfu(cfg, 512, gpu, tokens=1e12, days=24, vocab=49152)
    assert 0.25 < mfu < 0.45, mfu  # a plausible A100 MFU for megatron at this scale


def _peak_rss(cmd: list[str]) -> int:
    """Peak RSS (bytes) of ``cmd``, measured in a fresh wrapper: RUSAGE_CHILDREN of this test process
    would report the largest child any earlier test started."""
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([PYTHON, "-c", wrapper, *cmd], cwd=ROOT, env=subprocess_env(), check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return int(out.strip().splitlines()[-1]) * 1024


@pytest.mark.slow
def test_memory_estimate_matches_a_measured_cpu_run_within_20_percent(tmp_path):
    """Model states + activations of a ~86M-parameter run vs its peak RSS above the import baseline."""
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(str(tmp_path / "syn"), 256)
    args = ["--preset", "debug-tiny", "--model.num_layers", "8", "--model.hidden_size", "1024",
            "--model.num_attention_heads", "8", "--data.data_path", data, "--data.tokenizer", "null:256",
            "--optim.train_iters", "2", "--optim.global_batch_size", "1", "--optim.micro_batch_size", "1"]
    base = _peak_rss([PYTHON, "-c", "import megatron_ext.training, megatron_ext.train, megatron.core.models.gpt, "
                      "megatron.core.optimizer, megatron.core.distributed"])
    peak = _peak_rss([PYTHON, "-m", "codetron", "train", *args])
    if peak <= base:
        pytest.fail("the training child did not exceed the import baseline: measurement broken")
    est = estimate_memory(resolve_config(overrides=parse_cli_overrides(args)), 1, get_gpu("cpu"), vocab=256)
    total = est.weights + est.grads + est.optimizer + est.activations + est.logits
    print(f"estimate {total / 2**20:.0f} MiB vs measured {(peak - base) / 2**20:.0f} MiB")
    assert abs(total - (peak - base)) / (peak - base) < 0.20, (total / 2**30, (peak - base) / 2**30)


def test_readme_render_example_runs_as_written(tmp_path):
    """The README's line, verbatim, in a fresh directory: no data path yet, the script asks for it."""
    readme = (ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith("codetron slurm render train"))
    argv = shlex.split(line.split("#")[0])
    proc = subprocess.run([PYTHON, "-m", *argv], cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    script = (tmp_path / "slurm" / "starcoder-pretrain.sbatch").read_text()
    assert "DATA_PATH=${DATA_PATH:?set DATA_PATH" in script  # sbatch refuses to start without it
    shipped = (ROOT / "slurm" / "starcoder-pretrain.sbatch").read_text()
    # the shipped example is this very render (its header records the command without -o)
    assert script.split("\n", 3)[3] == shipped.split("\n", 3)[3]


def test_load_is_kept_for_pretraining_and_checked(tmp_path):
    from codetron.slurm.cli import main

    base = tmp_path / "base"
    base.mkdir()
    main(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--load", str(base), "--no-check-data",
          "--data", "/d", "--tokenizer", "null:256", "-o", str(tmp_path)])
    script = (tmp_path / "debug-tiny.sbatch").read_text()
    assert f"LOAD_DIR=${{LOAD_DIR:-{base}}}" in script
    assert '[ -n "$LOAD_DIR" ] && TRAIN_ARGS+=(--checkpoint.load "$LOAD_DIR")' in script
    with pytest.raises(ConfigError, match="checkpoint.load: /no/such/run does not exist"):
        main(["submit", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--load", "/no/such/run",
              "--dry-run", "--tokenizer", "null:256", "--data", _tiny_data(tmp_path)])


def _tiny_data(tmp_path) -> str:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path / "syn"), 256)


@pytest.mark.parametrize("flags,needle", [
    (["--optim.train_iters", "--optim.lr", "1e-4"], "command line: optim.train_iters: the flag has no value"),
    (["--optim.lr"], "command line: optim.lr: the flag has no value"),
    (["--data.tokenizer", "--optim.lr", "1e-4"], "command line: data.tokenizer: the flag has no value"),
])
def test_a_flag_without_value_is_an_error_not_1(flags, needle, tmp_path):
    from codetron.slurm.cli import main

    with pytest.raises(ConfigError, match=needle):
        main(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--no-check-data", "--data", "/d",
              "-o", str(tmp_path), *flags])
    assert not list(tmp_path.glob("*.sbatch"))  # nothing rendered, nothing to submit
    # true/false fields keep the short form, and the script spells it out for the trainer
    cfg = resolve_config("debug-tiny", overrides=parse_cli_overrides(["--checkpoint.finetune", "--optim.lr", "1e-4"]))
    assert cfg.checkpoint.finetune is True and cfg.optim.lr == 1e-4
    main(["render", "train", "--preset", "debug-tiny", "--profile", "local-cpu", "--no-check-data", "--data", "/d",
          "-o", str(tmp_path), "--parallel.use_distributed_optimizer", "--optim.lr", "1e-4"])
    script = (tmp_path / "debug-tiny.sbatch").read_text()
    assert "  --parallel.use_distributed_optimizer true\n" in script and "  --optim.lr 1e-4\n" in script


def test_yaml_booleans_are_not_numbers_and_train_says_so_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  train_iters: true\n")
    with pytest.raises(ConfigError, match=f"{bad}: optim.train_iters: cannot read True as int"):
        resolve_config("debug-tiny", yaml_path=str(bad))
    bad.write_text("optim:\n  lr: false\n")
    with pytest.raises(ConfigError, match="optim.lr: cannot read False as float"):
        resolve_config("debug-tiny", yaml_path=str(bad))
    proc = subprocess.run([PYTHON, "-m", "codetron", "train", "--preset", "debug-tiny", "--optim.train_iters",
                           "--optim.lr", "--print-config"], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["codetron train: error: command line: optim.train_iters: the flag has "
                                                "no value (only true/false fields may be given without one)"]


def test_rendezvous_port_base_must_be_below_the_ephemeral_range():
    from codetron.slurm.profile import profile_from_dict

    with pytest.raises(ConfigError, match=r"my.yaml: master_port_base: must lie in \[1024, 32768\)"):
        profile_from_dict({"gpus_per_node": 0, "tasks_per_node": 2, "master_port_base": 40000}, "my.yaml")
