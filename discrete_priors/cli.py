"""Command line: ``python -m discrete_priors <command>`` (or ``discrete-priors <command>``).

    train-ae     train an autoencoder (binary, LFQ, BSQ, VQ, FSQ or continuous latents) on a dataset
    encode       encode dataset splits once into a latent cache for the priors
    train-prior  train a prior (bernoulli, absorbing, autoregressive; gaussian on continuous latents) on a latent cache
    sample       draw samples from a prior and decode them: PNG grid + safetensors
    inpaint      fill a masked region of real images with a prior: original / masked / filled grid
    eval         one tidy result row of metrics for a prior (or a folder of samples)
    plot-log     plot a run's train_log.jsonl (also written as train_log.png after training)
    demo         the whole pipeline on the embedded digits data

Every command resumes from what is already on disk where that makes sense. The choices of each
option and their help are read from the registries (priors, latent spaces, schedules, loss
options, presets), so a new entry there shows up here. This module is argparse only: what a
command does is in commands.py.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys

from discrete_priors.autoencoder.presets import PRESETS as AE_PRESETS
from discrete_priors.data import DATASETS
from discrete_priors.latents import LATENTS
from discrete_priors.priors import PRIORS
from discrete_priors.priors.bernoulli_math import PARAMETERIZATIONS, REVERSE_FORMS
from discrete_priors.priors.schedules import SCHEDULES
from discrete_priors.training.distributed import DEVICES
from discrete_priors.training.precision import PRECISIONS

class HELP_FORMATTER(argparse.ArgumentDefaultsHelpFormatter):  # noqa: N801 - used like the argparse class
    """Shows each flag's default, except an unset one (None): its help says what happens then."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


# train-prior's sampling steps S when --default-steps is not given (capped at T): 16 of the
# Bernoulli prior's T = 256 (the quick start's recall 0.30 at S = 16), 50 DDIM steps for gaussian
CLI_DEFAULT_STEPS = {"bernoulli": 16, "gaussian": 50}


def positive_int(text: str) -> int:
    """argparse type: an int >= 1, refused at parse time (before any data is loaded or file written)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


DEFAULT_NLL_TIMESTEPS = 32  # eval's estimate of a diffusion prior's VLB unless --nll-timesteps says otherwise


def nll_timesteps(text: str) -> int:
    """argparse type of eval's --nll-timesteps: M >= 1 timesteps, or 'all' / 0 -> 0 (the full bound)."""
    if text.strip().lower() == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of timesteps >= 1, or 'all' (or 0) for the full bound, "
                                         f"got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of timesteps >= 1, or 'all' (or 0) for the full bound, "
                                         f"got {value}")
    return value


def levels_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 2 (FSQ levels)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 2 such as 8,5,5,5, got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 2 such as 8,5,5,5, got {text!r}")
    return values


def module_constant(module: str, name: str) -> tuple:
    """The literal tuple ``name`` of ``module``, read from its source without importing it: the
    prior modules import x-transformers (3 s), which ``--help`` should not wait for."""
    source = open(importlib.util.find_spec(module).origin, encoding="utf-8").read()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise LookupError(f"{module} defines no literal constant {name}")


LOSS_BALANCES = module_constant("discrete_priors.priors.bernoulli", "LOSS_BALANCES")
TIME_SAMPLINGS = module_constant("discrete_priors.priors.bernoulli", "TIME_SAMPLINGS")
FINAL_STEPS = module_constant("discrete_priors.priors.bernoulli", "FINAL_STEPS")
ABSORBING_WEIGHTINGS = module_constant("discrete_priors.priors.absorbing", "LOSS_WEIGHTINGS")
GAUSSIAN_WEIGHTINGS = module_constant("discrete_priors.priors.gaussian", "LOSS_WEIGHTINGS")
LOSS_WEIGHTINGS = ABSORBING_WEIGHTINGS + tuple(w for w in GAUSSIAN_WEIGHTINGS if w not in ABSORBING_WEIGHTINGS)
GAUSSIAN_TARGETS = module_constant("discrete_priors.priors.gaussian_math", "TARGETS")
GAUSSIAN_SAMPLERS = module_constant("discrete_priors.priors.gaussian_math", "SAMPLERS")
GAUSSIAN_SCHEDULES = module_constant("discrete_priors.priors.schedules", "GAUSSIAN_SCHEDULES")


