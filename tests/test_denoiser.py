"""Contract docs/method.md §8.2: the Denoiser network (shapes, conditioning, presets, config, errors)."""

import itertools

import pytest
import torch

from discrete_priors.nets import NETWORK_PRESETS, Denoiser, denoiser_preset, network_sizes

GRID = (4, 4)
N = 16


def _perturb(model: Denoiser, seed: int = 0) -> Denoiser:
    """adaLN-zero starts with the condition projections at zero (t has no effect at init); add
    noise to every parameter so the conditioning paths are live, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _inputs(batch=3, in_dim=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (batch, N, in_dim), generator=g).float() * 2 - 1
    t = torch.rand(batch, generator=g)
    return x, t


@pytest.mark.parametrize(
    "cond,pos_emb,time_cond,num_classes",
    list(itertools.product(["adaln", "token"], ["learned", "sincos"], [True, False], [None, 5])),
)
def test_output_shape_for_every_option(cond, pos_emb, time_cond, num_classes):
    model = Denoiser(grid=GRID, in_dim=8, out_dim=3, num_classes=num_classes, cond=cond, pos_emb=pos_emb,
                     time_cond=time_cond, **denoiser_preset("tiny"))
    x, t = _inputs()
    labels = torch.tensor([0, 4, 5]) if num_classes else None
    out = model(x, t if time_cond else None, labels)
    assert out.shape == (3, N, 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cond", ["adaln", "token"])
def test_cpu_preset_has_about_one_million_parameters(cond):
    model = Denoiser(grid=GRID, in_dim=32, out_dim=32, cond=cond, **denoiser_preset("cpu"))
    count = sum(p.numel() for p in model.parameters())
    assert 0.7e6 <= count <= 1.5e6, count


def test_paper_preset_builds_with_paper_size():
    # meta device: shapes only, no 1 GB allocation
    with torch.device("meta"):
        model = Denoiser(grid=(16, 16), in_dim=32, out_dim=32, **denoiser_preset("paper"))
    count = sum(p.numel() for p in model.parameters())
    # 24 blocks of ~12*768^2 (attention + 4x MLP) = 170M, plus adaLN-zero scales and gates
    # (49 norm + 48 gate projections of 768x768 = 57M)
    assert 160e6 <= count <= 240e6, count
    assert len(model.net.attn_layers.layers) == 2 * 24


@pytest.mark.parametrize("cond", ["adaln", "token"])
def test_labels_none_equals_all_null_labels(cond):
    model = _perturb(Denoiser(grid=GRID, in_dim=8, out_dim=4, num_classes=5, cond=cond, **denoiser_preset("tiny")))
    x, t = _inputs()
    null = torch.full((3,), 5, dtype=torch.long)
    torch.testing.assert_close(model(x, t, None), model(x, t, null), rtol=0, atol=0)
    # and the label matters at all
    assert (model(x, t, torch.tensor([0, 1, 2])) - model(x, t, null)).abs().max() > 1e-3


@pytest.mark.parametrize("cond", ["adaln", "token"])
def test_time_changes_the_output(cond):
    model = _perturb(Denoiser(grid=GRID, in_dim=8, out_dim=4, cond=cond, **denoiser_preset("tiny")))
    x, t = _inputs()
    diff = (model(x, t) - model(x, 1 - t)).abs().max()
    assert diff > 1e-3, diff


def test_adaln_zero_ignores_time_at_init():
    # documents the adaLN-zero initialisation: condition projections start at zero
    model = Denoiser(grid=GRID, in_dim=8, out_dim=4, cond="adaln", **denoiser_preset("tiny"))
    x, t = _inputs()
    torch.testing.assert_close(model(x, t), model(x, 1 - t))


def test_zero_init_head_outputs_zero_logits():
    model = Denoiser(grid=GRID, in_dim=8, out_dim=4, zero_init_head=True, **denoiser_preset("tiny"))
    x, t = _inputs()
    assert (model(x, t) == 0).all()


@pytest.mark.parametrize("pos_emb", ["learned", "sincos"])
def test_config_rebuilds_the_same_network(pos_emb):
    model = _perturb(Denoiser(grid=GRID, in_dim=8, out_dim=4, num_classes=3, pos_emb=pos_emb, **denoiser_preset("tiny")))
    import json

    config = json.loads(json.dumps(model.config))
    clone = Denoiser(**config)
    clone.load_state_dict(model.state_dict())
    x, t = _inputs()
    torch.testing.assert_close(clone(x, t), model(x, t))
    # the fixed sincos table is derived from the config, not stored with the weights
    assert ("pos_emb" in model.state_dict()) == (pos_emb == "learned")


def test_positions_break_permutation_symmetry():
    model = _perturb(Denoiser(grid=GRID, in_dim=8, out_dim=4, pos_emb="sincos", **denoiser_preset("tiny")))
    x, t = _inputs(batch=1)
    x = x.expand(1, N, 8).clone()
    x[:] = x[:, :1]  # identical tokens everywhere: only positions tell them apart
    out = model(x, t)
    assert (out[0, 0] - out[0, -1]).abs().max() > 1e-3


def test_invalid_options_raise():
    tiny = denoiser_preset("tiny")
    with pytest.raises(AssertionError, match="unknown cond"):
        Denoiser(grid=GRID, in_dim=8, out_dim=4, cond="film", **tiny)
    with pytest.raises(AssertionError, match="unknown pos_emb"):
        Denoiser(grid=GRID, in_dim=8, out_dim=4, pos_emb="rotary", **tiny)
    with pytest.raises(ValueError, match="unknown denoiser preset"):
        denoiser_preset("huge")
    with pytest.raises(ValueError, match="divisible by heads"):
        Denoiser(grid=GRID, in_dim=8, out_dim=4, dim=64, heads=3)
    with pytest.raises(ValueError, match="grid"):
        Denoiser(grid=(4, 0), in_dim=8, out_dim=4, **tiny)


def test_invalid_inputs_raise():
    tiny = denoiser_preset("tiny")
    x, t = _inputs()
    timed = Denoiser(grid=GRID, in_dim=8, out_dim=4, **tiny)
    with pytest.raises(ValueError, match="t is required"):
        timed(x, None)
    with pytest.raises(ValueError, match="x: expected shape"):
        timed(x[:, :5], t)
    with pytest.raises(ValueError, match="labels given"):
        timed(x, t, torch.zeros(3, dtype=torch.long))
    untimed = Denoiser(grid=GRID, in_dim=8, out_dim=4, time_cond=False, num_classes=2, **tiny)
    with pytest.raises(ValueError, match="time_cond=False"):
        untimed(x, t)
    with pytest.raises(ValueError, match="labels must lie"):
        untimed(x, None, torch.tensor([0, 1, 3]))


def test_network_presets_keep_the_sizes_saved_configs_were_built_with():
    """Saved prior configs store preset and sizes; the table in nets/presets.py must not drift."""
    assert NETWORK_PRESETS == {"tiny": dict(dim=64, depth=2, heads=2), "cpu": dict(dim=128, depth=4, heads=4),
                               "paper": dict(dim=768, depth=24, heads=12)}
    assert network_sizes("tiny", heads=4) == dict(dim=64, depth=2, heads=4)
    assert network_sizes("cpu", dim=None, depth=None, heads=None) == denoiser_preset("cpu")
    network_sizes("tiny")["dim"] = 1  # a copy: the table stays as it is
    assert denoiser_preset("tiny")["dim"] == 64
    with pytest.raises(ValueError, match="expected one of"):
        network_sizes("huge")
