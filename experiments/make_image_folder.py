"""Write a Fashion-MNIST image folder, the stand-in for "your own images" of the README's quick start.

``python -m experiments.make_image_folder --out /tmp/photos --size 32 --per-class 200`` writes
``<out>/<class name>/<index>.png`` (grey PNGs, ``per_class`` images of each of the 10 classes from the
official train split, resized to ``size`` x ``size``), which ``--dataset image-folder --data-dir <out>``
then reads like any user's folder (its own 80/20 train/test split of these files).
Fashion-MNIST comes from the Debian package dataset-fashion-mnist (no download).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from discrete_priors.data import class_names, load_dataset


def write_image_folder(out: str | Path, *, size: int = 32, per_class: int = 200, data_dir=None) -> int:
    """Write the first ``per_class`` train images of each class; returns the number of files written."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    data = load_dataset("fashion-mnist", split="train", size=size, data_dir=data_dir)
    names = [name.replace("/", "-") for name in class_names("fashion-mnist")]  # "T-shirt/top" is no folder name
    written = 0
    for label, name in enumerate(names):
        folder = Path(out) / f"{label}-{name}"  # the number keeps the sorted folder order = the dataset's labels
        folder.mkdir(parents=True, exist_ok=True)
        for index in (data.labels == label).nonzero().squeeze(1)[:per_class].tolist():
            pixels = (data.images[index, 0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(folder / f"{index:05d}.png")
            written += 1
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write (class sub-folders inside)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--per-class", type=int, default=200, help="images per class (10 classes)")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: the Debian package's)")
    args = parser.parse_args(argv)
    print(f"wrote {write_image_folder(args.out, size=args.size, per_class=args.per_class, data_dir=args.data_dir)} "
          f"images under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
