"""Kill `python -m experiments all` mid-run and start it again: it loses at most the cell in flight.

The run is a subprocess at the smoke preset; it is SIGKILLed (no clean-up code runs) once the
samplers runner has recorded its first prior, i.e. while later priors train or sample.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CELL = ["experiment", "variant", "seed", "train_step", "metric"]  # a learning-curve point is a cell of its own


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "experiments", "all", "--preset", "smoke", "--out", str(out)]


def _finished_runs(out: Path) -> dict[str, tuple[str, int]]:
    """Training run -> (its newest checkpoint, mtime of that checkpoint's weights)."""
    found = {}
    for run in sorted([*out.glob("ae/*"), *out.glob("priors/*")]):
        steps = sorted((run / "checkpoints").glob("step_*/model.safetensors"))
        if steps:
            found[run.name] = (steps[-1].parent.name, steps[-1].stat().st_mtime_ns)
    return found


def test_killed_run_restarts_losing_at_most_the_cell_in_flight(tmp_path):
    out = tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(_command(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.csv"
    deadline = time.monotonic() + 600
    try:
        while True:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the samplers runner recorded no prior within 10 minutes"
            if results.exists():  # replaced atomically, so always whole
                rows = pd.read_csv(results)
                if set(rows.loc[rows["experiment"] == "samplers", "variant"]) - {"real"}:
                    break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = pd.read_csv(results)
    runs_before = _finished_runs(out)
    assert not before.duplicated(CELL).any()

    restart = subprocess.run(_command(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert restart.returncode == 0, restart.stderr[-2000:]
    after = pd.read_csv(results)

    # everything recorded before the kill is kept verbatim, in place, and no cell is recorded twice
    pd.testing.assert_frame_equal(after.iloc[:len(before)].reset_index(drop=True), before)
    assert not after.duplicated(CELL).any()
    # every runner finished: the samplers' five priors, the two Gaussian reference rows (plain and KL
    # continuous latents), "real", and the ablation / figures cells are all there
    assert set(after["experiment"]) - {"lr-sweep"} == {"reconstruction", "samplers", "efficiency", "steps", "ablation",
                                                      "figures"}
    samplers = set(after.loc[after["experiment"] == "samplers", "variant"])
    assert len(samplers) == 8 and {v for v in samplers if v.startswith("gaussian/")} == {
        "gaussian/latents=continuous-d4", "gaussian/latents=continuous-d4-kl"}, sorted(samplers)
    # runs that had finished training before the kill were not trained again
    runs_after = _finished_runs(out)
    for name, last in runs_before.items():
        if last[0] == runs_after[name][0]:  # already at its final step when killed
            assert runs_after[name] == last, f"{name} was retrained after the restart"
    assert set(runs_before) <= set(runs_after)
    # a second restart finds everything cached: no row added
    again = subprocess.run(_command(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_csv(results)) == len(after)
