"""experiments/gpu_check.py at the tiny size on the CPU: the one JSON it writes on a GPU machine is
complete here too (every key, finite numbers, the torchrun DDP step ran), an error in one part is
recorded without stopping the others, and a spent budget skips parts instead of overrunning."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import gpu_check

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _numbers_finite(obj, path="") -> list[str]:
    """Paths of every non-finite float in a JSON tree (None is allowed: 'not defined here')."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _numbers_finite(v, f"{path}/{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _numbers_finite(v, f"{path}[{i}]")]
    return [path] if isinstance(obj, float) and not math.isfinite(obj) else []


def test_tiny_check_on_cpu_writes_a_complete_json(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "experiments", "gpu_check", "--tiny", "--out", str(tmp_path)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(gpu_check.TOP_KEYS) <= set(report)
    assert report["complete"] is True and report["errors"] == {} and report["cut"] == []
    assert not _numbers_finite(report)
    assert set(report["train"]) == {"autoencoder", *gpu_check.PRIORS}
    for name, row in report["train"].items():
        assert set(gpu_check.TRAIN_KEYS) <= set(row), name
        assert row["ok"] and row["steps"] == row["steps_planned"] == gpu_check.SIZES["tiny"].steps
        assert row["steps_per_s"] > 0 and row["flops_per_step"] > 0 and row["tflops"] > 0
        assert row["tokens_per_s"] == pytest.approx(row["steps_per_s"] * row["batch"] * 16)  # 4x4 latent positions
        assert row["pct_of_peak"] is None  # no peak known for a CPU
    for name in gpu_check.PRIORS:
        # FlopCounterMode and the closed form 3 (2 P tokens + 4 N^2 d L B) agree within 5% on the tiny transformer
        row = report["train"][name]
        assert row["flops_per_step_analytic"] == pytest.approx(row["flops_per_step"], rel=0.05), name
    assert set(report["sample"]) == set(gpu_check.PRIORS)
    for name, row in report["sample"].items():
        assert set(gpu_check.SAMPLE_KEYS) <= set(row) and row["ok"] and row["samples_per_s"] > 0, name
    assert report["sample"]["bernoulli"]["steps"] == 8 and report["sample"]["autoregressive"]["steps"] == 16
    assert report["sample"]["bernoulli"]["decoded_shape"] == [4, 3, 16, 16]
    ddp = report["ddp"]
    assert set(gpu_check.DDP_KEYS) <= set(ddp)
    assert (ddp["ok"], ddp["rc"], ddp["world_size"], ddp["ddp_wrapped"], ddp["backend"]) == (True, 0, 1, True, "gloo")
    assert math.isfinite(ddp["loss"])
    syncs = report["syncs"]
    assert set(gpu_check.SYNC_KEYS) <= set(syncs)
    assert syncs["train_step"] is None and "no CUDA" in syncs["reason"]


def test_an_error_in_one_part_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    real = gpu_check.train_part

    def broken(name, *args, **kwargs):
        if name == "absorbing":
            raise RuntimeError("simulated failure")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(gpu_check, "train_part", broken)
    monkeypatch.setattr(gpu_check, "ddp_part", lambda *a, **k: {k: None for k in gpu_check.DDP_KEYS} | {"ok": True})
    report = gpu_check.run(tmp_path, size=gpu_check.SIZES["tiny"], device="cpu")
    assert report["complete"] is False
    assert report["errors"]["train/absorbing"] == "RuntimeError: simulated failure"
    assert "no trained absorbing prior" in report["errors"]["sample/absorbing"]
    assert set(report["errors"]) == {"train/absorbing", "sample/absorbing"}
    assert report["train"]["absorbing"]["ok"] is False and set(gpu_check.TRAIN_KEYS) <= set(report["train"]["absorbing"])
    assert report["train"]["bernoulli"]["ok"] and report["sample"]["autoregressive"]["ok"]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["errors"] == report["errors"]


def test_a_spent_budget_skips_every_part_and_says_so(tmp_path):
    report = gpu_check.run(tmp_path, size=gpu_check.SIZES["tiny"], budget_s=1.0, device="cpu")
    assert report["complete"] is False
    assert len(report["cut"]) == 1 + 3 + 3 + 2  # autoencoder, 3 trainings, 3 samplings, ddp, syncs
    assert all("budget was spent" in line for line in report["cut"])
    assert set(gpu_check.TRAIN_KEYS) <= set(report["train"]["autoencoder"]) and report["ddp"]["ok"] is False


def test_peak_table_matches_device_names_and_bad_flags_are_refused(tmp_path):
    assert gpu_check.peak_for_name("NVIDIA H200")[0] == 989.0
    assert gpu_check.peak_for_name("NVIDIA H100 PCIe")[0] == 756.0
    assert gpu_check.peak_for_name("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert gpu_check.peak_for_name("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert gpu_check.peak_for_name("NVIDIA L40S")[0] == 362.0 and gpu_check.peak_for_name("NVIDIA L4")[0] == 121.0
    assert gpu_check.peak_for_name("Tesla T4") == (None, None)
    with pytest.raises(SystemExit):
        gpu_check.main(["--tiny", "--out", str(tmp_path), "--steps", "0"])
    with pytest.raises(SystemExit):
        gpu_check.main(["--tiny"])  # no --out
