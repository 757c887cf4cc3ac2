"""Data-parallel training on CPU: 2 processes (Lightning DDP, gloo) through the command line."""
import json
import os
import subprocess
import sys

import pytest

from tinyasc.data.datamodule import EpochShuffle, RankShard
from tinyasc.evaluation.evaluate import evaluate


@pytest.mark.parametrize("n,world", [(35, 2), (10, 3), (4, 4), (3, 4)])
def test_shards_cover_every_item_with_equal_lengths(n, world):
    per_rank = -(-n // world)
    for sampler in (lambda r: EpochShuffle(n, seed=1, rank=r, world_size=world), lambda r: RankShard(n, r, world)):
        shards = [list(sampler(r)) for r in range(world)]
        assert [len(s) for s in shards] == [per_rank] * world  # every rank runs the same number of steps
        flat = [i for s in shards for i in s]
        assert set(flat) == set(range(n)) and len(flat) == per_rank * world  # all items; repeats only to pad


def test_two_process_run_equals_single_process_evaluation(tau_dir, tmp_path):
    test_list = tau_dir / "test.csv"
    lines = test_list.read_text().splitlines()
    test_list.write_text("\n".join(lines[:-1]) + "\n")  # 35 test clips: one rank's shard is padded
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinyasc.cli", "train", "--data", str(tau_dir), "--devices", "2", "--epochs", "1",
           "--batch-size", "8", "--out", str(run), "--no-progress", "--set", "trainer.accelerator=cpu",
           "--set", "trainer.eval_batch_size=8", "--set", "data.val_fraction=0.7", "--set", "schedule.warmup_steps=2"]
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((run / "metrics.json").read_text())
    assert ddp["processes"] == 2 and ddp["n"] == 35 and ddp["checkpoint"].endswith("best.ckpt")
    assert "val/macro_acc" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]  # gathered validation

    single = evaluate(run, progress=False)  # one process, the same checkpoint
    assert single["n"] == 35
    for group in ("per_class", "per_device"):
        assert single[group].keys() == ddp[group].keys()
        for name, m in single[group].items():
            assert m["n"] == ddp[group][name]["n"] and m["accuracy"] == ddp[group][name]["accuracy"]
    assert single["confusion"] == ddp["confusion"]
    assert single["log_loss"] == pytest.approx(ddp["log_loss"], abs=1e-6)
