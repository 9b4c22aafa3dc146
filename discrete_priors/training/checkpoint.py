"""Crash-safe, code-free training checkpoints.

Layout under ``<out_dir>/checkpoints/``::

    step_0001000/               one complete checkpoint
        model.safetensors       training weights (state_dict_for_save)
        ema.safetensors         EMA weights (when EMA is on)
        optimizer.safetensors   AdamW moments, keys "state.<param index>.<name>"
        optimizer.json          AdamW param_groups and non-tensor state
        <name>.safetensors      each module of a training hook (the autoencoder's
                                discriminator.safetensors), and
        <name>.{safetensors,json}   each optimizer of the hook (disc_optimizer.*)
        trainer_state.json      step, TrainConfig, GradScaler state, the hook's JSON state
        model_config.json       model.config, enough to rebuild the model (when present)
    latest.json                 {"step": .., "dir": "step_0001000"}, written LAST

A checkpoint is first written into a hidden temporary folder, renamed into place, and only then
is ``latest.json`` replaced (atomically). A crash at any point therefore leaves ``latest.json``
pointing at the previous complete checkpoint. Nothing is ever unpickled: tensors come from
safetensors, everything else from JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from discrete_priors.io import load_tensors, read_json, save_tensors, state_dict_for_save, write_json

LATEST = "latest.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


# -- optimizer state <-> (safetensors, JSON) ------------------------------------------------------
def optimizer_state_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able bookkeeping."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


_IMPLEMENTATION_KEYS = ("foreach", "fused")


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], meta: dict, optimizer: torch.optim.Optimizer) -> dict:
    """Inverse of :func:`optimizer_state_to_files`; ``optimizer`` supplies the tuple-typed options
    (JSON turns ``betas=(0.9, 0.99)`` into a list)."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for saved, current in zip(meta["param_groups"], optimizer.param_groups, strict=True):
        group = {k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()}
        # the kernel choice is the running code's (old checkpoints saved foreach=None, fused=None):
        # the state itself is the same for every implementation
        group.update({k: current[k] for k in _IMPLEMENTATION_KEYS if k in current})
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _save_optimizer(folder: Path, name: str, optimizer: torch.optim.Optimizer) -> None:
    tensors, meta = optimizer_state_to_files(optimizer)
    save_tensors(folder / f"{name}.safetensors", tensors)
    write_json(folder / f"{name}.json", meta)


def _load_optimizer(folder: Path, name: str, optimizer: torch.optim.Optimizer) -> None:
    tensors = load_tensors(folder / f"{name}.safetensors")
    optimizer.load_state_dict(optimizer_state_from_files(tensors, read_json(folder / f"{name}.json"), optimizer))


