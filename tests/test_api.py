"""The public surface: explicit, sorted, importable, and free of torch."""

from __future__ import annotations

import subprocess
import sys

import perceiver_calc as pc


def test_all_is_sorted_and_complete() -> None:
    assert list(pc.__all__) == sorted(pc.__all__, key=lambda s: (not s.isupper(), s))
    for name in pc.__all__:
        assert hasattr(pc, name), name


def test_import_does_not_load_torch() -> None:
    code = "import sys, perceiver_calc; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_round_trip_from_transformers_config() -> None:
    """A transformers.PerceiverConfig loads as it is (transformers imported by the caller)."""
    import transformers

    hf = transformers.PerceiverConfig(
        d_latents=512, num_self_attends_per_block=4, qk_channels=64, v_channels=512
    )
    config = pc.load_config(hf)
    assert config.d_latents == 512 and config.qk_channels == 64
    resolved = pc.resolve(config, "PerceiverForMaskedLM")
    with __import__("torch").device("meta"):
        model = transformers.PerceiverForMaskedLM(hf)
    assert pc.count_params(resolved).total == sum(p.numel() for p in model.parameters())


def test_hidden_acts_match_transformers() -> None:
    from transformers.activations import ACT2FN

    from perceiver_calc.config import HIDDEN_ACTS

    assert set(HIDDEN_ACTS) == set(ACT2FN)


def test_config_is_frozen() -> None:
    import pytest
    from pydantic import ValidationError

    config = pc.PerceiverConfig()
    with pytest.raises(ValidationError):
        config.d_latents = 4  # type: ignore[misc]
