"""Rewrite tests/train/golden/debug_tiny_loss.json (after an intended numerics change only).

    .venv/bin/python -m tests.train.regen_golden

The test never writes the golden file: a test that regenerates what it compares against cannot fail.
Review the diff of the JSON before committing it.
"""
import json
import tempfile
from pathlib import Path

from tests.train.conftest import VOCAB, base_args, read_log, run_train

GOLDEN = Path(__file__).parent / "golden" / "debug_tiny_loss.json"
STEPS = 8


def golden_run(data: str, workdir: Path) -> list[float]:
    """The curve the golden file stores: debug-tiny, 8 steps, one process, the shared base arguments."""
    log = workdir / "loss.jsonl"
    run_train(base_args(data, STEPS) + ["--logging.loss_log", str(log)])
    return [round(r["loss"], 6) for r in read_log(log)]


def main() -> None:
    from codetron.megatron_ext.synthetic import write_synthetic_dataset

    with tempfile.TemporaryDirectory(prefix="codetron-golden-") as tmp:
        data = write_synthetic_dataset(str(Path(tmp) / "syn"), VOCAB)
        curve = golden_run(data, Path(tmp))
    GOLDEN.write_text(json.dumps({"config": base_args("<synthetic>", STEPS), "loss": curve}, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {curve}")


if __name__ == "__main__":
    main()
