import pytest

from tests.helpers.runs import assert_curves_match, read_log, run_codetron  # noqa: F401  (the train tests' helpers)

VOCAB = 256


def run_train(args: list[str], nproc: int = 1, timeout: int = 240, env: dict | None = None,
              check: bool = True):
    """``codetron train ARGS`` in a child process (torchrun for ``nproc`` > 1)."""
    return run_codetron(["train", *args], nproc=nproc, timeout=timeout, env=env, check=check)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> str:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("data") / "syn"), VOCAB)


def base_args(data: str, iters: int = 6) -> list[str]:
    return ["--preset", "debug-tiny", "--data.data_path", data, "--data.tokenizer", f"null:{VOCAB}",
            "--optim.train_iters", str(iters), "--optim.global_batch_size", "8", "--optim.micro_batch_size", "2",
            "--optim.lr", "1e-3", "--optim.lr_warmup_iters", "1"]
