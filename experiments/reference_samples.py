"""Reference "samples" for reading eval's numbers on your own data (the sanity runner's rows, for any
autoencoder run): uniformly random codes decoded by the autoencoder (garbage), its reconstructions
of the test split (the best a prior on these codes can reach) and real training images (the ceiling
of any generator), each written as a folder in the format
of ``sample`` (samples.safetensors, grid.png, samples.json), so ``eval --samples DIR --ae AE`` scores it
like a prior's samples::

    python -m experiments.reference_samples --ae runs/ae -n 400 --out runs/reference
    python -m discrete_priors eval --ae runs/ae --samples runs/reference/random-codes --out runs/results
    python -m discrete_priors eval --ae runs/ae --samples runs/reference/reconstructions --out runs/results
    python -m discrete_priors eval --ae runs/ae --samples runs/reference/real --out runs/results
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from discrete_priors import pipeline
from discrete_priors.data import load_dataset


def random_codes(spec, n: int, *, generator: torch.Generator) -> torch.Tensor:
    """n codes drawn uniformly: (n, N, c) fair bits for binary codes, (n, N) uniform tokens for categorical ones."""
    if spec.kind == "binary":
        return (torch.rand((n, *spec.shape), generator=generator) < 0.5).float()
    if spec.kind == "categorical":
        return torch.randint(spec.vocab_size, (n, *spec.shape), generator=generator)
    raise ValueError(f"random codes are defined for binary and categorical latents, got {spec.kind!r} "
                     "(a continuous latent has no uniform distribution)")


def write_references(ae_dir: str | Path, out: str | Path, *, n: int, seed: int = 0) -> dict:
    """Write ``<out>/random-codes`` (n decoded uniform codes), ``<out>/reconstructions`` (the test split
    through the autoencoder) and ``<out>/real`` (n training images, a seeded draw; codes are their
    encodings), from the data recorded in ``<ae_dir>/data.json``; returns their paths."""
    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    ae = pipeline.load_autoencoder(ae_dir, device="cpu")
    data = pipeline.recorded_dataset(ae_dir)
    test = load_dataset(**data, split="test").images
    train = load_dataset(**data, split="train").images
    generator = torch.Generator().manual_seed(seed)
    codes = random_codes(ae.code_spec, n, generator=generator)
    real = train[torch.randperm(len(train), generator=generator)[:n]]
    recon_codes = pipeline.encode_images(ae, test).codes
    written = {}
    for name, chosen, images in (("random-codes", codes, None), ("reconstructions", recon_codes, None),
                                 ("real", pipeline.encode_images(ae, real).codes, real)):
        samples = pipeline.Samples(chosen, pipeline.decode_codes(ae, chosen) if images is None else images, None)
        written[name] = pipeline.save_samples(samples, Path(out) / name, meta={"reference": name, "ae": str(ae_dir),
                                                                                "seed": seed})
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ae", required=True, help="autoencoder run directory (its data.json names the data)")
    parser.add_argument("-n", type=int, default=1000, help="number of random codes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random codes")
    parser.add_argument("--out", required=True, help="folder for random-codes/, reconstructions/ and real/")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name, paths in write_references(args.ae, args.out, n=args.n, seed=args.seed).items():
        print(f"{name}: {paths['samples']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
