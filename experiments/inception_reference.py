"""The floor of FID in the ``inception-tf-2015`` space: Fashion-MNIST train against test.

Two real sets of one distribution still have FID > 0 at finite n (the estimator is biased
upwards, roughly ∝ 1/n), so this is the value a perfect sampler would score at the same n, size
and preprocessing. Seeded random subsets of ``--n`` train and ``--n`` test images at ``--size``
(the dataset loader's resize; the cpu preset scores at 16, the native size is 28)::

    OMP_NUM_THREADS=1 python -m experiments.inception_reference --n 2000 --size 16 --out runs/inception/fashion16.json

Prints and writes a JSON record (FID, n, size, seconds, threads, extractor name); ``--features``
also saves the two feature sets (safetensors) for later bootstraps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from discrete_priors.data.datasets import load_dataset
from discrete_priors.io import save_tensors
from discrete_priors.metrics.distances import frechet_distance
from discrete_priors.metrics.inception import TFInceptionExtractor


def subset(split: str, *, n: int, size: int | None, seed: int) -> torch.Tensor:
    images = load_dataset("fashion-mnist", split=split, size=size).images
    if n > len(images):
        raise ValueError(f"--n {n} exceeds the {len(images)} images of the {split} split")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:n]]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per split")
    parser.add_argument("--size", type=int, default=None, help="image size (None: native 28)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset draws")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True, help="JSON record to write")
    parser.add_argument("--features", type=Path, default=None, help="also save the features here (.safetensors)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    extractor = TFInceptionExtractor()
    train, test = subset("train", n=args.n, size=args.size, seed=args.seed), subset("test", n=args.n, size=args.size, seed=args.seed + 1)
    start = time.perf_counter()
    train_feats = extractor.features(train, batch_size=args.batch_size)
    test_feats = extractor.features(test, batch_size=args.batch_size)
    feature_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fid = frechet_distance(train_feats, test_feats, method="eigh")  # exact with n < 2048 (no eps offset)
    record = {"fid": fid, "n_train": args.n, "n_test": args.n, "size": tuple(train.shape[-2:]), "seed": args.seed,
              "extractor": extractor.name, "extractor_info": extractor.info, "threads": torch.get_num_threads(),
              "feature_seconds": feature_seconds, "seconds_per_image": feature_seconds / (2 * args.n),
              "fd_seconds": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    if args.features is not None:
        save_tensors(args.features, {"train": train_feats, "test": test_feats})
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
