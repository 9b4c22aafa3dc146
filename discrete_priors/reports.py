"""What a finished training run tells its user: an autoencoder's held-out reconstruction quality
(test-split PSNR/SSIM and a grid of test images over their reconstructions) and a plot of any
run's ``train_log.jsonl``.

``train_log.jsonl`` (written by the trainer, training/trainer.py) holds one JSON object per logged
step: ``step``, ``loss`` (the mean over the log window), ``lr``, ``grad_norm`` and ``terms`` (the
model's named loss terms and diagnostics, e.g. ``recon``, ``psnr``, ``bit_entropy`` for an
autoencoder, ``disc/...`` for its discriminator; ``target``, ``vlb`` for a Bernoulli prior).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from discrete_priors import pipeline
from discrete_priors.io import atomic_path, write_json

GRID_COLUMNS = 8  # test images per row of the reconstruction grid


def autoencoder_test_report(ae_dir: str | Path, *, device: str | torch.device = "auto", batch_size: int = 256,
                            grid_rows: int = 2) -> dict:
    """Reconstruct the test split recorded in ``<ae_dir>/data.json`` with the run's latest
    checkpoint (deterministic codes, as encode stores them) and write
    ``<ae_dir>/test_reconstruction.json`` (psnr in dB, ssim, mse, num_test, checkpoint) and
    ``<ae_dir>/reconstructions.png`` (``grid_rows`` pairs of rows: 8 test images, then their
    reconstructions). Returns the JSON's content with the grid's path."""
    from discrete_priors.data import load_dataset
    from discrete_priors.images import save_grid
    from discrete_priors.metrics import reconstruction_metrics

    ae_dir = Path(ae_dir)
    test = load_dataset(**pipeline.recorded_dataset(ae_dir), split="test").images
    ae = pipeline.load_autoencoder(ae_dir, device=device)
    codes = pipeline.encode_images(ae, test, batch_size=batch_size).codes
    recon = pipeline.decode_codes(ae, codes, batch_size=batch_size)
    report = reconstruction_metrics(test, recon) | {"num_test": len(test),
                                                    "checkpoint": pipeline.latest_checkpoint(ae_dir).name}
    shown = min(len(test), grid_rows * GRID_COLUMNS)
    rows = [block for start in range(0, shown, GRID_COLUMNS)
            for block in (test[start:min(start + GRID_COLUMNS, shown)], recon[start:min(start + GRID_COLUMNS, shown)])]
    save_grid(torch.cat(rows), ae_dir / "reconstructions.png", nrow=min(GRID_COLUMNS, shown), scale=2)
    write_json(ae_dir / "test_reconstruction.json", report)
    return report | {"grid": str(ae_dir / "reconstructions.png")}


def read_train_log(path: str | Path) -> list[dict]:
    """The records of a ``train_log.jsonl``, each flattened to ``{"step", "loss", "lr",
    "grad_norm", <term>: value, ...}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}: pass a run directory written by train-ae or train-prior")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}:{number} is not a JSON line ({err}); was the file edited?") from err
        records.append({k: v for k, v in record.items() if k != "terms"} | record.get("terms", {}))
    if not records:
        raise ValueError(f"{path} holds no logged step yet: train for at least one log interval")
    return records


def plot_train_log(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """One panel per logged quantity (loss first, then lr, grad_norm and the terms) against the
    step, written to ``out`` (default ``<run_dir>/train_log.png``); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_train_log(run_dir / "train_log.jsonl")
    keys = list(dict.fromkeys(k for r in records for k, v in r.items() if k != "step" and isinstance(v, (int, float))))
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"{run_dir.name}: train_log.jsonl ({len(records)} records)", fontsize=10)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / "train_log.png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