# -- writing --------------------------------------------------------------------------------------
def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict,
    ema: nn.Module | None = None,
    modules: dict[str, nn.Module] | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    keep_last: int = 0,
) -> Path:
    """Write one complete checkpoint for ``step`` under ``root`` and point ``latest.json`` at it.
    ``modules`` / ``optimizers``: further named parts (a training hook's), one file (pair) each.
    ``keep_last > 0`` then deletes all but the newest ``keep_last`` checkpoints. Returns its folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_tensors(tmp / "model.safetensors", state_dict_for_save(model))
    if ema is not None:
        save_tensors(tmp / "ema.safetensors", state_dict_for_save(ema))
    _save_optimizer(tmp, "optimizer", optimizer)
    for name, module in (modules or {}).items():
        save_tensors(tmp / f"{name}.safetensors", state_dict_for_save(module))
    for name, extra_optimizer in (optimizers or {}).items():
        _save_optimizer(tmp, name, extra_optimizer)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        write_json(tmp / "model_config.json", config)
    write_json(tmp / "trainer_state.json", {**trainer_state, "step": step})

    # A folder left by an earlier crashed run at this very step was never pointed to: replace it.
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json(root / LATEST, {"step": step, "dir": final.name})
    if keep_last > 0:
        prune_checkpoints(root, keep_last)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every complete-looking checkpoint folder, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints; never the one ``latest.json`` names."""
    latest = latest_checkpoint(root)
    for _, folder in list_checkpoints(root)[:-keep_last]:
        if latest is None or folder.resolve() != latest.resolve():
            shutil.rmtree(folder, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------------
def safetensors_problem(path: Path) -> str | None:
    """None when ``path`` is a whole safetensors file, else what is wrong with it (naming it): the
    8-byte header length, the JSON header and the byte range its tensors promise are checked
    against the file's size, so a truncated or overwritten file is caught without loading it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path} is truncated ({size} bytes, shorter than a safetensors header)"
        length = int.from_bytes(head, "little")
        if length > size - 8:
            return f"{path} is truncated or corrupt (a header of {length} bytes in a file of {size})"
        try:
            header = json.loads(f.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            return f"{path} is corrupt (unreadable safetensors header: {err})"
    if 8 + length + end != size:
        return f"{path} is truncated or corrupt (its header promises {8 + length + end} bytes, the file has {size})"
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """None when every file of a checkpoint folder reads (JSON parses, safetensors whole), else
    what is wrong, naming the file."""
    if not (folder / "trainer_state.json").exists():
        return f"{folder} is missing or incomplete (no trainer_state.json)"
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError) as err:
                return f"{path} is not valid JSON ({err})"
        elif path.suffix == ".safetensors" and (problem := safetensors_problem(path)):
            return problem
    return None


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest readable checkpoint folder under ``root``: the one ``latest.json`` names, or —
    when that one (or the pointer itself) is truncated or corrupt — the newest earlier one that
    reads, with a warning naming the broken file. None when there is no checkpoint yet; a
    ValueError naming the problem when no checkpoint reads."""
    root = Path(root)
    pointer = root / LATEST
    if not pointer.exists():
        return None
    try:
        named = root / read_json(pointer)["dir"]
        first_problem = None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        named, first_problem = None, f"{pointer} is unreadable ({err})"
    candidates = [folder for _, folder in reversed(list_checkpoints(root))]
    if named is not None:
        newer_or_same = {f for f in candidates if f.name >= named.name}  # step_%07d names sort like steps
        candidates = [named] + [f for f in candidates if f not in newer_or_same]
    for folder in candidates:
        problem = checkpoint_problem(folder)
        if problem is None:
            if first_problem is not None:
                warnings.warn(f"checkpoint unreadable: {first_problem}; falling back to the previous checkpoint "
                              f"{folder}", RuntimeWarning, stacklevel=2)
            return folder
        first_problem = first_problem or problem
    raise ValueError(f"no readable checkpoint under {root}: {first_problem}. Delete {root.parent if root.name == 'checkpoints' else root} "
                     "to train from scratch, or restore the file")


def load_checkpoint(
    folder: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: nn.Module | None = None,
    modules: dict[str, nn.Module] | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> dict:
    """Load every part that is given (strictly) and return ``trainer_state.json``; ``modules`` and
    ``optimizers`` are read from the files named after their keys."""
    folder = Path(folder)
    device = next(model.parameters()).device
    model.load_state_dict(load_tensors(folder / "model.safetensors", device=device))
    if ema is not None:
        if not (folder / "ema.safetensors").exists():
            raise FileNotFoundError(f"{folder} has no ema.safetensors (trained with ema_decay=0?) but EMA is enabled")
        ema.load_state_dict(load_tensors(folder / "ema.safetensors", device=device))
    if optimizer is not None:
        _load_optimizer(folder, "optimizer", optimizer)
    for name, module in (modules or {}).items():
        if not (folder / f"{name}.safetensors").exists():
            raise FileNotFoundError(f"{folder} has no {name}.safetensors, but this run trains a {name}: "
                                    f"resume it with the settings it was started with, or use a new output folder")
        module.load_state_dict(load_tensors(folder / f"{name}.safetensors", device=next(module.parameters()).device))
    for name, extra_optimizer in (optimizers or {}).items():
        _load_optimizer(folder, name, extra_optimizer)
    return read_json(folder / "trainer_state.json")


def load_model_weights(module: nn.Module, ckpt: str | os.PathLike, *, ema: bool = True) -> nn.Module:
    """Load weights for evaluation into ``module`` (in place; also returned).

    ckpt: a checkpoint folder (``.../step_0001000``), a checkpoints root holding ``latest.json``,
    or a run's ``out_dir`` (its ``checkpoints/latest.json`` is followed).
    ema: take the EMA weights when the checkpoint has them (falls back to the training weights).
    """
    ckpt = Path(ckpt)
    if (ckpt / "checkpoints" / LATEST).exists():
        ckpt = ckpt / "checkpoints"
    if (ckpt / LATEST).exists():
        ckpt = latest_checkpoint(ckpt)
    path = ckpt / ("ema.safetensors" if ema and (ckpt / "ema.safetensors").exists() else "model.safetensors")
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}; expected a checkpoint folder, a checkpoints root or a run folder")
    params = list(module.parameters())
    module.load_state_dict(load_tensors(path, device=params[0].device if params else "cpu"))
    return module
