"""One trainer for autoencoders and priors (contract docs/method.md §8.3): AdamW with linear warm-up, gradient
clipping, EMA weights, mixed precision (training/precision.py), optional ``torch.compile``, data parallelism under torchrun, crash-safe
checkpoints and exact resume.

The route of one batch, step s on rank r (:meth:`Trainer.train_step`):

1. ``index``: this rank's slice of the step's global batch of example indices,
   :func:`~discrete_priors.training.distributed.global_batch_indices` (epoch-wise shuffles).
2. ``batch = data(index, generator)`` from a batch source on the trainer's device -- for a prior
   :meth:`LatentCache.batches <discrete_priors.data.cache.LatentCache.batches>` (data/cache.py:
   codes, redrawn from the stored Bernoulli probabilities when asked, and labels) -- or
   ``t[index]`` of each tensor when ``data`` is a tuple of tensors (an autoencoder's images).
3. ``out = model(*batch, generator=generator, **hook.before_step(s))``, plus ``log_terms=`` (is step
   s logged?) for a model whose class sets ``accepts_log_terms = True``: a :class:`LossOutput`. For
   a prior, ``forward`` is ``prior.loss(codes, labels, generator=...)`` (e.g.
   priors/bernoulli.py), which noises the codes and calls the denoiser (nets/denoiser.py).
4. backward, clipping, AdamW and EMA updates; then ``hook.after_step(s, batch, out)`` (the
   autoencoder's discriminator step, autoencoder/adversarial.py) and logging.

Exact resume: everything random in a step is a pure function of ``(seed, step, rank)`` -- the
example indices, the generator handed to the batch source and the one handed to ``forward``.
With weights, EMA, optimizer, GradScaler and hook states restored, a killed-and-resumed run
reproduces the uninterrupted one bit for bit (same device, same world size).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from discrete_priors.io import atomic_path, read_json
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.training import distributed as ddp
from discrete_priors.training.distributed import check_device, derive_seed, global_batch_indices
from discrete_priors.training.precision import DTYPES, check_precision, legacy_auto_precision, resolve_precision

logger = logging.getLogger("discrete_priors.training")


@dataclass
class TrainConfig:
    """steps: optimizer updates in the whole run. batch_size: GLOBAL batch (split over ranks).
    schedule: after ``warmup_steps`` of linear warm-up the lr stays ``"constant"`` or follows a
    ``"cosine"`` down to ``min_lr_ratio * lr`` at ``steps``. grad_clip: max global grad norm
    (0 = no clipping; the norm is logged either way). ema_decay: 0 disables EMA; with
    ``ema_warmup`` (default) the decay used at update t is ``min(ema_decay, (1 + t) / (10 + t))``
    (see ``ema_decay_at``), so the random initialisation does not linger in short runs.
    amp: the networks' precision (the name is kept so old checkpoints resume): ``"fp32"``, ``"bf16"``
    (CUDA, and CPUs with native bf16), ``"fp16"`` (CUDA, with a GradScaler), or ``"auto"`` = bf16 on
    CUDA (fp16 where bf16 is unsupported) and on CPUs with native bf16, fp32 on other CPUs; a run
    resumed with ``"auto"`` keeps the precision its checkpoint recorded (``Trainer.precision``);
    ``"off"`` is the old spelling of fp32 (see training/precision.py). compile: ``torch.compile`` the network for training (the eager module
    is what is saved and EMA'd); off by default: on the 2-core AVX2 CPU it gave no per-step gain
    (README, Speed and precision).
    checkpoint_every / log_every: in steps (0 = only at the end). keep_checkpoints: newest kept
    (0 = all). disc_lr: discriminator lr (None = lr), read by the autoencoder's adversarial hook.
    device: ``auto | cpu | cuda | cuda:N`` (see :func:`~discrete_priors.training.distributed.resolve_device`)."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    amp: str = "auto"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    seed: int = 0
    disc_lr: float | None = None
    device: str = "auto"
    find_unused_parameters: bool = False
    compile: bool = False

    def __post_init__(self):
        assert self.schedule in {"constant", "cosine"}, f"unknown schedule {self.schedule!r}, expected 'constant' or 'cosine'"
        check_precision(self.amp)
        check_device(self.device)  # the GPU itself is looked for when the trainer resolves it
        if self.steps < 0 or self.batch_size < 1 or self.warmup_steps < 0:
            raise ValueError(f"expected steps >= 0, batch_size >= 1, warmup_steps >= 0; got {self.steps}, {self.batch_size}, {self.warmup_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(d) - known:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**d)


class LossOutput(NamedTuple):
    """What ``forward`` returns to the trainer: loss, a scalar to minimise; terms, named detached
    scalars to log (e.g. ``{"bce": .., "vlb": ..}``). Richer outputs (an autoencoder's, with its
    reconstruction) are NamedTuples that start with these two fields."""

    loss: torch.Tensor
    terms: dict


class TrainingHook:
    """What a model needs from training beyond ``forward(*batch, generator=...)`` and one
    optimizer: the autoencoder's discriminator step
    (:class:`~discrete_priors.autoencoder.adversarial.AdversarialTraining`) is one.

    Per step the trainer calls ``before_step(step)`` (its dict is passed to ``forward`` as extra
    keywords) and, after the model's update and EMA, ``after_step(step, batch, out)`` (its dict
    is logged). ``modules()`` and ``optimizers()`` are saved in every checkpoint as
    ``<name>.safetensors`` / ``<name>.{safetensors,json}`` and restored on resume;
    ``state_dict()`` (JSON) is merged into ``trainer_state.json`` beside the trainer's own keys
    (``step``, ``config``, ``world_size``, ``scaler``), which it must not reuse."""

    def setup(self, trainer: "Trainer") -> None:
        """Called once by the trainer's constructor, after the model is on its device."""

    def before_step(self, step: int) -> dict:
        return {}

    def after_step(self, step: int, batch: tuple, out) -> dict:
        return {}

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """``state``: the whole ``trainer_state.json`` of the checkpoint being resumed."""


class FitResult(NamedTuple):
    """step: updates done; terms: mean of each logged quantity over the last log window
    (``loss``, the model's terms, the hook's, e.g. ``disc/...``); checkpoint: folder of the last checkpoint."""

    step: int
    terms: dict
    checkpoint: Path | None


def learning_rate(step: int, config: TrainConfig, base_lr: float | None = None) -> float:
    """lr used for the update with 0-based index ``step``: linear warm-up ``(step+1)/warmup``,
    then constant or cosine to ``min_lr_ratio * lr`` at ``config.steps``."""
    base_lr = config.lr if base_lr is None else base_lr
    if step < config.warmup_steps:
        return base_lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return base_lr
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return base_lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """EMA decay for the update with 0-based index ``step``.

    A constant decay leaves weight ``decay**n`` on the random initialisation after n updates
    (0.999: 61% after 500 steps, 22% after 1,500), and sampling from such weights collapses. The
    warm-up ``min(decay, (1 + t) / (10 + t))`` (as in timm's ModelEmaV2 warm-up and TF's
    ``ExponentialMovingAverage(num_updates=...)``) keeps ``prod_t decay_t`` on the initialisation,
    ``9! / (n+1)(n+2)...(n+9)`` while the warm-up binds: below 1e-15 after 500 updates."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for floating tensors; other buffers are copied."""
    # one foreach kernel over all parameters (raises when the two lists differ in length)
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        if e.is_floating_point():
            e.lerp_(b, 1.0 - decay)
        else:
            e.copy_(b)


def optimizer_implementation(device: torch.device) -> dict:
    """AdamW's kernel on ``device``: ``fused=True`` on CPU and CUDA (one kernel over all
    parameters), ``foreach=True`` elsewhere. Measured at the cpu prior (0.83M parameters in 50
    tensors, 1 thread): fused 0.27x the default per-tensor loop's step time, foreach 0.81x. Only
    foreach is bit-identical to the loop; the fused CPU kernel rounds differently, within 1e-6
    relative after 50 steps (tests/test_training_speed.py checks it)."""
    return {"fused": True} if device.type in {"cpu", "cuda"} else {"foreach": True}


def adamw(module: nn.Module, lr: float, config: TrainConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW over ``module``'s trainable parameters; ``device`` (default: the parameters') picks the kernel."""
    # Decay matrices only: biases and norm gains (ndim < 2) are left undecayed, as in nanoGPT.
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    device = device if device is not None else (params[0].device if params else torch.device("cpu"))
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=config.betas, **optimizer_implementation(device))


class Trainer:
    """Trains ``model`` on ``data``; the module docstring follows one batch through a step.

    model: ``model(*batch, generator=..., **hook.before_step(step))`` returns a :class:`LossOutput`
        (or a NamedTuple starting with its fields); ``generator`` lives on the trainer's device.
    data: a tuple of tensors sharing their first (example) dimension, batched as ``t[index]`` (None
        entries pass through as None), or a batch source: ``len(data)`` examples and
        ``data(index: (b,) long on CPU, generator) -> tuple[Tensor, ...]`` drawing its randomness
        from ``generator`` (on the trainer's device), such as ``LatentCache.batches(...)``.
    hook: a :class:`TrainingHook` (e.g. the autoencoder's discriminator step), or None.
    A model class that sets ``accepts_log_terms = True`` also gets ``log_terms=`` (True on the steps
    that are logged): terms only logged (a prior's VLB when λ = 0) can be skipped on the others;
    each logged mean is then over the steps that computed it.
    log_fn: called on rank 0 with each metrics record (also appended to ``train_log.jsonl``).
    The model is moved to the configured device.
    """

    def __init__(self, model: nn.Module, data, config: TrainConfig, out_dir, *, hook: TrainingHook | None = None,
                 progress: bool = True, log_fn: Callable | None = None):
        self.config, self.out_dir = config, Path(out_dir)
        self.device = ddp.resolve_device(config.device)
        self.dist = ddp.setup_distributed(self.device)
        self.local_batch = ddp.shard_size(config.batch_size, self.dist.world_size)
        self.data, self.num_examples = self._check_data(data)
        self.progress, self.log_fn = progress, log_fn
        self.precision = self._resolve_precision()
        self.amp_dtype = DTYPES[self.precision]
        # an explicit opt-in (no signature sniffing): the class says its forward takes log_terms=
        self.log_terms_kwarg = getattr(type(model), "accepts_log_terms", False) is True

        self.model = model.to(self.device)
        self.train_model = self.wrap(self.model)
        if config.compile:
            self.train_model = compile_module(self.train_model)
        self.optimizer = adamw(self.model, config.lr, config, self.device)
        # EMA copies the weights after DDP's broadcast, so every rank holds the same average.
        self.ema_model = copy.deepcopy(self.model).eval().requires_grad_(False) if config.ema_decay > 0 else None
        self.scaler = self.grad_scaler()
        self.hook = hook if hook is not None else TrainingHook()
        self.hook.setup(self)
        self.step = 0
        # wall seconds spent in fit() over the whole run, carried across resumes in trainer_state.json
        # ("train_seconds"; a learning-curve point's compute); _fit_clock: (seconds before, start)
        self.train_seconds, self._fit_clock = 0.0, None

    # -- setup helpers (also used by hooks) ----------------------------------------------------------
    def _check_data(self, data):
        if callable(data):
            if not hasattr(data, "__len__"):
                raise ValueError(f"a batch source needs len() (its number of examples); {type(data).__name__} has none")
            return data, len(data)
        if not isinstance(data, (tuple, list)) or not any(torch.is_tensor(t) for t in data):
            raise ValueError(f"data: expected a tuple of tensors or a batch source data(index, generator), got {type(data).__name__}")
        sizes = {t.shape[0] for t in data if t is not None}
        if len(sizes) != 1:
            raise ValueError(f"data tensors must share their first (example) dimension, got sizes {sorted(sizes)}")
        return tuple(data), sizes.pop()

    def autocast(self):
        """The mixed-precision context of this run (a disabled autocast in fp32)."""
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only under fp16."""
        return torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when a process group is up, else as is."""
        return ddp.wrap_ddp(module, self.device, find_unused_parameters=self.config.find_unused_parameters)

    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def _resolve_precision(self) -> str:
        """``config.amp`` resolved on this device, except that a run resumed with ``auto`` keeps the
        precision it was trained in: the one its latest checkpoint recorded (``"precision"`` in
        ``trainer_state.json``), or for a checkpoint from before that was recorded, what ``auto``
        meant then (:func:`~discrete_priors.training.precision.legacy_auto_precision`: fp32 on CPU)."""
        if self.config.amp != "auto":
            return resolve_precision(self.config.amp, self.device)
        folder = ckpt.latest_checkpoint(self.checkpoint_root)
        if folder is None:
            return resolve_precision("auto", self.device)
        recorded = read_json(folder / "trainer_state.json").get("precision")
        precision = recorded or legacy_auto_precision(self.device)
        try:
            return resolve_precision(precision, self.device)
        except ValueError as err:
            raise ValueError(f"the run in {self.out_dir} was trained in {precision} (recorded in {folder}), which this "
                             f"device cannot resume: {err}. Pass an explicit precision to resume it in another one") from err

    def eval_model(self) -> nn.Module:
        """The module to evaluate: EMA weights when EMA is on, else the trained weights."""
        return self.ema_model if self.ema_model is not None else self.model

    # -- one step ---------------------------------------------------------------------------------
    def _generator(self, step: int, purpose: str) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(derive_seed(self.config.seed, purpose, step, self.dist.rank))

    def get_batch(self, step: int) -> tuple:
        """This rank's batch for ``step``, on the device: a pure function of (seed, step, rank)."""
        index = global_batch_indices(step, seed=self.config.seed, batch_size=self.config.batch_size, num_examples=self.num_examples)
        index = index[self.dist.rank * self.local_batch:(self.dist.rank + 1) * self.local_batch]
        if callable(self.data):
            # "batch_fn" names the stream of the hook this source replaced: the codes drawn for a
            # seed and step stay those of earlier runs.
            batch = self.data(index, self._generator(step, "batch_fn"))
        else:
            batch = (None if t is None else t[index] for t in self.data)
        return tuple(None if t is None else t.to(self.device, non_blocking=True) for t in batch)

    def update(self, loss, optimizer, scaler, params, lr) -> torch.Tensor:
        """backward (scaled), clip to ``grad_clip``, optimizer step at ``lr``; returns the raw grad norm."""
        for group in optimizer.param_groups:
            group["lr"] = lr
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        scaler.step(optimizer)
        scaler.update()
        return grad_norm

    def is_log_step(self, step: int, stop: int | None = None) -> bool:
        """Whether the update with 0-based index ``step`` ends a log window of a run to ``stop``
        (default ``config.steps``)."""
        stop = self.config.steps if stop is None else stop
        return (self.config.log_every > 0 and (step + 1) % self.config.log_every == 0) or step + 1 >= stop

    def train_step(self, step: int, *, log_terms: bool | None = None) -> dict:
        """One update (and the hook's); returns detached 0-d tensors to log. ``log_terms`` (default:
        :meth:`is_log_step`) is handed to a model that accepts it."""
        batch = self.get_batch(step)
        self.optimizer.zero_grad(set_to_none=True)
        extra = self.hook.before_step(step)
        if self.log_terms_kwarg:
            extra = {**extra, "log_terms": self.is_log_step(step) if log_terms is None else bool(log_terms)}
        with self.autocast():
            out = self.train_model(*batch, generator=self._generator(step, "model"), **extra)
        lr = learning_rate(step, self.config)
        grad_norm = self.update(out.loss, self.optimizer, self.scaler, self.model.parameters(), lr)
        if self.ema_model is not None:
            ema_update(self.ema_model, self.model, ema_decay_at(step, self.config.ema_decay, self.config.ema_warmup))
        record = {"loss": out.loss.detach().float(), "grad_norm": grad_norm.detach().float(),
                  **{k: torch.as_tensor(v, device=self.device).detach().float() for k, v in out.terms.items()}}
        record.update(self.hook.after_step(step, batch, out))
        return record

    # -- checkpoints ------------------------------------------------------------------------------
    def _state(self) -> dict:
        if self._fit_clock is not None:
            before, started = self._fit_clock
            self.train_seconds = before + time.perf_counter() - started
        return {"config": self.config.to_dict(), "precision": self.precision, "world_size": self.dist.world_size,
                "scaler": self.scaler.state_dict(), "train_seconds": self.train_seconds, **self.hook.state_dict()}

    def save_checkpoint(self) -> Path:
        """Rank 0 writes a checkpoint of the current step; the other ranks wait for it."""
        folder = self.checkpoint_root / ckpt.step_dir_name(self.step)
        if self.dist.rank == 0:
            folder = ckpt.save_checkpoint(
                self.checkpoint_root, self.step, model=self.model, optimizer=self.optimizer, trainer_state=self._state(),
                ema=self.ema_model, modules=self.hook.modules(), optimizers=self.hook.optimizers(),
                keep_last=self.config.keep_checkpoints)
        ddp.barrier()
        return folder

    def resume(self) -> Path | None:
        """Load the checkpoint named by ``checkpoints/latest.json`` if there is one."""
        folder = ckpt.latest_checkpoint(self.checkpoint_root)
        if folder is None:
            return None
        state = ckpt.load_checkpoint(folder, model=self.model, optimizer=self.optimizer, ema=self.ema_model,
                                     modules=self.hook.modules(), optimizers=self.hook.optimizers())
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.hook.load_state_dict(state)
        self.step = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))  # 0 for checkpoints from before it was kept
        log = self.out_dir / "train_log.jsonl"
        if self.dist.rank == 0 and log.exists():
            # records the killed run wrote after this checkpoint are about to be redone
            kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
            with atomic_path(log) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        changed = {k: (v, state["config"].get(k)) for k, v in self.config.to_dict().items()
                   if state["config"].get(k) != v and k not in {"steps", "log_every", "checkpoint_every", "keep_checkpoints"}}
        self._message(always=True, text=f"resuming from {folder} at step {self.step} in {self.precision}"
                      + (f"; config changed since (now, then): {changed}" if changed else ""))
        return folder

    # -- logging ----------------------------------------------------------------------------------
    def _message(self, text: str, *, always: bool = False) -> None:
        """A line on stderr (rank 0): with ``progress``, or ``always`` (the resume line)."""
        if self.dist.rank == 0:
            logger.info(text)
            if self.progress or always:
                tqdm.write(text, file=sys.stderr)

    def _log(self, step: int, window: dict, count: dict) -> dict:
        keys = sorted(window)
        # Keys such as disc/grad_norm appear only on some steps: each is averaged over its own count.
        means = ddp.all_reduce_mean(torch.stack([window[k] / count[k] for k in keys]))
        terms = dict(zip(keys, means.tolist()))
        if not math.isfinite(terms["loss"]):
            raise FloatingPointError(f"training loss is {terms['loss']} at step {step}; terms: {terms}")
        record = {"step": step, "loss": terms["loss"], "lr": learning_rate(step - 1, self.config),
                  "grad_norm": terms["grad_norm"],
                  "terms": {k: v for k, v in terms.items() if k not in {"loss", "grad_norm"}}}
        if self.dist.rank == 0:
            with open(self.out_dir / "train_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
            if self.log_fn is not None:
                self.log_fn(record)
        return terms

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> FitResult:
        """Train up to ``config.steps`` updates (or stop early at ``until``, keeping the schedule
        of the full run), resuming from the latest checkpoint in ``out_dir`` when present."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        last = self.resume()
        stop = self.config.steps if until is None else min(until, self.config.steps)
        self.train_model.train()
        every = self.config.log_every or max(1, stop - self.step)
        window, count, terms = {}, {}, {}
        interactive = sys.stderr.isatty()
        bar = tqdm(total=stop, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not self.progress or self.dist.rank != 0 or not interactive)
        started, start_step = time.perf_counter(), self.step
        self._fit_clock = (self.train_seconds, started)
        while self.step < stop:
            # the same test as the logging below, one step ahead
            record = self.train_step(self.step, log_terms=(self.step + 1) % every == 0 or self.step + 1 == stop)
            self.step += 1
            for k, v in record.items():
                window[k], count[k] = window.get(k, 0.0) + v, count.get(k, 0) + 1
            if self.step % every == 0 or self.step == stop:
                terms = self._log(self.step, window, count)
                bar.set_postfix(loss=f"{terms['loss']:.4g}")
                if not interactive:  # redirected output gets plain lines instead of a bar
                    rate = (self.step - start_step) / max(time.perf_counter() - started, 1e-9)
                    self._message(f"{self.out_dir.name}: step {self.step}/{stop} loss {terms['loss']:.4g} "
                                  f"({rate:.2f} steps/s)")
                window, count = {}, {}
            if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0 and self.step < stop:
                last = self.save_checkpoint()
            bar.update(1)
        bar.close()
        if last is None or last.name != ckpt.step_dir_name(self.step):
            last = self.save_checkpoint()
        self._state()  # brings train_seconds up to date
        self._fit_clock = None
        return FitResult(self.step, terms, last)


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile(module)`` for training. The compiled wrapper shares ``module``'s parameters;
    the trainer keeps saving, EMA-ing and checkpointing the eager module, so state-dict keys never
    get the wrapper's ``_orig_mod.`` prefix."""
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"TrainConfig(compile=True) needs torch.compile (PyTorch >= 2.0), this is {torch.__version__}; use compile=False")
    return torch.compile(module)
