"""Fused attention (PyTorch scaled_dot_product_attention via x-transformers' ``attn_flash``) is
on by default in every prior's network and computes the plain einsum path's function: outputs
agree within 1e-4 (measured ~1e-6), with and without conditioning, masked inputs, and on the
key/value-cached autoregressive path. It adds no parameters, so saved weights load either way."""

import pytest
import torch
from x_transformers.attend import Attend

from discrete_priors.latents.base import CodeSpec
from discrete_priors.nets.causal import CausalTransformer
from discrete_priors.nets.denoiser import Denoiser, plain_attention
from discrete_priors.priors import build_prior

BITS = CodeSpec(kind="binary", grid=(3, 4), channels=6)
TOKENS = CodeSpec(kind="categorical", grid=(3, 4), channels=1, vocab_size=9)
TOL = dict(rtol=0, atol=1e-4)


def _attends(module):
    return [m for m in module.modules() if isinstance(m, Attend)]


def _randomise(prior):
    """Non-zero gates and heads, so conditioning and attention move the output (adaLN-zero starts closed)."""
    torch.manual_seed(5)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return prior


def _both(prior, fn):
    fused = fn()
    with plain_attention(prior):
        assert not any(m.flash for m in _attends(prior))
        plain = fn()
    assert all(m.flash for m in _attends(prior))  # restored
    return fused, plain


@pytest.mark.parametrize("name,spec,kwargs", [
    ("bernoulli", BITS, dict(cond="token")),
    ("bernoulli", BITS, dict(cond="adaln", num_classes=3)),
    ("bernoulli", BITS, dict(cond="token", num_classes=3, pos_emb="sincos")),
    ("absorbing", BITS, dict()),
    ("absorbing", TOKENS, dict(num_classes=3, time_input=True, cond="adaln")),
])
def test_fused_attention_equals_plain_attention_for_the_denoiser_priors(name, spec, kwargs):
    prior = _randomise(build_prior(name, spec, preset="tiny", timesteps=16, **kwargs)).eval()
    assert _attends(prior) and all(m.flash for m in _attends(prior))  # on by default
    g = torch.Generator().manual_seed(0)
    batch = 5
    labels = torch.tensor([0, 1, 2, 3, 1]) if kwargs.get("num_classes") else None  # 3 = the null class
    t = torch.randint(1, 17, (batch,), generator=g)
    if name == "bernoulli":
        z = (torch.rand(batch, *spec.shape, generator=g) < 0.5).float()
        fn = lambda: prior.net_logits(z, t, labels)  # noqa: E731
    else:
        codes = (torch.rand(batch, *spec.shape, generator=g) < 0.5).float() if spec.kind == "binary" else \
            torch.randint(0, spec.vocab_size, (batch, *spec.shape), generator=g)
        masked = torch.rand(batch, spec.num_positions, generator=g) < 0.5
        fn = lambda: prior.logits(codes, masked, t, labels)  # noqa: E731
    with torch.no_grad():
        fused, plain = _both(prior, fn)
    torch.testing.assert_close(fused, plain, **TOL)
    # gradients too (the training step runs the fused backward)
    def grads():
        prior.zero_grad()
        fn().square().mean().backward()
        return [p.grad.clone() for p in prior.parameters() if p.grad is not None]

    fused_grads, plain_grads = _both(prior, grads)
    assert len(fused_grads) == len(plain_grads) > 0
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("spec,kwargs", [(BITS, dict()), (TOKENS, dict(num_classes=3, pos_emb="sincos"))])
def test_fused_attention_equals_plain_attention_for_the_causal_prior_with_and_without_kv_cache(spec, kwargs):
    prior = _randomise(build_prior("autoregressive", spec, preset="tiny", **kwargs)).eval()
    assert all(m.flash for m in _attends(prior))
    g = torch.Generator().manual_seed(1)
    batch, n = 4, spec.num_positions
    codes = (torch.rand(batch, *spec.shape, generator=g) < 0.5).float() if spec.kind == "binary" else \
        torch.randint(0, spec.vocab_size, (batch, n), generator=g)
    inputs = prior._inputs(codes)
    start = torch.tensor([0, 1, 2, 3]) if kwargs.get("num_classes") else torch.zeros(batch, dtype=torch.long)

    def teacher_forced():
        return prior.net(inputs[:, :-1], start)

    def cached():
        step = prior.net.step(None, start)
        rows = [step.logits]
        for i in range(n - 1):
            step = prior.net.step(inputs[:, i], start, step.cache)
            rows.append(step.logits)
        return torch.stack(rows, 1)

    with torch.no_grad():
        fused, plain = _both(prior, teacher_forced)
        fused_cached, plain_cached = _both(prior, cached)
    torch.testing.assert_close(fused, plain, **TOL)
    torch.testing.assert_close(fused_cached, plain_cached, **TOL)
    torch.testing.assert_close(fused_cached, fused, **TOL)  # the cache gives the teacher-forced logits


