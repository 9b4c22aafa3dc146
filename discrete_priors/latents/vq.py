"""Vector-quantised latent space (VQ-VAE, van den Oord et al. 2017, https://arxiv.org/abs/1711.00937)
with EMA codebook updates (appendix of the same paper; Razavi et al. 2019,
https://arxiv.org/abs/1906.00446) and dead-code restarts (Dhariwal et al. 2020 "Jukebox",
https://arxiv.org/abs/2005.00341).

Each encoder vector z_e is replaced by its nearest codebook vector e_k (squared Euclidean distance,
or cosine when ``cosine=True``); the straight-through estimator z_q = z_e + sg(e_k - z_e) passes
the decoder's gradient to the encoder unchanged.

DDP: the EMA statistics (assignment counts and sums) are all-reduced across processes when
``torch.distributed`` is initialised, and dead-code restarts are drawn on rank 0 and broadcast,
so every replica keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace


def codebook_perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of the empirical code histogram of ``indices`` (any shape, long):
    ``codebook_size`` when all codes are used equally, 1 when a single code is used."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    freq = counts / counts.sum().clamp_min(1)
    return torch.exp(-torch.special.xlogy(freq, freq).sum())


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VQLatent(LatentSpace):
    """Nearest-neighbour vector quantisation with a K x dim codebook.

    codebook_size:  K.
    dim:            vector size (encoder output channels = decoder input channels).
    beta:           commitment weight: beta * ||z_e - sg(e)||^2.
    ema:            update the codebook as an exponential moving average of the encoder vectors
                    assigned to each code (no gradient to the codebook); otherwise the codebook
                    is a parameter trained with the codebook loss ||sg(z_e) - e||^2.
    decay:          EMA decay; ``eps``: Laplace smoothing of the EMA counts.
    restart_dead:   in training, replace codes whose EMA assignment count is below
                    ``dead_threshold`` by random encoder vectors of the current batch.
    cosine:         l2-normalise encoder vectors and codes before matching (off by default).
    usage_window:   ``stats["usage"]`` = fraction of codes assigned at least once in the last
                    ``usage_window`` training forwards.
    """

    kind = "categorical"

    def __init__(self, *, codebook_size: int = 512, dim: int = 8, beta: float = 0.25, ema: bool = True,
                 decay: float = 0.99, eps: float = 1e-5, restart_dead: bool = True, dead_threshold: float = 0.5,
                 cosine: bool = False, usage_window: int = 100):
        super().__init__()
        if codebook_size < 2 or dim < 1:
            raise ValueError(f"expected codebook_size >= 2 and dim >= 1, got {codebook_size} and {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.codebook_size, self.dim = codebook_size, dim
        self.beta, self.ema, self.decay, self.eps = beta, ema, decay, eps
        self.restart_dead, self.dead_threshold, self.cosine = restart_dead, dead_threshold, cosine
        self.usage_window = usage_window
        self.encoder_channels = self.decoder_channels = dim
        codebook = torch.randn(codebook_size, dim)
        if cosine:
            codebook = F.normalize(codebook, dim=-1)
        if ema:
            self.register_buffer("codebook", codebook)
        else:
            self.codebook = nn.Parameter(codebook)
        # Counts start at one and sums at the codebook, so an unassigned code stays where it is
        # (starting at zero would send it to sum / eps on the first update).
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", codebook.clone())
        self.register_buffer("last_used", torch.full((codebook_size,), -1, dtype=torch.long))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        return CodeSpec(kind="categorical", grid=grid, channels=1, vocab_size=self.codebook_size)

    def _codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1) if self.cosine else self.codebook

    def _flatten(self, h: torch.Tensor) -> torch.Tensor:
        if h.dim() != 4 or h.shape[1] != self.dim:
            raise ValueError(f"expected encoder output of shape (B, {self.dim}, h, w), got {tuple(h.shape)}")
        flat = rearrange(h, "b d h w -> (b h w) d")
        return F.normalize(flat, dim=-1) if self.cosine else flat

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """flat: (M, dim) -> (M,) index of the nearest code (squared Euclidean distance)."""
        codes = self._codes().to(flat.dtype)
        distance = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ codes.t() + codes.pow(2).sum(-1)
        return distance.argmin(dim=-1)

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, dim, h, w) -> decoder input (B, dim, h, w), codes (B, N) long."""
        b, _, height, width = h.shape
        flat = self._flatten(h)
        index = self.nearest(flat.detach())
        quantised = self._codes()[index].to(flat.dtype)
        commitment = F.mse_loss(flat, quantised.detach())
        loss = self.beta * commitment
        if not self.ema:
            loss = loss + F.mse_loss(quantised, flat.detach())
        if self.training:
            self._update(flat.detach().float(), index, generator)
        straight_through = flat + (quantised - flat).detach()
        decoder_input = rearrange(straight_through, "(b h w) d -> b d h w", b=b, h=height, w=width)
        codes = rearrange(index, "(b n) -> b n", b=b)
        stats = {
            # 0-d tensors (no host-device sync per step); the fraction of codes used in the batch
            # from a bincount rather than unique(), whose size the host would have to read
            "perplexity": codebook_perplexity(index, self.codebook_size).detach(),
            "batch_usage": (torch.bincount(index, minlength=self.codebook_size) > 0).float().mean(),
            "usage": self.usage(),
            "commitment": commitment.detach(),
        }
        return LatentOutput(decoder_input, codes, loss, stats)

    def usage(self) -> float:
        """Fraction of codes assigned at least once in the last ``usage_window`` training forwards."""
        recent = (self.last_used >= 0) & (self.last_used > self.num_updates - self.usage_window)
        return recent.float().mean().item()

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, index: torch.Tensor, generator: torch.Generator | None) -> None:
        one_hot = F.one_hot(index, self.codebook_size).to(flat.dtype)
        counts = one_hot.sum(0)
        sums = one_hot.t() @ flat
        if _distributed():
            dist.all_reduce(counts)
            if self.ema:
                dist.all_reduce(sums)
        self.num_updates += 1
        self.last_used[counts > 0] = self.num_updates
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.ema_count.sum()
            # Laplace smoothing keeps every count positive without changing their total.
            smoothed = (self.ema_count + self.eps) / (total + self.codebook_size * self.eps) * total
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(-1))
        if self.restart_dead:
            self._restart(flat, generator)

    @torch.no_grad()
    def _restart(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        dead = self.ema_count < self.dead_threshold
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        pick = torch.randint(len(flat), (num_dead,), generator=generator, device=generator.device if generator else "cpu")
        fresh = flat[pick.to(flat.device)]
        codebook = self.codebook.data if isinstance(self.codebook, nn.Parameter) else self.codebook
        codebook[dead] = fresh.to(codebook.dtype)
        # Twice the threshold: a restarted code survives ~log(2)/(1-decay) updates unassigned before
        # it counts as dead again.
        self.ema_count[dead] = self.dead_threshold * 2
        self.ema_sum[dead] = fresh * self.dead_threshold * 2
        if _distributed():
            for tensor in (codebook, self.ema_count, self.ema_sum):
                dist.broadcast(tensor, src=0)

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """h: (B, dim, h, w) -> (B, N) long indices of the nearest codes (only ``deterministic``)."""
        if mode != "deterministic":
            raise ValueError(f"VQ codes are deterministic: expected mode 'deterministic', got {mode!r}")
        index = self.nearest(self._flatten(h.float()))
        return rearrange(index, "(b n) -> b n", b=h.shape[0])

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes: (B, N) long -> (B, dim, h, w) codebook vectors."""
        if codes.dim() != 2 or codes.shape[1] != grid[0] * grid[1] or codes.dtype.is_floating_point:
            raise ValueError(f"expected integer VQ codes of shape (B, {grid[0] * grid[1]}), got {tuple(codes.shape)} {codes.dtype}")
        vectors = self._codes()[codes]
        return rearrange(vectors, "b (h w) d -> b d h w", h=grid[0], w=grid[1])


__all__ = ["VQLatent", "codebook_perplexity"]
