"""The README's Python example runs as written: the one ```python block under "From Python" is
read from README.md, its first line of sizes (OUT, AE_STEPS, PRIOR_STEPS, AE_PRESET, NET) is
replaced by tiny ones, and the rest is executed unchanged. The samples are binary codes and images
in [0, 1] of the stated shapes, written where the example says, and the inpainted codes keep the
encoder's codes exactly on the kept latent positions (the top half) and differ from them below."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SIZES = re.compile(r'^OUT, AE_STEPS, PRIOR_STEPS, AE_PRESET, NET = .*$', re.MULTILINE)


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### From Python", 1)[1]
    (block,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    return block


def test_the_readme_python_example_builds_trains_samples_and_inpaints(tmp_path):
    block = readme_example()
    assert len(SIZES.findall(block)) == 1, "the example's first line of sizes is what this test replaces"
    tiny = SIZES.sub(f'OUT, AE_STEPS, PRIOR_STEPS, AE_PRESET, NET = "{tmp_path.as_posix()}", 20, 20, "tiny", "tiny"', block)
    namespace: dict = {}
    exec(compile(tiny, "README.md (From Python)", "exec"), namespace)  # noqa: S102 - the README's own code

    samples, filled = namespace["samples"], namespace["filled"]
    assert samples.codes.shape == (64, 16, 32) and set(samples.codes.unique().tolist()) <= {0.0, 1.0}
    assert samples.images.shape == (64, 1, 16, 16)
    assert 0.0 <= samples.images.min() and samples.images.max() <= 1.0
    assert (tmp_path / "samples" / "grid.png").is_file() and (tmp_path / "inpaint" / "inpainting.png").is_file()

    # box rows 8..15 of 16 pixels, cells of 4: the top two rows of the 4x4 grid are kept
    expected_known = torch.tensor([True] * 8 + [False] * 8)
    assert torch.equal(filled.known, expected_known)
    encoded = filled.encoded.repeat_interleave(4, dim=0)  # 4 fills per input, input-major
    assert filled.codes.shape == (32, 16, 32)
    assert torch.equal(filled.codes[:, filled.known], encoded[:, filled.known])
    # the filled half was drawn, not copied: a barely trained prior's bits differ from the encoder's
    assert not torch.equal(filled.codes[:, ~filled.known], encoded[:, ~filled.known])
    # the prior was trained on resampled codes (the default for a binary cache with probabilities)
    assert namespace["pipeline"].read_json(tmp_path / "prior" / "prior.json")["resample"] is True
    assert namespace["prior"].default_steps == 16