def _add_data_args(p: argparse.ArgumentParser, *, recorded: bool = False) -> None:
    """The dataset flags. ``recorded``: a command given --ae, whose unset flags come from the
    autoencoder's data.json (pipeline.recorded_dataset)."""
    note = " (default: the one recorded in the autoencoder's data.json)" if recorded else ""
    p.add_argument("--dataset", default=None if recorded else "digits", choices=DATASETS,
                   help="digits: scikit-learn's embedded 8x8 digits; fashion-mnist: idx files from --data-dir, "
                        "$DISCRETE_PRIORS_DATA or /usr/share/datasets/fashion-mnist; image-folder: images under "
                        "--data-dir" + note)
    p.add_argument("--size", type=positive_int, default=None,
                   help="resize images to SIZE x SIZE (digits default 16, fashion-mnist 28)" + note)
    p.add_argument("--data-dir", default=None, help="where the dataset lives (fashion-mnist, image-folder)" + note)
    p.add_argument("--data-seed", type=int, default=None if recorded else 0,
                   help="seed of the deterministic train/test split; keep it fixed so test images stay unseen" + note)


def _add_train_args(p: argparse.ArgumentParser, *, steps: int, batch_size: int, lr: float, ema_decay: float) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=positive_int, default=steps, help="optimizer steps (a rerun resumes from the last checkpoint)")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, help="global batch size (split across torchrun processes)")
    g.add_argument("--lr", type=float, default=lr, help="AdamW peak learning rate")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    g.add_argument("--warmup-steps", type=int, default=None,
                   help="linear learning-rate warm-up (default: a tenth of --steps, at most 100)")
    g.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"], help="learning rate after warm-up")
    g.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine: final lr as a fraction of --lr")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm (0 disables)")
    g.add_argument("--ema-decay", type=float, default=ema_decay,
                   help="EMA of weights used for evaluation (0 disables; off for autoencoders: an averaged VQ "
                        "encoder no longer matches its codebook, -8 dB in our runs)")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help="steps between checkpoints (default: a tenth of --steps, at most 1000)")
    g.add_argument("--seed", type=int, default=0, help="seed for initial weights, batches and all sampling")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the network for training (on the 2-core AVX2 CPU a cpu-preset prior compiled "
                        "for 38 s and then stepped at 1.02x the eager time: no gain there; try it on a GPU)")
    _add_runtime_args(g)