def test_fused_attention_adds_no_parameters_and_weights_load_either_way():
    for cls, kwargs in ((Denoiser, dict(grid=(2, 3), in_dim=4, out_dim=4, num_classes=2, cond="adaln")),
                        (CausalTransformer, dict(grid=(2, 3), out_dim=5, vocab_size=5, num_starts=3))):
        torch.manual_seed(0)
        fused = cls(dim=32, depth=2, heads=2, **kwargs)
        plain = cls(dim=32, depth=2, heads=2, fused_attention=False, **kwargs)
        assert not any(m.flash for m in _attends(plain)) and all(m.flash for m in _attends(fused))
        assert {k: v.shape for k, v in fused.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
        plain.load_state_dict(fused.state_dict())  # strict
        assert "fused_attention" not in fused.config  # not part of what a saved config rebuilds


# -- the fused kernel in fp32 under CPU bf16 autocast (CPUFloatAttend) ---------------------------


def _sdpa_dtypes(monkeypatch):
    """Record the dtype of q at every call of F.scaled_dot_product_attention (x-transformers looks it up per call)."""
    import torch.nn.functional as F

    seen, real = [], F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, *a, **k: seen.append(q.dtype) or real(q, *a, **k))
    return seen


def _nets():
    torch.manual_seed(0)
    denoiser = Denoiser(grid=(3, 4), in_dim=6, out_dim=6, dim=32, depth=2, heads=2, num_classes=3)
    causal = CausalTransformer(grid=(3, 4), in_dim=6, out_dim=6, dim=32, depth=2, heads=2)
    with torch.no_grad():
        for net in (denoiser, causal):
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(5, 12, 6, generator=g), torch.rand(5, generator=g)
    runs = {"denoiser": (denoiser, lambda: denoiser(x, t, torch.tensor([0, 1, 2, 3, 1]))),
            "causal": (causal, lambda: causal(x[:, :11], torch.zeros(5, dtype=torch.long)))}
    return runs


@pytest.mark.parametrize("net_name", ["denoiser", "causal"])
def test_cpu_bf16_autocast_runs_the_fused_attention_in_fp32_and_stays_close_to_fp32(net_name, monkeypatch):
    net, fn = _nets()[net_name]
    attends = _attends(net)
    assert attends and all(type(m).__name__ == "CPUFloatAttend" for m in attends)
    seen = _sdpa_dtypes(monkeypatch)
    fp32 = fn()
    assert seen and set(seen) == {torch.float32}
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = fn()
    assert set(seen) == {torch.float32}  # the matmuls around it are bf16; the kernel is not
    rms = lambda t: t.float().pow(2).mean().sqrt().item()  # noqa: E731
    # the same function at the bf16 rounding of the matmuls (8 mantissa bits, 2^-8 = 0.4% per
    # rounding, a few roundings deep): measured 1.4% (denoiser) and 0.6% (causal) of the output's rms
    assert rms(mixed.float() - fp32) < 0.03 * rms(fp32)
    # and the backward runs through it (training), with finite gradients
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fn().float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)

    # plain x-transformers Attend: the kernel would see bf16 (what this class avoids)
    for m in attends:
        m.__class__ = Attend
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = fn()
    assert set(seen) == {torch.bfloat16}
    # fp32 attention is no further from the fp32 network than bf16 attention (measured: as close or closer)
    assert rms(mixed.float() - fp32) <= 1.25 * rms(plain.float() - fp32)


def test_cpu_float_attention_changes_nothing_in_fp32_and_survives_a_deepcopy():
    import copy

    for net, fn in _nets().values():
        out = fn()
        twin = copy.deepcopy(net)  # the trainer's EMA copy
        assert all(type(m).__name__ == "CPUFloatAttend" for m in _attends(twin))
        for m in _attends(net):
            m.__class__ = Attend
        assert torch.equal(fn(), out)  # fp32: bit for bit the x-transformers path
