"""Reference PyTorch Perceiver: an independent, readable model used to cross-check
perceiver-calc's analytic counts against a real forward/backward and to time configs.

Needs torch (the `torch` extra). perceiver_calc never imports this package.

    from reference_model import build_model
    model = build_model(config, "PerceiverForMaskedLM", attention="sdpa")
"""

from __future__ import annotations


class MissingTorchError(ImportError):
    """torch is not installed; the reference model needs the `torch` extra."""


try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without torch
    raise MissingTorchError(
        "reference_model needs torch: from a clone of perceiver-calc, "
        "pip install -c constraints.txt -e '.[torch]' (constraints.txt pins the CPU wheel)"
    ) from None

from reference_model.model import (  # noqa: E402 - after the torch check
    MODEL_CLASSES,
    PerceiverOutput,
    build_model,
    set_attention,
)

__all__ = ["MODEL_CLASSES", "MissingTorchError", "PerceiverOutput", "build_model", "set_attention"]