def _add_pair_args(p) -> None:
    """--ae, --prior and --allow-mismatch of the commands that decode a prior's codes (sample, inpaint)."""
    p.add_argument("--ae", required=True, help="autoencoder run directory")
    p.add_argument("--prior", required=True, help="prior run directory (any prior)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="decode with an autoencoder other than the one the prior was trained on (refused otherwise)")


def _add_sampling_args(p, *, labels_help: str) -> None:
    """The sampling flags shared by sample, inpaint and eval."""
    p.add_argument("--steps", type=positive_int, default=None,
                   help="sampling steps (default: the prior's own, its config's default_steps: train-prior sets 16 "
                        "for bernoulli and 50 for gaussian unless --default-steps; absorbing: T; autoregressive: "
                        "one per position)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="temperature τ on the network's logits; gaussian: a scale on the noise injected per reverse "
                        "step (1 = the model, 0 = deterministic given x_T; no effect with DDIM eta = 0)")
    p.add_argument("--labels", default=None, help="class-conditional: comma-separated labels, " + labels_help)
    p.add_argument("--guidance", type=float, default=0.0,
                   help="classifier-free guidance weight w (needs labels and a class-conditional prior)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="samples per batch")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def _add_runtime_args(p) -> None:
    """--device, --precision and --threads, the same on every command that runs a network."""
    p.add_argument("--device", default="auto", help=DEVICES)
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="network precision: auto = bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX-BF16, "
                        "Arm BF16), fp32 on other CPUs, where bf16 is emulated (~10x slower per training step); a "
                        "resumed run keeps the precision it was trained in. The diffusion maths, losses and "
                        "likelihoods stay fp32 (README, Speed and precision)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for PyTorch (0 = PyTorch's default, one per core). On the idle 2-core machine 2 "
                        "threads took 0.72x the time of 1 per training step; when other jobs load the cores, 1 thread "
                        "was 4.7x faster than 2: pass --threads 1 on a shared machine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discrete-priors", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("train-ae", help="train an autoencoder", formatter_class=HELP_FORMATTER,
                       description="Train an autoencoder whose latent space is binary (sampled or --deterministic), LFQ, "
                                   "BSQ, VQ, FSQ or continuous (same backbone).")
    _add_data_args(p)
    p.add_argument("--latent", default="binary", choices=list(LATENTS),
                   help="latent space: binary (Bernoulli), lfq (signs, MAGVIT-v2), bsq (signs on the unit sphere), "
                        "vq, fsq (rounded bounded scalars) or continuous (docs/method.md §1, §9)")
    p.add_argument("--bits", type=positive_int, default=32, help="binary / lfq / bsq: bits per latent position (c)")
    p.add_argument("--deterministic", action="store_true",
                   help="binary: train on the threshold 1[y > 1/2] instead of a Bernoulli draw (straight-through, no "
                        "sampling noise); its caches hold fixed codes that priors cannot --resample")
    p.add_argument("--levels", type=levels_list, default=(8, 5, 5, 5),
                   help="fsq: levels per channel, comma-separated (vocabulary = their product; 8,5,5,5 = 1000 codes)")
    p.add_argument("--codebook-size", type=positive_int, default=512, help="vq: number of codebook vectors K")
    p.add_argument("--latent-dim", type=positive_int, default=8, help="vq / continuous: latent vector size")
    p.add_argument("--kl-weight", type=float, default=0.0, help="continuous: KL weight (0 = plain autoencoder)")
    p.add_argument("--preset", default="cpu-digits", choices=list(AE_PRESETS), help="architecture preset")
    p.add_argument("--adversarial-weight", type=float, default=0.0, help="PatchGAN hinge loss weight (0 disables)")
    p.add_argument("--disc-start", type=int, default=0, help="step at which the adversarial loss starts")
    p.add_argument("--recon-loss", default=None, choices=["l1", "mse"], help="reconstruction loss (preset default if unset)")
    p.add_argument("--perceptual-weights", default=None, help="local weights file for the perceptual loss (enables it)")
    p.add_argument("--perceptual-weight", type=float, default=1.0, help="perceptual loss weight (with --perceptual-weights)")
    _add_train_args(p, steps=2000, batch_size=64, lr=2e-3, ema_decay=0.0)
    p.add_argument("--out", required=True, help="run directory for checkpoints and logs")

    p = sub.add_parser("encode", help="encode a dataset into a latent cache", formatter_class=HELP_FORMATTER,
                       description="Encode dataset splits with a trained autoencoder; binary codes are bit-packed and "
                                   "their Bernoulli probabilities kept (float16) so priors can resample codes each step.")
    p.add_argument("--ae", required=True, help="autoencoder run directory (from train-ae)")
    _add_data_args(p, recorded=True)
    p.add_argument("--splits", default="train,test", help="comma-separated splits to encode")
    p.add_argument("--mode", default="deterministic", choices=["deterministic", "sample"],
                   help="binary codes: threshold the probabilities at 1/2, or draw a Bernoulli sample "
                        "(VQ, FSQ, LFQ, BSQ, deterministic binary and continuous codes refuse 'sample')")
    p.add_argument("--no-probs", action="store_true",
                   help="do not store Bernoulli probabilities (latent spaces without them, e.g. lfq, bsq or "
                        "binary --deterministic, never store any: their caches are marked as fixed codes)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampled codes (--mode sample)")
    _add_runtime_args(p)
    p.add_argument("--out", required=True, help="directory for <split>.safetensors")

    p = sub.add_parser("train-prior", help="train a prior on a latent cache", formatter_class=HELP_FORMATTER,
                       description="Train a prior over latent codes. Options that do not apply to the chosen prior are "
                                   "rejected. --prior gaussian (continuous latents: Gaussian diffusion, the LDM "
                                   "baseline) scales the codes by 1/std of this cache's training codes (its "
                                   "latent_scale, stored in its config) and reports its NLL in bits per latent "
                                   "dimension of the float16-stored codes, not in bits per latent bit.")
    p.add_argument("--latents", required=True, help="latent cache directory (from encode)")
    p.add_argument("--prior", default="bernoulli", choices=list(PRIORS), help="which prior")
    p.add_argument("--net", default="cpu", help="network size preset shared by all priors: tiny, cpu, paper")
    p.add_argument("--timesteps", type=positive_int, default=None, help="diffusion steps T (prior default if unset)")
    p.add_argument("--schedule", default=None, choices=SCHEDULES,
                   help=f"bernoulli: noise schedule; gaussian: beta schedule, one of {', '.join(GAUSSIAN_SCHEDULES)} "
                        "(default cosine)")
    p.add_argument("--parameterization", default=None, choices=PARAMETERIZATIONS, help="bernoulli: network target")
    p.add_argument("--reverse", default=None, choices=REVERSE_FORMS, help="bernoulli: reverse-step form")
    p.add_argument("--loss-balance", default=None, choices=LOSS_BALANCES, help="bernoulli: BCE balancing")
    p.add_argument("--vlb-weight", type=float, default=None, help="bernoulli: weight λ of the VLB term")
    p.add_argument("--time-sampling", default=None, choices=TIME_SAMPLINGS,
                   help="bernoulli: how training draws t (importance: where the loss is high, reweighted)")
    p.add_argument("--final-step", default=None, choices=FINAL_STEPS,
                   help="bernoulli: the last sampling step: drawn (exact) or thresholded at 1/2 (reference code)")
    p.add_argument("--loss-weighting", default=None, choices=LOSS_WEIGHTINGS,
                   help=f"absorbing: {', '.join(ABSORBING_WEIGHTINGS)}; gaussian: {', '.join(GAUSSIAN_WEIGHTINGS)} "
                        "(uniform = plain MSE of the target, min_snr = Min-SNR-5 on x0's error, vlb = each step "
                        "weighted as its VLB term)")
    p.add_argument("--target", default=None, choices=GAUSSIAN_TARGETS,
                   help="gaussian: what the network predicts, the noise eps, x0, or v = alpha eps - sigma x0 "
                        "(default v: well conditioned at both ends of the schedule)")
    p.add_argument("--sampler", default=None, choices=GAUSSIAN_SAMPLERS,
                   help="gaussian: default sampler, DDIM or ancestral (DDPM) steps (default ddim)")
    p.add_argument("--eta", type=float, default=None,
                   help="gaussian: DDIM eta in [0, 1], 0 = deterministic, 1 = the ancestral step's variance (default 0)")
    p.add_argument("--default-steps", type=positive_int, default=None,
                   help="bernoulli, gaussian: the sampling steps S that sample, inpaint and eval use when not given "
                        "--steps, stored in the prior's config (default: " +
                        ", ".join(f"{k} {v}" for k, v in CLI_DEFAULT_STEPS.items()) +
                        ", at most T; parameterization direct: T). The prior's own default without this command "
                        "line is S = T, which makes a cpu eval take tens of minutes")
    p.add_argument("--class-conditional", action="store_true", help="condition on labels (classifier-free guidance ready)")
    p.add_argument("--resample", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                   help="draw fresh codes from the cache's Bernoulli probabilities every step (the reference code's "
                        "augmentation). Default (neither flag): on when the cache holds Bernoulli probabilities (a "
                        "sampled binary latent), off for fixed codes (VQ, FSQ, LFQ, BSQ, --deterministic binary, "
                        "continuous, or encode --no-probs); a resumed run keeps its recorded choice. The choice is "
                        "printed and stored in <out>/prior.json")
    _add_train_args(p, steps=3000, batch_size=128, lr=1e-3, ema_decay=0.999)
    p.add_argument("--out", required=True, help="run directory for checkpoints and logs")
    p.set_defaults(cli_default_steps=CLI_DEFAULT_STEPS)  # read by commands.train_prior when --default-steps is unset

    p = sub.add_parser("sample", help="sample codes and decode them", formatter_class=HELP_FORMATTER,
                       description="Draw samples from a trained prior and decode them with the autoencoder.")
    _add_pair_args(p)
    p.add_argument("-n", "--num-samples", type=positive_int, default=64, help="number of samples")
    _add_sampling_args(p, labels_help="cycled over the samples")
    _add_runtime_args(p)
    p.add_argument("--out", required=True, help="directory for grid.png and samples.safetensors")

    p = sub.add_parser("inpaint", help="fill a region of real images with a prior", formatter_class=HELP_FORMATTER,
                       description="Encode real images with the autoencoder, keep the codes outside a mask, let the "
                                   "prior fill the rest, decode. Latent position (i, j) of an autoencoder with "
                                   "downsampling k owns the pixel cell [i*k, (i+1)*k) x [j*k, (j+1)*k); it is "
                                   "regenerated when ANY pixel of its cell is masked, else it keeps the encoder's code "
                                   "exactly (an autoregressive prior regenerates everything from the first masked "
                                   "cell on, in raster order). Writes inpainting.png (one row per input: original, "
                                   "reconstruction, masked, then --samples fills), inpainted.safetensors and "
                                   "inpainting.json.")
    _add_pair_args(p)
    p.add_argument("--input", default=None, help="an image file, or a folder whose images (recursive) are all inpainted; "
                                                 "resized and center-cropped to the autoencoder's size")
    p.add_argument("--indices", default=None, help="instead of --input: comma-separated test-split indices (e.g. 0,5,7) "
                                                   "of the dataset below")
    p.add_argument("--box", default=None, help="the region to fill: y0,x0,y1,x1 in pixels of the autoencoder's "
                                               "image size (y1, x1 excluded)")
    p.add_argument("--mask", default=None, help="instead of --box: a mask image, white (>= 128) where the prior fills, "
                                                "resized and center-cropped like the inputs")
    p.add_argument("--samples", type=positive_int, default=4, help="fills drawn per input")
    _add_sampling_args(p, labels_help="cycled over the inputs (default with --indices: the test images' own labels)")
    _add_data_args(p, recorded=True)
    _add_runtime_args(p)
    p.add_argument("--out", required=True, help="directory for inpainting.png, inpainted.safetensors, inpainting.json")

    p = sub.add_parser("eval", help="metrics for a prior or a folder of samples", formatter_class=HELP_FORMATTER,
                       description="Write one result row with every metric: Fréchet distance, precision/recall/density/"
                                   "coverage, memorisation (nearest training image), and for a prior also NLL on "
                                   "held-out codes and samples per second. Rows go to a JSONL file (one wide row) "
                                   "and to a tidy CSV (one row per metric).")
    p.add_argument("--ae", default=None, help="autoencoder run directory (needed with --prior)")
    p.add_argument("--prior", default=None, help="prior run directory: samples are drawn from it")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="use an autoencoder (and --latents) other than the prior's own (refused otherwise)")
    p.add_argument("--samples", default=None, help="instead of --prior: a directory with samples.safetensors (from sample)")
    p.add_argument("--latents", default=None, help="latent cache directory; its test split gives the held-out NLL")
    _add_data_args(p, recorded=True)
    p.add_argument("--extractor", default=None, help="feature extractor: classifier:<dataset> (default: the dataset's), inception-tf-2015 (the standard FID space, installed file) or inception")
    p.add_argument("--inception-weights", default=None, help="local weights file for --extractor inception (torchvision state dict) or inception-tf-2015 (its TorchScript; default: the installed one)")
    p.add_argument("--cache-dir", default=None, help="where trained classifier extractors are cached")
    p.add_argument("-n", "--num-samples", type=positive_int, default=1000, help="samples drawn from --prior")
    _add_sampling_args(p, labels_help="cycled over the samples (default for a conditional prior: all classes in turn; "
                                      "its rows then include class_accuracy, the feature classifier's agreement)")
    g = p.add_argument_group("parts (each logs a start line and its time on stderr)")
    g.add_argument("--no-nll", action="store_true", help="skip the held-out NLL (even with --latents)")
    g.add_argument("--nll-codes", type=positive_int, default=None,
                   help="score the NLL on the first N held-out codes only (default: the whole test split)")
    g.add_argument("--nll-timesteps", type=nll_timesteps, default=None,
                   help="diffusion priors whose bound sums over timesteps (bernoulli, gaussian): estimate it from M "
                        "stratified random timesteps per code (unbiased, noisier), or 'all' (or 0) for the full bound "
                        f"over all T. Default: {DEFAULT_NLL_TIMESTEPS} (minutes on a CPU; report 'all' in a table). "
                        "Priors without such an estimate (absorbing, autoregressive) refuse a number")
    g.add_argument("--no-memorisation", action="store_true",
                   help="skip the nearest-training-image distances (and the training split's features)")
    g.add_argument("--no-speed", action="store_true",
                   help="skip the samples-per-second timing (a warm-up and 3 timed batches of --speed-batch-size)")
    g.add_argument("--speed-batch-size", type=positive_int, default=64,
                   help="batch size of the samples-per-second timing (4 batches of it are drawn: keep it small)")
    _add_runtime_args(p)
    p.add_argument("--experiment", default="eval", help="experiment name written in the rows")
    p.add_argument("--variant", default=None, help="variant name written in the rows (default: prior name and steps)")
    p.add_argument("--out", required=True, help="results directory: results.jsonl and results.csv are appended")
    p.set_defaults(default_nll_timesteps=DEFAULT_NLL_TIMESTEPS)  # read by commands.eval when --nll-timesteps is unset

    p = sub.add_parser("plot-log", help="plot a run's train_log.jsonl", formatter_class=HELP_FORMATTER,
                       description="One panel per logged quantity of a training run (loss, lr, grad_norm and the "
                                   "model's terms) against the step. train-ae and train-prior write the same plot "
                                   "as <run>/train_log.png when they finish.")
    p.add_argument("run", help="run directory (from train-ae or train-prior) holding train_log.jsonl")
    p.add_argument("--out", default=None, help="PNG to write (default: <run>/train_log.png)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0 = PyTorch's default)")

    p = sub.add_parser("demo", help="the whole pipeline on digits", formatter_class=HELP_FORMATTER,
                       description="autoencoder → latent cache → Bernoulli diffusion prior → sample grid + metrics, "
                                   "on the embedded digits data (9-18 minutes on 2 CPU cores, depending on the CPU; --quick: about a minute).")
    p.add_argument("--out", default="runs/demo", help="run directory")
    p.add_argument("--quick", action="store_true", help="tiny models and few steps (a smoke test, about a minute)")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (0 = PyTorch's default, one per core)")
    return parser


# what a user's input can cause (a missing file, a corrupt image or checkpoint, a refused option):
# from the command line one line names it and its fix, without a traceback
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
TRACEBACK_ENV_VAR = "DISCRETE_PRIORS_TRACEBACK"


def main(argv: list[str] | None = None) -> int:
    """Run one command. From the command line (``argv=None``) a user error (:data:`USER_ERRORS`)
    is printed as one ``error:`` line on stderr with exit status 2 (set $DISCRETE_PRIORS_TRACEBACK=1
    for the traceback); called from Python with ``argv``, it is raised."""
    args = build_parser().parse_args(argv)
    from discrete_priors import commands  # after parsing, so that --help does not import every stage
    from discrete_priors.training import set_threads

    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0 (0 = PyTorch's default), got {args.threads}")
    set_threads(args.threads or None)

    handler = getattr(commands, args.command.replace("-", "_"))
    try:
        result = handler(args)
    except USER_ERRORS as err:
        if argv is not None or os.environ.get(TRACEBACK_ENV_VAR):
            raise
        message = err.args[0] if isinstance(err, FileNotFoundError) and err.args and isinstance(err.args[0], str) else err
        print(f"discrete-priors {args.command}: error: {message}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
