"""One table of the Perceiver model classes: everything that differs between them.

Each :class:`ModelClassSpec` says how the class is built (``builder``, a key of
``perceiver_calc.resolve``'s builders), what input it reads and its default, how many decoder
queries it has, whether it takes labels and which loss, which optional override fields apply,
and transformers' constants it hardcodes. workload, memory, check/bench and the reference
model read this table; no other code branches on class names.

Sources cited as ``modeling_perceiver.py`` are transformers 5.24's
``models/perceiver/modeling_perceiver.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from perceiver_calc.arith import Int, cdiv

if TYPE_CHECKING:
    from perceiver_calc.config import ModelClass

__all__ = [
    "CLASSES",
    "CONV_STEM",
    "DEFAULT_IMAGE_SIDE",
    "DEFAULT_MODEL_CLASS",
    "FLOW_PATCH_CHANNELS",
    "MULTIMODAL_CHUNKS",
    "MULTIMODAL_IMAGE_PATCH",
    "ModelClassSpec",
    "conv_stem_sizes",
]

InputKind = Literal["tokens", "embeddings", "image", "flow", "multimodal"]
ImagePreprocessor = Literal["learned", "fourier", "conv"]
Outputs = Literal["none", "one", "max_position_embeddings", "inputs", "multimodal"]
Loss = Literal["vocab_cross_entropy", "problem_type"]

DEFAULT_MODEL_CLASS: ModelClass = "PerceiverForMaskedLM"
"""The class of a config without ``architectures`` (as transformers' deepmind checkpoints)."""

# ---- transformers' constants, named once --------------------------------------------------

# Fourier/Conv image classifiers: the DeepMind checkpoints' ImageNet resolution (the default
# input; any size works).
DEFAULT_IMAGE_SIDE = 224
# transformers' multimodal example (PerceiverForMultimodalAutoencoding.forward docstring)
# decodes a video in 128 chunks, each chunk subsampling 1/128 of the image and audio outputs.
MULTIMODAL_CHUNKS = 128
# The multimodal image preprocessor cuts each frame into 4x4 patches (spatial_downsample=4).
MULTIMODAL_IMAGE_PATCH = 4
# PerceiverForOpticalFlow: 3x3 patches of 2 RGB frames (conv_after_patching_in_channels=54).
FLOW_PATCH_CHANNELS = 3 * 3 * 3 * 2
FLOW_OUTPUT_CHANNELS = 2  # (u, v) per pixel
# PerceiverForMaskedLM's decoder (L811-823): 8 heads, qk_channels 8 * 32.
MASKED_LM_DECODER_HEADS = 8
MASKED_LM_DECODER_QK_CHANNELS = 8 * 32
# Conv2DDownsample (L2390-2425): Conv2dSamePadding 7x7 stride 2, MaxPool2d(3, stride 2).
CONV_STEM = MappingProxyType({"kernel": 7, "stride": 2, "pool_kernel": 3, "pool_stride": 2})
# Multimodal (L1575-1700): audio Fourier bands 192, image bands 32, min_padding_size 4 (inputs)
# and 2 (queries); 4x4x3 image patches.
MULTIMODAL_AUDIO_BANDS = 192
MULTIMODAL_IMAGE_BANDS = 32
MULTIMODAL_INPUT_PADDING = 4
MULTIMODAL_QUERY_PADDING = 2


def conv_stem_sizes(h: Int, w: Int) -> tuple[tuple[Int, Int], tuple[Int, Int]]:
    """Conv2DDownsample: Conv2dSamePadding 7x7 stride 2 (pads k-1: out = ceil(x/2)), then
    MaxPool2d(3, stride 2, no padding): out = floor((x - 3) / 2) + 1.
    Returns ((conv h, w), (pooled h, w)); 224 -> 112 -> 55."""
    s, k, ps = CONV_STEM["stride"], CONV_STEM["pool_kernel"], CONV_STEM["pool_stride"]
    h1, w1 = cdiv(h, s), cdiv(w, s)
    return (h1, w1), ((h1 - k) // ps + 1, (w1 - k) // ps + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelClassSpec:
    """What one model class is, as far as counting and checking go."""

    name: str
    builder: str
    """Key of the class's builder in perceiver_calc.resolve."""
    input_kind: InputKind
    """What its forward reads: token ids, (B, M, d_model) embeddings, images, flow frame pairs,
    a multimodal dict."""
    default_input: str
    """The workload a report uses when none is given (perceiver_calc.workload)."""
    image_preprocessor: ImagePreprocessor | None = None
    """Image classes: trainable positions (``learned``: needs image_size² pixels), Fourier
    features on the raw pixels, or the conv stem then Fourier features."""
    outputs: Outputs
    """Decoder queries: none (bare model), one (classifiers), max_position_embeddings
    (masked LM, always), inputs (optical flow: one per pixel), multimodal (subsampled points
    + the label)."""
    takes_labels: bool
    """Its forward computes a loss from ``labels`` (check/bench train with labels there)."""
    loss: Loss | None = None
    """vocab_cross_entropy: always CrossEntropyLoss over the vocabulary; problem_type:
    transformers' rule (regression for one label, else cross-entropy, or config.problem_type)."""
    override_fields: frozenset[str]
    """Optional fields (config.HARDCODED_FIELDS) that change a value this class hardcodes."""
    constants: Mapping[str, int]
    """transformers constants of this class, by name (read-only)."""

    def fixed_outputs(self, max_position_embeddings: Int) -> Int | None:
        """The decoder query count when the config fixes it (None: the workload decides)."""
        if self.outputs == "max_position_embeddings":
            return max_position_embeddings
        if self.outputs == "one":
            return 1
        if self.outputs == "none":
            return 0
        return None


_DECODER = frozenset(
    {
        "decoder_num_heads",
        "decoder_qk_channels",
        "decoder_v_channels",
        "decoder_widening_factor",
        "decoder_use_query_residual",
    }
)
_FOURIER = frozenset({"fourier_num_bands", "fourier_max_resolution"})
_C = MappingProxyType


CLASSES: Mapping[str, ModelClassSpec] = MappingProxyType(
    {
        "PerceiverModel": ModelClassSpec(
            name="PerceiverModel",
            builder="bare",
            input_kind="embeddings",
            default_input="(B, max_position_embeddings, d_model) embeddings",
            outputs="none",
            takes_labels=False,
            override_fields=frozenset(),
            constants=_C({}),
        ),
        "PerceiverForMaskedLM": ModelClassSpec(
            name="PerceiverForMaskedLM",
            builder="masked_lm",
            input_kind="tokens",
            default_input="max_position_embeddings token ids",
            outputs="max_position_embeddings",
            takes_labels=True,
            loss="vocab_cross_entropy",
            override_fields=_DECODER | {"decoder_final_project"},
            constants=_C(
                {
                    "decoder_num_heads": MASKED_LM_DECODER_HEADS,
                    "decoder_qk_channels": MASKED_LM_DECODER_QK_CHANNELS,
                    "decoder_widening_factor": 1,
                }
            ),
        ),
        "PerceiverForSequenceClassification": ModelClassSpec(
            name="PerceiverForSequenceClassification",
            builder="sequence_classification",
            input_kind="tokens",
            default_input="max_position_embeddings token ids",
            outputs="one",
            takes_labels=True,
            loss="problem_type",
            override_fields=_DECODER,
            constants=_C({"decoder_num_heads": 1, "decoder_widening_factor": 1}),
        ),
        "PerceiverForImageClassificationLearned": ModelClassSpec(
            name="PerceiverForImageClassificationLearned",
            builder="image_learned",
            input_kind="image",
            default_input="image_size x image_size images (it needs exactly that)",
            image_preprocessor="learned",
            outputs="one",
            takes_labels=True,
            loss="problem_type",
            override_fields=_DECODER
            | {
                "preprocessor_out_channels",
                "preprocessor_project_pos_dim",
                "preprocessor_position_num_channels",
            },
            constants=_C(
                {
                    "in_channels": 3,
                    "preprocessor_out_channels": 256,
                    "preprocessor_position_num_channels": 256,
                    "preprocessor_project_pos_dim": 256,
                    "decoder_num_heads": 1,
                    "decoder_widening_factor": 1,
                }
            ),
        ),
        "PerceiverForImageClassificationFourier": ModelClassSpec(
            name="PerceiverForImageClassificationFourier",
            builder="image_fourier",
            input_kind="image",
            default_input=f"{DEFAULT_IMAGE_SIDE} x {DEFAULT_IMAGE_SIDE} images",
            image_preprocessor="fourier",
            outputs="one",
            takes_labels=True,
            loss="problem_type",
            override_fields=_DECODER | _FOURIER,
            constants=_C(
                {
                    "in_channels": 3,
                    "fourier_num_bands": 64,
                    "decoder_num_heads": 1,
                    "decoder_widening_factor": 1,
                }
            ),
        ),
        "PerceiverForImageClassificationConvProcessing": ModelClassSpec(
            name="PerceiverForImageClassificationConvProcessing",
            builder="image_conv",
            input_kind="image",
            default_input=f"{DEFAULT_IMAGE_SIDE} x {DEFAULT_IMAGE_SIDE} images",
            image_preprocessor="conv",
            outputs="one",
            takes_labels=True,
            loss="problem_type",
            override_fields=_DECODER | _FOURIER | {"preprocessor_out_channels"},
            constants=_C(
                {
                    "in_channels": 3,
                    "preprocessor_out_channels": 64,
                    "fourier_num_bands": 64,
                    "conv_kernel": CONV_STEM["kernel"],
                    "conv_stride": CONV_STEM["stride"],
                    "pool_kernel": CONV_STEM["pool_kernel"],
                    "pool_stride": CONV_STEM["pool_stride"],
                    "decoder_num_heads": 1,
                    "decoder_widening_factor": 1,
                }
            ),
        ),
        "PerceiverForOpticalFlow": ModelClassSpec(
            name="PerceiverForOpticalFlow",
            builder="optical_flow",
            input_kind="flow",
            default_input="frame pairs of train_size (it needs H·W == that product)",
            outputs="inputs",
            takes_labels=False,
            override_fields=_DECODER | _FOURIER | {"preprocessor_out_channels"},
            constants=_C(
                {
                    "conv_after_patching_in_channels": FLOW_PATCH_CHANNELS,
                    "preprocessor_out_channels": 64,
                    "fourier_num_bands": 64,
                    "output_num_channels": FLOW_OUTPUT_CHANNELS,
                    "decoder_num_heads": 1,
                    "decoder_widening_factor": 1,
                }
            ),
        ),
        "PerceiverForMultimodalAutoencoding": ModelClassSpec(
            name="PerceiverForMultimodalAutoencoding",
            builder="multimodal",
            input_kind="multimodal",
            default_input=(
                "num_frames frames of image_size x image_size, num_frames·"
                "audio_samples_per_frame audio samples, one label vector; outputs subsampled "
                f"to 1/{MULTIMODAL_CHUNKS}"
            ),
            outputs="multimodal",
            takes_labels=False,
            override_fields=frozenset(),
            constants=_C(
                {
                    "audio_fourier_bands": MULTIMODAL_AUDIO_BANDS,
                    "image_fourier_bands": MULTIMODAL_IMAGE_BANDS,
                    "image_patch": MULTIMODAL_IMAGE_PATCH,
                    "input_min_padding": MULTIMODAL_INPUT_PADDING,
                    "query_min_padding": MULTIMODAL_QUERY_PADDING,
                    "chunks": MULTIMODAL_CHUNKS,
                    "image_out_channels": 3,
                    "decoder_num_heads": 1,
                }
            ),
        ),
    }
)
"""Model class name -> its spec, in config.MODEL_CLASSES order."""
