"""Latent spaces: binary straight-through codes, VQ nearest-neighbour/EMA/restarts, continuous KL."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from discrete_priors.latents import (
    BinaryLatent,
    ContinuousLatent,
    VQLatent,
    bit_statistics,
    build_latent,
    codebook_perplexity,
)
from tests import gen


# -- binary -----------------------------------------------------------------------------------


def test_binary_codes_are_exactly_zero_or_one():
    latent = BinaryLatent(bits=8)
    h = torch.randn(4, 8, 3, 3, generator=gen())
    for training in (True, False):
        latent.train(training)
        codes = latent(h, generator=gen()).codes
        assert codes.shape == (4, 9, 8)
        assert set(torch.unique(codes).tolist()) == {0.0, 1.0}
    for mode in ("deterministic", "sample"):
        codes = latent.encode(h, mode=mode, generator=gen())
        assert set(torch.unique(codes).tolist()) == {0.0, 1.0}
        latent.code_spec((3, 3)).check(codes)


def test_binary_straight_through_gradient_equals_gradient_wrt_probability():
    # One position, 2 bits, decoder input d = w1 z1 + w2 z2 (1x1 conv, no bias), loss (d - t)^2.
    # Straight-through: dL/dy_j = dL/dz_j evaluated at the sampled code = 2 (d - t) w_j, and
    # dL/dlogit_j = dL/dy_j * y_j (1 - y_j).
    latent = BinaryLatent(bits=2, embed_dim=1)
    with torch.no_grad():
        latent.embed.weight.copy_(torch.tensor([0.5, -2.0]).view(1, 2, 1, 1))
    logits = torch.tensor([0.3, -1.2]).view(1, 2, 1, 1).requires_grad_(True)
    out = latent(logits, generator=gen(3))
    target = 0.7
    loss = (out.decoder_input.sum() - target) ** 2
    loss.backward()
    z = out.codes.view(2)
    d = 0.5 * z[0] - 2.0 * z[1]
    y = torch.sigmoid(logits.detach().view(2))
    dl_dy = 2 * (d - target) * torch.tensor([0.5, -2.0])
    expected = dl_dy * y * (1 - y)
    assert torch.allclose(logits.grad.view(2), expected, atol=1e-6)
    assert (logits.grad.abs() > 1e-3).all()
    assert torch.allclose(out.decoder_input.sum(), d)  # forward value uses the hard code


def test_binary_decoder_map_has_no_bias():
    latent = BinaryLatent(bits=4, embed_dim=6)
    assert latent.embed.bias is None
    zero = latent.decode_codes(torch.zeros(2, 4, 4), (2, 2))
    assert torch.equal(zero, torch.zeros(2, 6, 2, 2))


def test_binary_deterministic_encode_is_threshold_of_sigmoid():
    latent = BinaryLatent(bits=16).eval()
    h = torch.randn(8, 16, 4, 4, generator=gen(1)) * 3
    expected = (torch.sigmoid(h) > 0.5).float().permute(0, 2, 3, 1).reshape(8, 16, 16)
    assert torch.equal(latent.encode(h, mode="deterministic"), expected)
    assert torch.equal(latent(h).codes, expected)  # eval forward uses the deterministic code
    probs = latent.encode(h, mode="probs")
    assert torch.allclose(probs, torch.sigmoid(h).permute(0, 2, 3, 1).reshape(8, 16, 16))
    assert ((probs > 0) & (probs < 1)).all()
    # decode_codes reproduces the eval forward's decoder input
    assert torch.allclose(latent.decode_codes(expected, (4, 4)), latent(h).decoder_input, atol=1e-6)


def test_binary_sample_frequencies_match_probabilities():
    probs = torch.tensor([0.1, 0.3, 0.5, 0.9])
    h = torch.logit(probs).view(1, 4, 1, 1).expand(20_000, 4, 1, 1)
    codes = BinaryLatent(bits=4).encode(h, mode="sample", generator=gen(7))
    freq = codes.mean(dim=(0, 1))
    # standard error <= sqrt(0.25 / 20000) = 0.0035; 0.015 is > 4 standard errors
    assert (freq - probs).abs().max() < 0.015


def test_bit_statistics_on_known_codes():
    codes = torch.zeros(4, 2, 3)
    codes[:2, :, 0] = 1  # channel 0 on half the time: 1 bit; channels 1, 2 constant: dead
    codes[:, :, 1] = 1
    stats = bit_statistics(codes)
    assert float(stats["bit_entropy"]) == pytest.approx(1 / 3)
    assert float(stats["dead_bits"]) == pytest.approx(2 / 3)


def test_binary_entropy_regulariser_is_zero_at_balanced_usage():
    latent = BinaryLatent(bits=2, entropy_weight=0.1)
    balanced = torch.zeros(4, 2, 2, 2)
    assert latent(balanced, generator=gen()).loss.item() == pytest.approx(0.0, abs=1e-7)
    skewed = torch.full((4, 2, 2, 2), math.log(9.0))  # every probability 0.9
    h_09 = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    assert latent(skewed, generator=gen()).loss.item() == pytest.approx(0.1 * (1 - h_09), rel=1e-5)
    assert BinaryLatent(bits=2)(skewed, generator=gen()).loss.item() == 0.0  # off by default


def test_binary_rejects_unknown_options():
    with pytest.raises(AssertionError, match="eval_code"):
        BinaryLatent(bits=4, eval_code="mean")
    with pytest.raises(AssertionError, match="mode"):
        BinaryLatent(bits=4).encode(torch.zeros(1, 4, 1, 1), mode="soft")
    with pytest.raises(ValueError, match="expected encoder output"):
        BinaryLatent(bits=4)(torch.zeros(1, 3, 1, 1))


# -- VQ -----------------------------------------------------------------------------------------


def test_vq_output_is_the_nearest_codebook_vector_by_brute_force():
    latent = VQLatent(codebook_size=32, dim=5).eval()
    h = torch.randn(3, 5, 4, 4, generator=gen(2))
    out = latent(h)
    flat = h.permute(0, 2, 3, 1).reshape(-1, 5)
    for i, vector in enumerate(flat):
        distances = [float(((vector - code) ** 2).sum()) for code in latent.codebook]
        best = min(range(32), key=lambda k: distances[k])
        assert out.codes.view(-1)[i] == best
        assert torch.allclose(out.decoder_input.permute(0, 2, 3, 1).reshape(-1, 5)[i], latent.codebook[best], atol=1e-6)
    assert torch.equal(latent.encode(h), out.codes)
    assert torch.allclose(latent.decode_codes(out.codes, (4, 4)), out.decoder_input, atol=1e-6)


def test_vq_cosine_matches_by_angle_and_outputs_unit_vectors():
    latent = VQLatent(codebook_size=16, dim=3, cosine=True).eval()
    h = torch.randn(2, 3, 3, 3, generator=gen(3)) * 5
    out = latent(h)
    flat = torch.nn.functional.normalize(h.permute(0, 2, 3, 1).reshape(-1, 3), dim=-1)
    codes = torch.nn.functional.normalize(latent.codebook, dim=-1)
    assert torch.equal(out.codes.view(-1), (flat @ codes.t()).argmax(-1))
    assert torch.allclose(out.decoder_input.norm(dim=1), torch.ones(2, 3, 3), atol=1e-5)


def test_vq_straight_through_passes_gradient_unchanged():
    latent = VQLatent(codebook_size=8, dim=3, beta=0.0)
    h = torch.randn(2, 3, 2, 2, generator=gen(4), requires_grad=True)
    weight = torch.randn(2, 3, 2, 2, generator=gen(5))
    (latent(h).decoder_input * weight).sum().backward()
    assert torch.allclose(h.grad, weight)


def test_vq_ema_moves_codes_to_assigned_means_exactly():
    decay, eps = 0.9, 1e-5
    latent = VQLatent(codebook_size=3, dim=2, decay=decay, eps=eps, restart_dead=False)
    codebook = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    latent.codebook.copy_(codebook)
    latent.ema_sum.copy_(codebook)
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 1.0]])  # -> codes 0, 0, 1; code 2 unused
    latent(points.view(1, 3, 2).permute(0, 2, 1).unsqueeze(-1))  # (1, 2, 3, 1)
    counts = torch.tensor([2.0, 1.0, 0.0])
    sums = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 0.0]])
    ema_count = decay * 1 + (1 - decay) * counts
    ema_sum = decay * codebook + (1 - decay) * sums
    total = ema_count.sum()
    smoothed = (ema_count + eps) / (total + 3 * eps) * total
    expected = ema_sum / smoothed[:, None]
    assert torch.allclose(latent.codebook, expected, atol=1e-6)
    # each used code moved towards the mean of its assigned points
    means = sums[:2] / counts[:2, None]
    assert ((latent.codebook[:2] - means).norm(dim=1) < (codebook[:2] - means).norm(dim=1)).all()


def test_vq_dead_codes_are_revived_by_restarts():
    def usage_after_training(restart):
        torch.manual_seed(0)
        latent = VQLatent(codebook_size=64, dim=4, decay=0.8, dead_threshold=0.5, restart_dead=restart)
        latent.codebook.mul_(0).add_(100.0)  # all codes far from the data ...
        latent.codebook[0] = 0.0  # ... except one, which takes every vector
        latent.ema_sum.copy_(latent.codebook)
        data = torch.randn(4, 4, 8, 8, generator=gen(6))  # 256 vectors
        g = gen(8)
        for _ in range(10):
            latent(data, generator=g)
        return latent.encode(data).unique().numel() / 64, latent.usage()

    revived, window_usage = usage_after_training(True)
    dead, _ = usage_after_training(False)
    assert dead == 1 / 64
    assert revived >= 0.75  # restarted codes are batch vectors, so nearly all of them win their own vector
    assert window_usage >= 0.75


def test_vq_perplexity_is_exp_entropy_of_usage():
    indices = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])  # frequencies 1/4, 1/4, 1/2, 0
    entropy = -(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))
    assert codebook_perplexity(indices, 4).item() == pytest.approx(math.exp(entropy), rel=1e-6)
    assert codebook_perplexity(torch.arange(16), 16).item() == pytest.approx(16, rel=1e-6)
    assert codebook_perplexity(torch.zeros(10, dtype=torch.long), 16).item() == pytest.approx(1.0)


def test_vq_without_ema_trains_codebook_with_codebook_loss():
    latent = VQLatent(codebook_size=8, dim=3, ema=False, beta=0.25, restart_dead=False)
    h = torch.randn(2, 3, 2, 2, generator=gen(9))
    out = latent(h)
    quantised = out.decoder_input.detach()
    mse = ((h - quantised) ** 2).mean()
    assert out.loss.item() == pytest.approx(1.25 * mse.item(), rel=1e-5)
    out.loss.backward()
    assert latent.codebook.grad is not None and latent.codebook.grad.abs().sum() > 0


def test_vq_eval_does_not_update_codebook_and_rejects_sample_mode():
    latent = VQLatent(codebook_size=8, dim=3).eval()
    before = latent.codebook.clone()
    latent(torch.randn(2, 3, 2, 2))
    assert torch.equal(before, latent.codebook)
    with pytest.raises(ValueError, match="deterministic"):
        latent.encode(torch.randn(1, 3, 1, 1), mode="sample")


# -- continuous ---------------------------------------------------------------------------------


def test_kl_term_matches_closed_form():
    latent = ContinuousLatent(dim=2, kl_weight=0.5)
    mean = torch.tensor([1.0, 0.0, -0.5, 2.0]).view(1, 2, 2, 1)
    logvar = torch.tensor([0.0, math.log(2.0), -1.0, 0.3]).view(1, 2, 2, 1)
    out = latent(torch.cat([mean, logvar], dim=1), generator=gen())
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean()
    assert out.loss.item() == pytest.approx(0.5 * expected.item(), rel=1e-6)
    # hand values: N(1, 1) -> 1/2; N(0, 2) -> (2 - 1 - ln 2) / 2
    hand = ContinuousLatent(dim=1, kl_weight=1.0)
    one = hand(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)).stats["kl"]
    two = hand(torch.tensor([0.0, math.log(2.0)]).view(1, 2, 1, 1)).stats["kl"]
    assert float(one) == pytest.approx(0.5) and float(two) == pytest.approx(0.5 * (1 - math.log(2)))


def test_continuous_samples_in_training_and_uses_mean_in_eval():
    latent = ContinuousLatent(dim=1, kl_weight=1e-3)
    h = torch.cat([torch.full((1, 1, 100, 100), 2.0), torch.full((1, 1, 100, 100), math.log(0.25))], dim=1)
    z = latent(h, generator=gen(1)).decoder_input
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)  # 10,000 draws, std 0.5: se 0.005
    assert z.std().item() == pytest.approx(0.5, abs=0.02)
    latent.eval()
    assert torch.equal(latent(h).decoder_input, torch.full((1, 1, 100, 100), 2.0))
    assert torch.equal(latent.encode(h)[0, :, 0], torch.full((10_000,), 2.0))


def test_plain_continuous_is_identity_without_loss():
    latent = ContinuousLatent(dim=3)
    assert latent.encoder_channels == 3
    h = torch.randn(2, 3, 2, 2)
    out = latent(h)
    assert torch.equal(out.decoder_input, h) and out.loss.item() == 0.0
    assert torch.equal(latent.decode_codes(out.codes, (2, 2)), h)


def test_build_latent_factory_and_code_specs():
    assert build_latent("binary", bits=4).code_spec((2, 3)).shape == (6, 4)
    spec = build_latent("vq", codebook_size=16, dim=2).code_spec((2, 2))
    assert spec.kind == "categorical" and spec.vocab_size == 16 and spec.shape == (4,)
    assert build_latent("continuous", dim=5).code_spec((1, 1)).kind == "continuous"
    with pytest.raises(ValueError, match="unknown latent space"):
        build_latent("gumbel")


def _ddp_vq_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same initial codebook on every rank (DDP broadcasts it in practice)
    latent = VQLatent(codebook_size=32, dim=4, decay=0.8)
    g = gen(100 + rank)  # different data and restart draws on each rank
    for _ in range(10):
        latent(torch.randn(2, 4, 4, 4, generator=g) + rank, generator=g)
    torch.save(latent.codebook.clone(), f"{out_dir}/codebook{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow  # spawns two processes (imports torch twice)
def test_vq_ema_and_restarts_keep_replicas_identical_under_distributed(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_vq_worker, args=(2, port, str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"codebook{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(first, second)
