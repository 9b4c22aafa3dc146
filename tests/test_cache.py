"""Latent cache: exact round trips per kind, bit packing, hash check, Bernoulli re-sampling."""

from __future__ import annotations

import math

import pytest
import torch

from discrete_priors.data.cache import load_latent_cache, pack_bits, save_latent_cache, unpack_bits
from discrete_priors.io import save_tensors
from discrete_priors.latents.base import CodeSpec

HASH = "a1b2c3d4e5f60718"


def _binary(b=6, grid=(3, 4), c=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    spec = CodeSpec(kind="binary", grid=grid, channels=c)
    probs = torch.rand(b, grid[0] * grid[1], c, generator=g)
    return spec, torch.bernoulli(probs, generator=g), probs


def test_pack_bits_order_by_example():
    bits = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]], dtype=torch.float32)
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.tolist() == [[0x81, 0xC0]]  # MSB first, zero padded
    assert torch.equal(unpack_bits(packed, 12), bits)


@pytest.mark.parametrize("c", [1, 8, 12, 33])
def test_binary_round_trip_exact(tmp_path, c):
    spec, codes, probs = _binary(c=c)
    labels = torch.tensor([0, 3, 1, 2, 9, 0])
    path = tmp_path / "codes.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, labels=labels, probs=probs, autoencoder_hash=HASH,
                      extra={"dataset": "digits", "split": "train", "encode": "deterministic"})
    cache = load_latent_cache(path, expect_autoencoder_hash=HASH)
    assert cache.spec == spec and len(cache) == 6 and cache.autoencoder_hash == HASH
    assert cache.codes.dtype == torch.float32 and torch.equal(cache.codes, codes)
    assert torch.equal(cache.labels, labels) and cache.labels.dtype == torch.long
    assert cache.extra == {"dataset": "digits", "split": "train", "encode": "deterministic"}
    assert cache.stored_codes.dtype == torch.uint8
    assert cache.stored_codes.shape == (6, 12, math.ceil(c / 8))
    # float16 keeps probabilities to within half a unit in the last place (2^-11 relative, <= 2^-12 abs in [0,1))
    assert (cache.probs - probs).abs().max() <= 2.0**-12
    idx = torch.tensor([4, 1])
    assert torch.equal(cache.batch(idx), codes[idx])
    assert torch.equal(cache.batch([4, 1]), codes[idx])
    assert torch.equal(cache.batch(slice(2, 5)), codes[2:5])


def test_packed_size_is_c_over_8_bytes_per_position(tmp_path):
    spec, codes, _ = _binary(b=64, grid=(8, 8), c=32)
    path = tmp_path / "codes.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, autoencoder_hash=HASH)
    cache = load_latent_cache(path)
    assert cache.nbytes == 64 * 64 * 32 // 8  # 4 bytes per position, 32x smaller than float32
    header = path.stat().st_size - cache.nbytes
    assert 0 < header < 1024  # the rest of the file is the JSON header + metadata


@pytest.mark.parametrize("vocab, dtype", [(2, torch.uint8), (256, torch.uint8), (1000, torch.int16),
                                          (2**15, torch.int16), (70000, torch.int32),
                                          (2**31, torch.int32), (2**32, torch.int64)])
def test_categorical_round_trip_smallest_dtype(tmp_path, vocab, dtype):
    spec = CodeSpec(kind="categorical", grid=(2, 5), channels=1, vocab_size=vocab)
    codes = torch.randint(0, vocab, (7, 10), generator=torch.Generator().manual_seed(1))
    codes[0, 0], codes[0, 1] = 0, vocab - 1  # both ends of the range survive the narrow dtype
    path = tmp_path / "vq.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, autoencoder_hash=HASH)
    cache = load_latent_cache(path)
    assert cache.stored_codes.dtype == dtype
    assert cache.codes.dtype == torch.long and torch.equal(cache.codes, codes)
    assert cache.labels is None and cache.probs is None


def test_continuous_round_trip_within_float16(tmp_path):
    spec = CodeSpec(kind="continuous", grid=(4, 4), channels=3)
    codes = 3 * torch.randn(5, 16, 3, generator=torch.Generator().manual_seed(2))
    path = tmp_path / "kl.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, autoencoder_hash=HASH)
    cache = load_latent_cache(path)
    assert cache.stored_codes.dtype == torch.float16
    # round to nearest: relative error <= 2^-11 in the normal range, abs <= 2^-25 for subnormals
    assert torch.all((cache.codes - codes).abs() <= 2.0**-11 * codes.abs() + 2.0**-25)
    with pytest.raises(ValueError, match="float16"):
        save_latent_cache(path, codes=codes * 1e5, spec=spec, autoencoder_hash=HASH)


def test_hash_mismatch_names_both_hashes(tmp_path):
    spec, codes, _ = _binary()
    path = tmp_path / "codes.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, autoencoder_hash=HASH)
    with pytest.raises(ValueError) as err:
        load_latent_cache(path, expect_autoencoder_hash="ffffffffffffffff")
    message = str(err.value)
    assert str(path) in message and HASH in message and "ffffffffffffffff" in message and "re-run encode" in message
    assert torch.equal(load_latent_cache(path).codes, codes)  # no expectation -> no check


