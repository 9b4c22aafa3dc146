"""The bidirectional transformer every non-autoregressive prior uses as its network.

One token per latent position: ``x: (B, N, in_dim)`` -> ``(B, N, out_dim)``. The network knows
nothing about noise or masking; the prior decides what goes in (bits as ±1, token embeddings,
...) and what the outputs mean (logits of bits, of codebook indices, ...).

Built on x-transformers (``ContinuousTransformerWrapper`` + ``Encoder``). Conditioning on the
time ``t`` and the class label enters either through adaptive layer norm (DiT's adaLN-zero,
https://arxiv.org/abs/2212.09748: norm scales and residual-branch gates predicted from the
condition, gates starting near closed) or as extra prefix tokens that every position attends to.
"""

from __future__ import annotations

import contextlib
import math

import torch
from einops import rearrange, repeat
from torch import nn
from x_transformers import ContinuousTransformerWrapper, Encoder
from x_transformers.attend import Attend

CONDS = ("adaln", "token")
POS_EMBS = ("learned", "sincos")


@contextlib.contextmanager
def plain_attention(module: nn.Module):
    """Inside the block, every x-transformers attention in ``module`` runs the plain einsum path
    (scores materialised, softmax, weighted sum) instead of PyTorch's fused
    ``scaled_dot_product_attention``: the reference the fused path is tested against. Both
    compute the same function; results differ by float rounding only (~1e-6)."""
    attends = [m for m in module.modules() if isinstance(m, Attend)]
    flags = [m.flash for m in attends]
    for m in attends:
        m.flash = False
    try:
        yield module
    finally:
        for m, flag in zip(attends, flags):
            m.flash = flag


class CPUFloatAttend(Attend):
    """x-transformers' attention whose fused path runs in fp32 when its inputs on a CPU are bf16
    or fp16 (under autocast): PyTorch's CPU flash-attention kernels are far slower in bf16 than
    in fp32 -- on this project's AVX512-BF16 machine (cpu-preset Bernoulli step, batch 128) the
    backward 69 ms against 9.9 ms and the forward 6.9 ms against 1.7 ms per call -- while the bf16
    matmuls around it are 4.5x faster than fp32. Elsewhere (CUDA, fp32 inputs) it is Attend."""

    def flash_attn(self, q, k, v, *args, **kwargs):
        if q.device.type != "cpu" or q.dtype not in (torch.bfloat16, torch.float16):
            return super().flash_attn(q, k, v, *args, **kwargs)
        with torch.autocast("cpu", enabled=False):
            out, intermediates = super().flash_attn(q.float(), k.float(), v.float(), *args, **kwargs)
        return out.to(q.dtype), intermediates


def use_cpu_float_attention(module: nn.Module) -> nn.Module:
    """Make every x-transformers :class:`Attend` in ``module`` a :class:`CPUFloatAttend` (same
    state, no parameters: only the method that runs the fused kernel changes); returns module."""
    for m in module.modules():
        if type(m) is Attend:
            m.__class__ = CPUFloatAttend
    return module


