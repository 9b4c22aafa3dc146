"""The causal (decoder-only) transformer the autoregressive prior uses as its network.

Sequence layout for N latent positions in raster order::

    input   [start_c, tok_0, tok_1, ..., tok_{N-2}]
    output  [  ℓ_0,    ℓ_1,   ℓ_2,  ...,   ℓ_{N-1}]      ℓ_i = logits of token i given tokens < i

``start_c`` is a learned embedding per class (index ``num_starts - 1`` is the null class used
for classifier-free guidance), so class conditioning costs no extra token. Position i of the
sequence carries the position embedding of the token it predicts.

Built on x-transformers (``ContinuousTransformerWrapper`` + ``Decoder``), whose key/value cache
makes sampling O(N) network evaluations of one token each (:meth:`CausalTransformer.step`).
The network knows nothing about bits or codebooks: the prior chooses the inputs (±1 bits,
token indices) and what the outputs mean.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from x_transformers import ContinuousTransformerWrapper, Decoder

from discrete_priors.nets.denoiser import sincos_2d, use_cpu_float_attention

POS_EMBS = ("learned", "sincos")


class CausalStep(NamedTuple):
    """logits: (B, out_dim) for the next token; cache: x-transformers' key/value cache to pass
    to the next :meth:`CausalTransformer.step`."""

    logits: torch.Tensor
    cache: object


class CausalTransformer(nn.Module):
    """Decoder-only transformer over N positions with a start token.

    Inputs after the start token are either token indices (``vocab_size`` given: an embedding
    table) or float vectors of size ``in_dim`` (a linear projection, e.g. ±1 bits).

    grid:       (h, w) layout of the N positions (for the 2-D ``sincos`` position code).
    out_dim:    logits per position (K for a categorical, c for c factorised bits).
    num_starts: number of start embeddings (1 unconditional; num_classes + 1 with a null class).
    fused_attention: PyTorch's fused ``scaled_dot_product_attention`` (default; see
                :class:`~discrete_priors.nets.denoiser.Denoiser`); not part of the config.
    """

    def __init__(
        self,
        *,
        grid: tuple[int, int],
        out_dim: int,
        vocab_size: int | None = None,
        in_dim: int | None = None,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        num_starts: int = 1,
        pos_emb: str = "learned",
        fused_attention: bool = True,
    ):
        super().__init__()
        assert pos_emb in POS_EMBS, f"unknown pos_emb {pos_emb!r}, expected one of {POS_EMBS}"
        grid = tuple(int(g) for g in grid)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid: expected (h, w) with h, w >= 1, got {grid}")
        if (vocab_size is None) == (in_dim is None):
            raise ValueError(f"give exactly one of vocab_size (token inputs) or in_dim (vector inputs), got {vocab_size}, {in_dim}")
        if min(out_dim, dim, depth, heads, num_starts) < 1:
            raise ValueError(f"out_dim, dim, depth, heads, num_starts must be >= 1, got {out_dim}, {dim}, {depth}, {heads}, {num_starts}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.config = dict(
            grid=list(grid), out_dim=out_dim, vocab_size=vocab_size, in_dim=in_dim, dim=dim, depth=depth,
            heads=heads, num_starts=num_starts, pos_emb=pos_emb,
        )
        self.grid, self.num_positions = grid, grid[0] * grid[1]
        self.vocab_size, self.in_dim, self.out_dim, self.num_starts = vocab_size, in_dim, out_dim, num_starts

        self.token_emb = nn.Embedding(vocab_size, dim) if vocab_size is not None else nn.Linear(in_dim, dim)
        self.start_emb = nn.Embedding(num_starts, dim)
        nn.init.normal_(self.start_emb.weight, std=0.02)
        if pos_emb == "learned":
            self.pos_emb = nn.Parameter(torch.randn(self.num_positions, dim) * 0.02)
        else:
            self.register_buffer("pos_emb", sincos_2d(grid, dim), persistent=False)
        # same layer sizes as the Denoiser (attn_dim_head = dim // heads) so priors compare at
        # matched network size; positions are added here, so the wrapper's own are off
        self.net = use_cpu_float_attention(ContinuousTransformerWrapper(
            max_seq_len=0,
            attn_layers=Decoder(dim=dim, depth=depth, heads=heads, attn_dim_head=dim // heads, attn_flash=bool(fused_attention)),
            project_out=nn.Linear(dim, out_dim),
            use_abs_pos_emb=False,
        ))
        assert self.net.can_cache_kv, "x-transformers reports this layer stack cannot use a kv cache"

    def _check_start(self, start: torch.Tensor, batch: int) -> torch.Tensor:
        if start.shape != (batch,) or start.dtype.is_floating_point:
            raise ValueError(f"start: expected integer tensor of shape ({batch},), got {tuple(start.shape)} {start.dtype}")
        if start.numel():
            low, high = torch.stack(torch.aminmax(start.reshape(-1))).tolist()  # one host-device sync
            if low < 0 or high >= self.num_starts:
                raise ValueError(f"start indices must lie in [0, {self.num_starts}), got [{low}, {high}]")
        return start

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if self.vocab_size is not None:
            if tokens.dim() != 2 or tokens.dtype.is_floating_point:
                raise ValueError(f"tokens: expected (B, L) integer indices, got {tuple(tokens.shape)} {tokens.dtype}")
        elif tokens.dim() != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"tokens: expected (B, L, {self.in_dim}) float, got {tuple(tokens.shape)}")

    def embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        """tokens (B, L) long or (B, L, in_dim) that predict positions offset..offset+L-1 -> (B, L, dim)."""
        x = self.token_emb(tokens)
        return x + self.pos_emb[offset : offset + x.shape[1]]

    def forward(self, tokens: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits. tokens: the first L < N tokens, (B, L) long or (B, L, in_dim);
        start: (B,) long start index. Returns (B, L + 1, out_dim): row i predicts token i."""
        self._check_tokens(tokens)
        batch, length = tokens.shape[:2]
        if length >= self.num_positions:
            raise ValueError(f"tokens: at most {self.num_positions - 1} inputs (N - 1), got {length}")
        start = self._check_start(start, batch)
        first = self.start_emb(start)[:, None] + self.pos_emb[:1]
        x = torch.cat([first, self.embed(tokens, 1)], dim=1)
        return self.net(x)

    def step(self, token: torch.Tensor | None, start: torch.Tensor, cache=None, *, check: bool = True) -> CausalStep:
        """One incremental decoding step with the key/value cache.

        First call: ``token=None, cache=None`` -> logits of token 0. Then pass the token just
        chosen, (B,) long or (B, in_dim), and the returned cache -> logits of the next token.
        ``start`` is range-checked on the first call only (a host-device sync; later steps
        reuse the start token held in the cache). ``check=False`` skips the token and position
        checks of later steps (a caller that made the tokens itself, e.g. a sampling loop, so
        that each step is the network pass alone).
        """
        if cache is None:
            if token is not None:
                raise ValueError("the first step takes token=None (the start token comes from `start`)")
            start = self._check_start(start, start.shape[0])
            x = self.start_emb(start)[:, None] + self.pos_emb[:1]
        else:
            position = cache.cache_length
            if check:
                if token is None:
                    raise ValueError("token is required after the first step")
                if position >= self.num_positions:
                    raise ValueError(f"all {self.num_positions} positions are already decoded")
                self._check_tokens(token[:, None])
            x = self.embed(token[:, None], position)
        logits, cache = self.net(x, cache=cache, return_intermediates=True, input_not_include_cache=True)
        return CausalStep(logits[:, -1], cache)


def start_indices(labels: torch.Tensor | None, batch: int, num_classes: int | None, device) -> torch.Tensor:
    """Start-token index per sample: 0 for an unconditional net, else the label with
    ``num_classes`` (the null class) where labels is None."""
    if num_classes is None:
        return torch.zeros(batch, dtype=torch.long, device=device)
    if labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    return labels.to(device=device, dtype=torch.long)