def test_resample_mean_matches_probs(tmp_path):
    spec = CodeSpec(kind="binary", grid=(1, 4), channels=12)
    probs = torch.linspace(0, 1, 48).view(1, 4, 12)
    path = tmp_path / "codes.safetensors"
    save_latent_cache(path, codes=(probs > 0.5).float(), spec=spec, probs=probs, autoencoder_hash=HASH)
    cache = load_latent_cache(path)
    draws = 4000
    samples = cache.batch(torch.zeros(draws, dtype=torch.long), resample=True, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (draws, 4, 12) and set(samples.unique().tolist()) <= {0.0, 1.0}
    # std of a mean of 4000 Bernoullis <= 0.5/sqrt(4000) = 0.0079; allow 5 sigma
    assert (samples.mean(0) - cache.probs[0]).abs().max() <= 5 * 0.5 / math.sqrt(draws)
    assert samples[:, 0, 0].sum() == 0 and samples[:, 3, 11].sum() == draws  # p = 0 and p = 1 are exact
    again = cache.batch(torch.zeros(draws, dtype=torch.long), resample=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(samples, again)
    assert not torch.equal(cache.batch([0, 0], resample=True, generator=torch.Generator().manual_seed(4)),
                           cache.batch([0, 0], resample=True, generator=torch.Generator().manual_seed(5)))


def test_resample_needs_probs_and_binary(tmp_path):
    spec, codes, _ = _binary()
    save_latent_cache(tmp_path / "b.safetensors", codes=codes, spec=spec, autoencoder_hash=HASH)
    with pytest.raises(ValueError, match="without probs"):
        load_latent_cache(tmp_path / "b.safetensors").batch([0], resample=True)
    vq = CodeSpec(kind="categorical", grid=(2, 2), channels=1, vocab_size=16)
    save_latent_cache(tmp_path / "v.safetensors", codes=torch.zeros(3, 4, dtype=torch.long), spec=vq, autoencoder_hash=HASH)
    with pytest.raises(ValueError, match="binary"):
        load_latent_cache(tmp_path / "v.safetensors").batch([0], resample=True)


def test_batch_source_draws_codes_as_uniforms_below_probs_with_labels(tmp_path):
    spec, codes, probs = _binary(b=10, grid=(2, 2), c=5)
    labels = torch.arange(10) % 3
    path = tmp_path / "codes.safetensors"
    save_latent_cache(path, codes=codes, spec=spec, labels=labels, probs=probs, autoencoder_hash=HASH)
    cache = load_latent_cache(path)
    index = torch.tensor([7, 2, 2, 9])
    source = cache.batches(resample=True, labels=True)
    assert len(source) == 10
    drawn, drawn_labels = source(index, torch.Generator().manual_seed(11))
    # exactly z = [u < p], u ~ U[0,1) from the generator, p the stored (float16) probabilities
    uniform = torch.rand((4, 4, 5), generator=torch.Generator().manual_seed(11))
    assert torch.equal(drawn, (uniform < cache.probs[index]).float())
    assert torch.equal(drawn, cache.batch(index, resample=True, generator=torch.Generator().manual_seed(11)))
    assert torch.equal(drawn_labels, labels[index]) and drawn_labels.dtype == torch.long
    # without resampling the stored codes come back, the generator untouched
    generator = torch.Generator().manual_seed(11)
    (stored,) = cache.batches()(index, generator)
    assert torch.equal(stored, codes[index]) and torch.equal(generator.get_state(), torch.Generator().manual_seed(11).get_state())
    # the batch lands on the device asked for, else the generator's
    assert source(index, None)[0].device.type == "cpu"
    assert cache.batches(device="meta")(index, torch.Generator())[0].device.type == "meta"


def test_batch_source_checks_its_options_before_training(tmp_path):
    spec, codes, _ = _binary()
    save_latent_cache(tmp_path / "b.safetensors", codes=codes, spec=spec, autoencoder_hash=HASH)
    cache = load_latent_cache(tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="saved without probs: encode again without --no-probs"):
        cache.batches(resample=True)
    with pytest.raises(ValueError, match="needs labels, but this cache was saved without them"):
        cache.batches(labels=True)


def test_save_rejects_bad_inputs(tmp_path):
    spec, codes, probs = _binary()
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="binary codes"):
        save_latent_cache(path, codes=codes * 0.5, spec=spec, autoencoder_hash=HASH)
    with pytest.raises(ValueError, match="shape"):
        save_latent_cache(path, codes=codes, spec=spec, probs=probs[:, :5], autoencoder_hash=HASH)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_latent_cache(path, codes=codes, spec=spec, probs=probs + 1, autoencoder_hash=HASH)
    with pytest.raises(ValueError, match="labels"):
        save_latent_cache(path, codes=codes, spec=spec, labels=torch.zeros(5, dtype=torch.long), autoencoder_hash=HASH)
    with pytest.raises(ValueError, match="JSON"):
        save_latent_cache(path, codes=codes, spec=spec, autoencoder_hash=HASH, extra={"x": object()})
    assert not path.exists()  # nothing half-written


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="encode"):
        load_latent_cache(tmp_path / "absent.safetensors")
    save_tensors(tmp_path / "weights.safetensors", {"w": torch.zeros(2)})
    with pytest.raises(ValueError, match="not a latent cache"):
        load_latent_cache(tmp_path / "weights.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_latent_cache(tmp_path / "junk.safetensors")
