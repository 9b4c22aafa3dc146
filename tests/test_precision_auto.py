"""``--precision auto``: bf16 on CUDA and on CPUs with native bf16, fp32 on other CPUs; a resumed run
keeps the precision it was trained in (training/precision.py, Trainer._resolve_precision)."""

from __future__ import annotations

import warnings

import pytest
import torch

from discrete_priors.io import read_json, write_json
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.training import precision as prec
from tests.test_trainer import assert_same_state, trainer

ENV = prec.CPU_BF16_ENV


@pytest.fixture
def capabilities(monkeypatch):
    """Set what ``torch.cpu.get_capabilities()`` reports (the detection, without the override)."""
    monkeypatch.delenv(ENV, raising=False)

    def set_flags(flags: dict):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "x86_64", **flags})
        prec._detected_cpu_bf16.cache_clear()

    yield set_flags
    prec._detected_cpu_bf16.cache_clear()


@pytest.mark.parametrize("flags, native", [
    ({"avx2": True, "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}, False),  # AVX2/AVX512 without bf16
    ({"avx512_f": True, "avx512_bf16": True}, True),  # AMD Zen 4/5, Intel Cooper Lake
    ({"avx512_bf16": False, "amx_tile": True, "amx_bf16": True}, True),  # Intel Sapphire Rapids (AMX)
    ({"bf16": True}, True),  # Arm BF16 (BFMMLA)
    ({}, False),
])
def test_auto_is_bf16_exactly_on_cpus_with_native_bf16(capabilities, flags, native):
    capabilities(flags)
    assert prec.cpu_bf16_supported() is native
    assert prec.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert prec.legacy_auto_precision("cpu") == "fp32"  # what auto meant before, on any CPU
    assert prec.resolve_precision("fp32", "cpu") == "fp32" and prec.resolve_precision("off", "cpu") == "fp32"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert prec.resolve_precision("bf16", "cpu") == "bf16"
    # explicit bf16 warns exactly where it is emulated
    assert any("emulated" in str(w.message) for w in caught) is not native
    with prec.autocast_context("cpu", "auto"):
        assert torch.is_autocast_enabled("cpu") is native
        if native:
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_detection_falls_back_to_the_private_probes(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    for avx512_bf16, amx in [(False, False), (True, False), (False, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        prec._detected_cpu_bf16.cache_clear()
        assert prec.cpu_bf16_supported() is (avx512_bf16 or amx)
    prec._detected_cpu_bf16.cache_clear()


def test_the_environment_variable_overrides_the_detection(capabilities, monkeypatch):
    capabilities({"avx512_bf16": True})
    for value, expected in [("0", "fp32"), ("1", "bf16")]:
        monkeypatch.setenv(ENV, value)
        assert prec.resolve_precision("auto", "cpu") == expected
    monkeypatch.setenv(ENV, "yes")
    with pytest.raises(ValueError, match="DISCRETE_PRIORS_CPU_BF16 must be 0 or 1"):
        prec.resolve_precision("auto", "cpu")


def test_resumed_auto_run_keeps_the_precision_it_started_with(tmp_path, monkeypatch):
    """Killed at step 5 in bf16 (auto on a native-bf16 CPU) and resumed with auto where it would now
    mean fp32: it finishes in bf16, equal to the uninterrupted bf16 run and not to the fp32 one; and the
    reverse (started fp32, resumed where auto means bf16) stays fp32."""
    def run(out, started: str, resumed: str | None):
        monkeypatch.setenv(ENV, started)
        first = trainer(out, amp="auto")
        if resumed is None:
            first.fit()
            return first
        first.fit(until=5)
        assert read_json(ckpt.latest_checkpoint(out / "checkpoints") / "trainer_state.json")["precision"] == first.precision
        monkeypatch.setenv(ENV, resumed)
        with warnings.catch_warnings():  # bf16 kept where it would be emulated: warned, as an explicit bf16 is
            warnings.simplefilter("ignore", RuntimeWarning)
            second = trainer(out, amp="auto")
        second.fit()
        assert second.precision == first.precision
        return second

    bf16_whole, fp32_whole = run(tmp_path / "b", "1", None), run(tmp_path / "f", "0", None)
    assert (bf16_whole.precision, fp32_whole.precision) == ("bf16", "fp32")
    bf16_resumed, fp32_resumed = run(tmp_path / "br", "1", "0"), run(tmp_path / "fr", "0", "1")
    assert_same_state(bf16_resumed, bf16_whole)  # exact resume (weights, EMA, optimizer), in bf16
    assert_same_state(fp32_resumed, fp32_whole)
    differs = [not torch.equal(a, b) for a, b in zip(bf16_whole.model.state_dict().values(), fp32_whole.model.state_dict().values())]
    assert any(differs)  # so the equalities above tell the precisions apart


def test_checkpoint_without_a_recorded_precision_resumes_as_auto_meant_then(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "0")
    trainer(tmp_path, amp="auto").fit(until=5)
    state_path = ckpt.latest_checkpoint(tmp_path / "checkpoints") / "trainer_state.json"
    state = read_json(state_path)
    del state["precision"]  # as written before the key existed
    write_json(state_path, state)
    monkeypatch.setenv(ENV, "1")
    assert trainer(tmp_path, amp="auto").precision == "fp32"  # legacy auto on CPU
    # an explicit precision is what the user asked for, recorded or not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert trainer(tmp_path, amp="bf16").precision == "bf16"
    monkeypatch.setenv(ENV, "0")
    assert trainer(tmp_path / "new", amp="auto").precision == "fp32"


def test_recorded_precision_the_device_cannot_run_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "0")
    trainer(tmp_path, amp="auto").fit(until=5)
    state_path = ckpt.latest_checkpoint(tmp_path / "checkpoints") / "trainer_state.json"
    write_json(state_path, read_json(state_path) | {"precision": "fp16"})  # e.g. trained on a GPU without bf16
    with pytest.raises(ValueError, match="was trained in fp16.*Pass an explicit precision"):
        trainer(tmp_path, amp="auto")
    assert trainer(tmp_path, amp="fp32").precision == "fp32"