def sinusoidal_embedding(values: torch.Tensor, dim: int, *, max_period: float = 10_000.0) -> torch.Tensor:
    """values: (...,) float -> (..., dim) [sin | cos] features at geometrically spaced frequencies."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding needs an even dim, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device) / half)
    angles = values.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2-D position code (MAE/ViT style): half the channels encode the row, half the
    column. Returns (h*w, dim) in raster order."""
    if dim % 4:
        raise ValueError(f"2-D sincos positions need dim divisible by 4, got {dim}")
    h, w = grid
    rows = sinusoidal_embedding(torch.arange(h, dtype=torch.float32), dim // 2, max_period=100.0)
    cols = sinusoidal_embedding(torch.arange(w, dtype=torch.float32), dim // 2, max_period=100.0)
    rows = repeat(rows, "h d -> (h w) d", w=w)
    cols = repeat(cols, "w d -> (h w) d", h=h)
    return torch.cat([rows, cols], dim=-1)


class Denoiser(nn.Module):
    """Bidirectional transformer over the N = h*w latent positions.

    x:      (B, N, in_dim) float  — one token per position (the caller chooses the encoding).
    t:      (B,) float in [0, 1]  — required iff ``time_cond``; else must be None.
    labels: (B,) long in [0, num_classes]; ``num_classes`` is the null class (classifier-free
            guidance); None means all-null.
    returns (B, N, out_dim).

    ``cond="adaln"``: time + class embeddings are summed into one condition vector that scales
    every layer norm and gates every residual branch (adaLN-zero). Those projections are
    zero-initialised, so at initialisation the output does not depend on t or the label; it
    does as soon as they are trained. ``cond="token"``: the time and class embeddings are two
    extra tokens prepended to the sequence (dropped from the output).
    ``zero_init_head``: start the output head at zero (all logits 0, i.e. uniform predictions);
    off by default.
    ``fused_attention``: attention by PyTorch's ``scaled_dot_product_attention`` (x-transformers'
    ``attn_flash``; fused kernels on CPU and CUDA, no (B, heads, N, N) score tensors kept per
    layer); False runs the plain einsum path. No parameters depend on it, so it is not part of
    the config (weights load either way); :func:`plain_attention` switches it off temporarily.
    """

    def __init__(
        self,
        *,
        grid: tuple[int, int],
        in_dim: int,
        out_dim: int,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        num_classes: int | None = None,
        cond: str = "adaln",
        pos_emb: str = "learned",
        time_cond: bool = True,
        zero_init_head: bool = False,
        fused_attention: bool = True,
    ):
        super().__init__()
        assert cond in CONDS, f"unknown cond {cond!r}, expected one of {CONDS}"
        assert pos_emb in POS_EMBS, f"unknown pos_emb {pos_emb!r}, expected one of {POS_EMBS}"
        grid = tuple(int(g) for g in grid)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid: expected (h, w) with h, w >= 1, got {grid}")
        if min(in_dim, out_dim, dim, depth, heads) < 1:
            raise ValueError(f"in_dim, out_dim, dim, depth, heads must be >= 1, got {in_dim}, {out_dim}, {dim}, {depth}, {heads}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if dim % 4:
            raise ValueError(f"dim must be divisible by 4 (sinusoidal embeddings), got {dim}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
        self.config = dict(
            grid=list(grid), in_dim=in_dim, out_dim=out_dim, dim=dim, depth=depth, heads=heads,
            num_classes=num_classes, cond=cond, pos_emb=pos_emb, time_cond=time_cond, zero_init_head=zero_init_head,
        )
        self.grid, self.num_positions = grid, grid[0] * grid[1]
        self.in_dim, self.out_dim, self.dim = in_dim, out_dim, dim
        self.num_classes, self.cond, self.time_cond = num_classes, cond, time_cond

        if pos_emb == "learned":
            self.pos_emb = nn.Parameter(torch.randn(self.num_positions, dim) * 0.02)
        else:
            # not persistent: a pure function of the config, no need to store it with the weights
            self.register_buffer("pos_emb", sincos_2d(grid, dim), persistent=False)

        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if time_cond else None
        self.class_emb = nn.Embedding(num_classes + 1, dim) if num_classes is not None else None
        has_condition = time_cond or num_classes is not None
        adaln = cond == "adaln" and has_condition

        head = nn.Linear(dim, out_dim)
        if zero_init_head:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        layers = Encoder(
            dim=dim, depth=depth, heads=heads, attn_dim_head=dim // heads, attn_flash=bool(fused_attention),
            **(dict(use_adaptive_layernorm=True, use_adaptive_layerscale=True, dim_condition=dim) if adaln else {}),
        )
        # positions are added here (2-D aware), so the wrapper's 1-D absolute embedding is off
        self.net = use_cpu_float_attention(ContinuousTransformerWrapper(
            max_seq_len=0, attn_layers=layers, project_in=nn.Linear(in_dim, dim), project_out=head, use_abs_pos_emb=False
        ))
        self.adaln = adaln
        # the range check of the labels reads them back (a host-device sync per forward); a
        # prior that checks its labels once per call switches it off for its own network
        self.check_label_range = True

    def condition(self, t: torch.Tensor | None, labels: torch.Tensor | None, batch: int, device,
                  validate_labels: bool = True) -> list[torch.Tensor]:
        """The conditioning embeddings, each (B, dim): time (if time_cond), class (if num_classes)."""
        embs = []
        if self.time_cond:
            if t is None:
                raise ValueError("t is required: this Denoiser was built with time_cond=True")
            t = torch.as_tensor(t, dtype=torch.float32, device=device)
            if t.dim() == 0:
                t = t.expand(batch)
            if t.shape != (batch,):
                raise ValueError(f"t: expected shape ({batch},), got {tuple(t.shape)}")
            # scale [0, 1] to [0, 1000] so the sinusoid frequencies resolve individual steps
            embs.append(self.time_mlp(sinusoidal_embedding(t * 1000.0, self.dim)))
        elif t is not None:
            raise ValueError("t given to a Denoiser built with time_cond=False; pass t=None")
        if self.num_classes is not None:
            if labels is None:
                labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
            if labels.shape != (batch,) or labels.dtype.is_floating_point:
                raise ValueError(f"labels: expected integer tensor of shape ({batch},), got {tuple(labels.shape)} {labels.dtype}")
            if validate_labels and labels.numel():
                low, high = torch.stack(torch.aminmax(labels.reshape(-1))).tolist()  # one host-device sync
                if low < 0 or high > self.num_classes:
                    raise ValueError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = null class), got [{low}, {high}]")
            embs.append(self.class_emb(labels))
        elif labels is not None:
            raise ValueError("labels given to a Denoiser built with num_classes=None")
        return embs

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1:] != (self.num_positions, self.in_dim):
            raise ValueError(f"x: expected shape (B, {self.num_positions}, {self.in_dim}), got {tuple(x.shape)}")
        batch = x.shape[0]
        embs = self.condition(t, labels, batch, x.device, self.check_label_range)
        pos = repeat(self.pos_emb, "n d -> b n d", b=batch)
        kwargs = {}
        if self.adaln:
            kwargs["condition"] = torch.stack(embs).sum(0)
        elif embs:
            kwargs["prepend_embeds"] = rearrange(torch.stack(embs), "k b d -> b k d")
        out = self.net(x, sum_embeds=pos, **kwargs)
        return out[:, out.shape[1] - self.num_positions :]
