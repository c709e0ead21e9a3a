"""The config model: transformers' ``PerceiverConfig`` as a frozen pydantic model, and loading.

Field names, types and defaults are transformers 5.x's
(``models/perceiver/configuration_perceiver.py``), so a hub ``config.json`` loads as it is. On top
of them come a few optional fields for values that the model *classes* hardcode (the masked-LM
decoder's 8 heads and 256 query/key channels, the image preprocessors' widths, ...): each is
``None`` by default, meaning "what transformers does for this class", and is resolved in
:mod:`perceiver_calc.resolve`, the one place that knows the classes' rules.

This module validates types and ranges only. Rules between fields that depend on the model
class (head counts dividing widths, ...) live in ``resolve``, where the widths are known.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from perceiver_calc.errors import ConfigError, Finding, InputError, short_repr
from perceiver_calc.frozen import FrozenDict, FrozenJsonObject, FrozenLabels, thaw

__all__ = [
    "MODEL_CLASSES",
    "ModelClass",
    "PerceiverConfig",
    "load_config",
]

ModelClass = Literal[
    "PerceiverModel",
    "PerceiverForMaskedLM",
    "PerceiverForSequenceClassification",
    "PerceiverForImageClassificationLearned",
    "PerceiverForImageClassificationFourier",
    "PerceiverForImageClassificationConvProcessing",
    "PerceiverForOpticalFlow",
    "PerceiverForMultimodalAutoencoding",
]
MODEL_CLASSES: tuple[ModelClass, ...] = get_args(ModelClass)
"""The class names, in the Literal's order (their table: perceiver_calc.classes.CLASSES)."""

# Largest size accepted for any single dimension. torch stores sizes as int64 and a tensor's
# element count must fit in int64 too; a 2**31 - 1 bound per dimension keeps every product of
# two dimensions well inside it, and no real Perceiver comes near it.
MAX_DIM = 2**31 - 1

PositiveInt = Annotated[StrictInt, Field(ge=1, le=MAX_DIM)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0, le=MAX_DIM)]


def _exact_float(value: Any) -> Any:
    """transformers' @strict check for a ``float`` field is ``isinstance(value, float)``
    (huggingface_hub.dataclasses): an int (JSON ``1``) is refused too, unlike pydantic's strict
    float."""
    if not isinstance(value, float):
        raise PydanticCustomError(
            "float_type",
            "input should be a JSON float such as 1.0, not {kind} (transformers' strict config "
            "refuses it)",
            {"kind": type(value).__name__},
        )
    return value


ExactFloat = Annotated[float, BeforeValidator(_exact_float)]

# transformers.activations.ACT2FN keys (5.24); a test checks this list against transformers.
HIDDEN_ACTS: tuple[str, ...] = (
    "gelu",
    "gelu_10",
    "gelu_accurate",
    "gelu_fast",
    "gelu_new",
    "gelu_python",
    "gelu_python_tanh",
    "gelu_pytorch_tanh",
    "hardswish",
    "laplace",
    "leaky_relu",
    "linear",
    "mish",
    "prelu",
    "quick_gelu",
    "relu",
    "relu2",
    "relu6",
    "sigmoid",
    "silu",
    "sqrtsoftplus",
    "swish",
    "tanh",
    "xielu",
)

# PretrainedConfig keys a hub config.json carries that say nothing about dimensions. Accepted
# silently and kept in ``PerceiverConfig.base_keys``.
BASE_KEYS: frozenset[str] = frozenset(
    {
        "_name_or_path",
        "add_cross_attention",
        "bad_words_ids",
        "begin_suppress_tokens",
        "bos_token_id",
        "chunk_size_feed_forward",
        "cross_attention_hidden_size",
        "decoder_start_token_id",
        "diversity_penalty",
        "do_sample",
        "early_stopping",
        "encoder_no_repeat_ngram_size",
        "eos_token_id",
        "exponential_decay_length_penalty",
        "finetuning_task",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "is_decoder",
        "is_encoder_decoder",
        "label2id",
        "length_penalty",
        "max_length",
        "min_length",
        "no_repeat_ngram_size",
        "num_beam_groups",
        "num_beams",
        "num_return_sequences",
        "output_attentions",
        "output_hidden_states",
        "output_scores",
        "pad_token_id",
        "prefix",
        "pruned_heads",
        "remove_invalid_values",
        "repetition_penalty",
        "return_dict",
        "return_dict_in_generate",
        "sep_token_id",
        "suppress_tokens",
        "task_specific_params",
        "temperature",
        "tf_legacy_loss",
        "tie_encoder_decoder",
        "tie_word_embeddings",
        "tokenizer_class",
        "top_k",
        "top_p",
        "torchscript",
        "typical_p",
        "use_bfloat16",
        "use_cache",
    }
)

# Keys older hub configs carry that transformers 5 ignores; named so the warning can say why.
LEGACY_KEYS: dict[str, str] = {
    "hidden_dropout_prob": (
        "transformers' Perceiver has no hidden dropout; only attention_probs_dropout_prob is used"
    ),
    "seq_len": "older revisions' name for max_position_embeddings; transformers 5 ignores it",
}


class PerceiverConfig(BaseModel):
    """transformers' ``PerceiverConfig`` fields (same names, types, defaults), frozen.

    Plus: the ``PretrainedConfig`` keys that matter here (``architectures``, ``id2label``,
    ``num_labels``, ``problem_type``, ``chunk_size_feed_forward``, ``dtype``), and optional
    fields for the values transformers hardcodes in the model classes (``decoder_*``,
    ``preprocessor_*``, ``fourier_*``): ``None`` means "as the class hardcodes it".
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # --- PerceiverConfig (configuration_perceiver.py), transformers' defaults -----------------
    num_latents: PositiveInt = 256
    d_latents: PositiveInt = 1280
    d_model: PositiveInt = 768
    # 0 is legal for these two in transformers: an encoder of one cross-attention only.
    num_blocks: NonNegativeInt = 1
    num_self_attends_per_block: NonNegativeInt = 26
    num_self_attention_heads: PositiveInt = 8
    num_cross_attention_heads: PositiveInt = 8
    qk_channels: PositiveInt | None = None
    v_channels: PositiveInt | None = None
    cross_attention_shape_for_attention: str = "kv"
    self_attention_widening_factor: PositiveInt = 1
    cross_attention_widening_factor: PositiveInt = 1
    hidden_act: str = "gelu"
    # transformers' @strict dataclass (configuration_perceiver.py L98-100) types these as
    # ``float | int``, ``float`` and ``float``: a string or a bool is refused, and an int only
    # for the dropout probability (huggingface_hub.dataclasses checks isinstance(v, float)).
    attention_probs_dropout_prob: (
        Annotated[StrictFloat, Field(ge=0.0, le=1.0)] | Annotated[StrictInt, Field(ge=0, le=1)]
    ) = 0.1
    initializer_range: ExactFloat = 0.02
    layer_norm_eps: ExactFloat = 1e-12
    use_query_residual: StrictBool = True
    vocab_size: PositiveInt = 262
    max_position_embeddings: PositiveInt = 2048
    image_size: PositiveInt | tuple[PositiveInt, ...] = 56
    train_size: tuple[PositiveInt, ...] = (368, 496)
    num_frames: PositiveInt = 16
    audio_samples_per_frame: PositiveInt = 1920
    samples_per_patch: PositiveInt = 16
    output_shape: tuple[PositiveInt, ...] = (1, 16, 224, 224)
    output_num_channels: PositiveInt = 512
    label_trainable_num_channels: PositiveInt = Field(
        default=1024, alias="_label_trainable_num_channels"
    )

    # --- PretrainedConfig keys that matter ---------------------------------------------------
    model_type: str = "perceiver"
    architectures: tuple[str, ...] | None = None
    id2label: FrozenLabels | None = None
    num_labels: PositiveInt = 2
    """As given; else ``len(id2label)`` (keys counted after int conversion), else 2 (as
    transformers 5.24's PreTrainedConfig computes it)."""
    problem_type: (
        Literal["regression", "single_label_classification", "multi_label_classification"] | None
    ) = None
    chunk_size_feed_forward: NonNegativeInt = 0
    dtype: str | None = None
    transformers_version: str | None = None
    base_keys: FrozenJsonObject = Field(default_factory=FrozenDict)
    """Other PretrainedConfig keys of the input, kept as given; they set no dimension."""
    unknown_keys: FrozenJsonObject = Field(default_factory=FrozenDict)
    """Keys no PerceiverConfig knows; transformers would keep them as attributes. Warned about."""
    duplicate_keys: tuple[str, ...] = ()
    """Keys the JSON file gave more than once (the last value is used); warned about."""

    # --- values transformers hardcodes in the model classes; None = as the class does --------
    decoder_num_heads: PositiveInt | None = None
    """Heads of the decoder cross-attention. transformers: 8 (MaskedLM), 1 (all other decoders)."""
    decoder_qk_channels: PositiveInt | None = None
    """MaskedLM: 8 * 32 = 256. Other decoders: derived by cross_attention_shape_for_attention."""
    decoder_v_channels: PositiveInt | None = None
    """MaskedLM: d_model. Other decoders: = the decoder's qk_channels."""
    decoder_widening_factor: PositiveInt | None = None
    """MLP widening of the decoder cross-attention layer. transformers: 1 for every class."""
    decoder_use_query_residual: StrictBool | None = None
    """MaskedLM False, classification decoders True, optical flow False, multimodal False."""
    decoder_final_project: StrictBool | None = None
    """MaskedLM only: False in transformers. True adds final_layer Linear(d_model, d_latents)."""
    preprocessor_out_channels: PositiveInt | None = None
    """Learned: conv1x1 width 256; ConvProcessing: conv stem width 64; OpticalFlow: 64."""
    preprocessor_project_pos_dim: PositiveInt | None = None
    """Learned: positions_projection width 256."""
    preprocessor_position_num_channels: PositiveInt | None = None
    """Learned: trainable position encoding width 256."""
    fourier_num_bands: PositiveInt | None = None
    """Fourier, ConvProcessing, OpticalFlow preprocessors (and flow decoder): 64 bands."""
    fourier_max_resolution: tuple[PositiveInt, ...] | None = None
    """Fourier (224, 224); ConvProcessing (56, 56); OpticalFlow train_size. Sets values only."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> PerceiverConfig:
        """Validate a config dict (a hub ``config.json`` as loaded by ``json.load``).

        Raises :class:`ConfigError` with every problem found. Unknown keys are kept in
        ``unknown_keys`` and warned about by :func:`perceiver_calc.resolve.resolve`; with
        ``strict=True`` they are errors here.
        """
        return _from_dict(data, strict=strict)

    @property
    def hardcoded_overrides(self) -> dict[str, Any]:
        """The class-hardcoded fields this config sets (not None)."""
        return {
            name: getattr(self, name)
            for name in HARDCODED_FIELDS
            if getattr(self, name) is not None
        }


HF_FIELDS: tuple[str, ...] = (
    "num_latents",
    "d_latents",
    "d_model",
    "num_blocks",
    "num_self_attends_per_block",
    "num_self_attention_heads",
    "num_cross_attention_heads",
    "qk_channels",
    "v_channels",
    "cross_attention_shape_for_attention",
    "self_attention_widening_factor",
    "cross_attention_widening_factor",
    "hidden_act",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "use_query_residual",
    "vocab_size",
    "max_position_embeddings",
    "image_size",
    "train_size",
    "num_frames",
    "audio_samples_per_frame",
    "samples_per_patch",
    "output_shape",
    "output_num_channels",
    "_label_trainable_num_channels",
)
"""transformers' PerceiverConfig fields, in its order (the alias for the private one)."""

HARDCODED_FIELDS: tuple[str, ...] = (
    "decoder_num_heads",
    "decoder_qk_channels",
    "decoder_v_channels",
    "decoder_widening_factor",
    "decoder_use_query_residual",
    "decoder_final_project",
    "preprocessor_out_channels",
    "preprocessor_project_pos_dim",
    "preprocessor_position_num_channels",
    "fourier_num_bands",
    "fourier_max_resolution",
)

_PRETRAINED_FIELDS = (
    "model_type",
    "architectures",
    "id2label",
    "num_labels",
    "problem_type",
    "chunk_size_feed_forward",
    "dtype",
    "transformers_version",
)
_KNOWN_KEYS: frozenset[str] = frozenset(HF_FIELDS + HARDCODED_FIELDS + _PRETRAINED_FIELDS)


def _did_you_mean(key: str) -> str:
    import difflib  # only when a key is unknown: not on a clean config's path

    close = difflib.get_close_matches(key, sorted(_KNOWN_KEYS), n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else "remove it, or check its spelling"


def unknown_key_finding(key: str, value: Any, severity: Literal["error", "warning"]) -> Finding:
    if key in LEGACY_KEYS:
        return Finding(
            severity=severity,
            code="legacy_key",
            fields=(key,),
            values={key: _echo(value)},
            module=None,
            rule=f"{key} ({_short(value)}) is not read by transformers: {LEGACY_KEYS[key]}",
            fix="remove it",
        )
    return Finding(
        severity=severity,
        code="unknown_key",
        fields=(key,),
        values={key: _echo(value)},
        module=None,
        rule=f"{key} ({_short(value)}) is not a PerceiverConfig field",
        fix=_did_you_mean(key),
    )


def duplicate_key_finding(key: str, severity: Literal["error", "warning"]) -> Finding:
    return Finding(
        severity=severity,
        code="duplicate_key",
        fields=(key,),
        values={},
        module=None,
        rule=f"{key} is given more than once in the JSON object; the last value is used",
        fix=f"keep one {key} entry",
    )


ECHO_LIMIT = 200
"""Longest repr of a user value a Finding keeps as it is; longer ones are kept as a cut repr."""


def _echo(value: Any) -> Any:
    """``value`` for ``Finding.values``: as given (thawed) when its repr is at most ECHO_LIMIT
    characters, else its repr cut to that length, so that a 10 MB string under an unknown key
    is not written back in full by ``report --format json``."""
    plain = thaw(value)
    text = short_repr(plain, ECHO_LIMIT + 1)
    return plain if len(text) <= ECHO_LIMIT else text[: ECHO_LIMIT - 3] + "..."


def _short(value: Any) -> str:
    # thaw: an unknown key's list is shown as the user wrote it ([1, 2]), not as frozen (1, 2)
    return short_repr(thaw(value), 40)


_PYDANTIC_FIX: dict[str, str] = {
    "int_type": "use a whole number",
    "int_parsing": "use a whole number",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "bool_type": "use true or false",
    "string_type": "use a string",
    "float_type": "use a number",
    "float_parsing": "use a number",
    "tuple_type": "use a list of whole numbers",
    "literal_error": "use one of the listed values",
    "dict_type": "use a JSON object",
    "extra_forbidden": "remove it",
    "finite_number": "use a finite number",
}


def _validation_findings(err: ValidationError) -> list[Finding]:
    findings: list[Finding] = []
    seen: set[str] = set()
    for e in err.errors(include_url=False):
        loc = e["loc"]
        # Union members produce one error each (int | tuple ...); report the field once.
        field = str(loc[0]) if loc else "<config>"
        if field in seen:
            continue
        seen.add(field)
        path = ".".join(str(p) for p in loc if not str(p).startswith(("int", "tuple", "constr")))
        value = e.get("input")
        msg = e["msg"]
        if field in ("image_size",) and len(loc) > 1:
            msg = "must be a positive whole number or a list of them"
        findings.append(
            Finding(
                severity="error",
                code="type",
                fields=(field,),
                values={field: _echo(value)},
                module=None,
                rule=f"{path} ({_short(value)}): {msg[0].lower()}{msg[1:]}",
                fix=_PYDANTIC_FIX.get(
                    e["type"], "see docs/config-reference.md for the allowed values"
                ),
            )
        )
    return findings


def _from_dict(data: Mapping[str, Any], *, strict: bool) -> PerceiverConfig:
    if not isinstance(data, Mapping):
        raise InputError(f"a config must be a JSON object, got {type(data).__name__}")
    fields: dict[str, Any] = {}
    base: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    findings: list[Finding] = []
    duplicates = tuple(data.get(DUPLICATE_KEYS, ()))
    if strict:
        # json.loads keeps the last value of a key given twice; a silent choice between two
        # values the user wrote is a likely mistake (a warning otherwise, from resolve).
        findings += [duplicate_key_finding(key, "error") for key in duplicates]
    for key, value in data.items():
        if not isinstance(key, str):
            # JSON keys are strings, and transformers takes the config as **kwargs; str() of
            # an arbitrary key may itself fail (an int of 5,000 digits).
            raise InputError(
                f"config keys must be strings; got the {type(key).__name__} key {_short(key)}"
            )
        if key == DUPLICATE_KEYS:
            continue
        if key in _KNOWN_KEYS:
            fields[key] = value
        elif key == "torch_dtype":
            # transformers 5 renamed torch_dtype to dtype and keeps dtype when both are given.
            fields.setdefault("dtype", value)
        elif key in BASE_KEYS:
            base[key] = value
        else:
            unknown[key] = value
    if strict:
        findings += [unknown_key_finding(k, v, "error") for k, v in unknown.items()]

    # num_labels (transformers 5.24 configuration_utils.py, PreTrainedConfig.__post_init__ and
    # the num_labels setter): id2label's keys are converted to int first (so "0" and "00" are one
    # label); a num_labels given wins and the map is rebuilt as LABEL_0..; without it,
    # num_labels is len(id2label); with neither, 2.
    id2label = fields.get("id2label")
    num_labels_given = fields.get("num_labels") is not None
    if isinstance(id2label, Mapping):
        try:
            id2label = {int(k): v for k, v in id2label.items()}
            fields["id2label"] = id2label
        except Exception:  # TypeError, ValueError, OverflowError (inf), a key's own __int__
            findings.append(
                Finding(
                    severity="error",
                    code="type",
                    fields=("id2label",),
                    values={"id2label": _short(id2label)},
                    module=None,
                    rule="id2label keys must be whole numbers (as strings in JSON)",
                    fix='write it as {"0": "label0", "1": "label1", ...}',
                )
            )
            fields.pop("id2label")
        else:
            if num_labels_given:
                pass  # transformers' num_labels setter rebuilds the map from num_labels
            elif len(id2label) == 0:
                findings.append(
                    Finding(
                        severity="error",
                        code="empty_id2label",
                        fields=("id2label",),
                        values={"id2label": {}},
                        module=None,
                        rule="id2label ({}) gives 0 labels; classification needs num_labels >= 1",
                        fix="list the labels, or remove id2label and set num_labels",
                    )
                )
            else:
                fields["num_labels"] = len(id2label)
    for key in ("architectures", "train_size", "output_shape", "fourier_max_resolution"):
        if isinstance(fields.get(key), list):
            fields[key] = tuple(fields[key])
    image_size = fields.get("image_size")
    if isinstance(image_size, list):
        fields["image_size"] = tuple(image_size)
    elif isinstance(image_size, tuple) and len(image_size) != 2:
        # transformers types image_size ``int | list[int] | tuple[int, int]``
        # (configuration_perceiver.py L104, checked by huggingface_hub's @strict): a list of any
        # length is taken, a tuple only of two. JSON has no tuples; a library caller can pass one.
        findings.append(
            Finding(
                severity="error",
                code="type",
                fields=("image_size",),
                values={"image_size": _echo(image_size)},
                module=None,
                rule=(
                    f"image_size (a tuple of {len(image_size)} items): a tuple must have exactly "
                    "2 items "
                    "(transformers' type is int | list[int] | tuple[int, int])"
                ),
                fix="give an int, a list, or a tuple of 2 (height, width)",
            )
        )
        del fields["image_size"]

    try:
        config = PerceiverConfig.model_validate(
            {
                **fields,
                "base_keys": base,
                "unknown_keys": unknown,
                "duplicate_keys": () if strict else duplicates,
            }
        )
    except ValidationError as err:
        findings += _validation_findings(err)
        bad = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
        partial: PerceiverConfig | None
        try:
            partial = PerceiverConfig.model_validate(
                {k: v for k, v in fields.items() if k not in bad}
                | {"base_keys": base, "unknown_keys": unknown}
            )
        except ValidationError:
            partial = None
        # Unknown keys are warned about with the errors: a typo often explains them.
        findings += [unknown_key_finding(k, v, "warning") for k, v in unknown.items() if not strict]
        raise ConfigError(findings, partial) from None
    if findings:
        raise ConfigError(findings)
    if config.problem_type == "single_label_classification" and config.num_labels == 1:
        raise ConfigError(
            [
                Finding(
                    severity="error",
                    code="single_label_needs_two",
                    fields=("problem_type", "num_labels"),
                    values={"problem_type": config.problem_type, "num_labels": 1},
                    module=None,
                    rule='problem_type "single_label_classification" requires num_labels > 1 (1)',
                    fix='use num_labels=2 for binary classification, or problem_type "regression"',
                )
            ]
        )
    for name in ("initializer_range", "layer_norm_eps"):
        if not math.isfinite(getattr(config, name)):
            raise ConfigError(
                [
                    Finding(
                        severity="error",
                        code="not_finite",
                        fields=(name,),
                        values={name: getattr(config, name)},
                        module=None,
                        rule=f"{name} ({getattr(config, name)}) must be a finite number",
                        fix="use a finite number",
                    )
                ]
            )
    _check_initializer_range(config)
    return config


def _check_initializer_range(config: PerceiverConfig) -> None:
    """transformers' _init_weights draws every Linear/Embedding/latent weight with
    ``normal_(mean=0.0, std=initializer_range)`` (modeling_perceiver.py, PerceiverPreTrainedModel),
    and torch refuses a negative std ("normal expects std >= 0.0"). 0 is legal (all zeros)."""
    if config.initializer_range < 0:
        raise ConfigError(
            [
                Finding(
                    severity="error",
                    code="initializer_range_negative",
                    fields=("initializer_range",),
                    values={"initializer_range": config.initializer_range},
                    module=None,
                    rule=f"initializer_range ({config.initializer_range}) must be >= 0: it is the "
                    "std of transformers' normal_ weight init, which raises for a negative std",
                    fix="use a small positive value such as 0.02 (the default)",
                )
            ]
        )


def _from_hf_object(obj: Any) -> dict[str, Any]:
    """A ``transformers.PerceiverConfig`` (or any PretrainedConfig) as a plain dict.

    Reads the object only; transformers is imported by whoever built it, not here.
    """
    to_dict = getattr(obj, "to_dict", None)
    if not callable(to_dict):
        raise InputError(f"cannot read a config from {type(obj).__name__}: no to_dict()")
    data = dict(to_dict())
    # PretrainedConfig.to_dict() may hold torch.dtype objects; keep their names.
    if "dtype" in data and data["dtype"] is not None and not isinstance(data["dtype"], str):
        data["dtype"] = str(data["dtype"]).removeprefix("torch.")
    return data


# Limits on what a config file may be. A hub config.json is a few KB; these bounds keep a
# hostile or mistaken input (a device file, a FIFO, a multi-GB log) from hanging the program or
# exhausting memory, and every refusal names the limit.
MAX_CONFIG_BYTES = 16 * 2**20
"""Largest config file read (16 MiB; deepmind's configs are under 10 KB)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of JSON arrays/objects accepted (a PerceiverConfig needs 3)."""
MAX_NUMBER_DIGITS = 100
"""Longest number literal accepted (digits); int64 needs 19."""


def _os_error(p: Path, err: OSError) -> InputError:
    """One message per filesystem failure, naming the path and what to do."""
    reasons = {
        errno.ENOENT: "no such file or folder",
        errno.ENOTDIR: "a component of the path is not a folder",
        errno.EACCES: "permission denied; check the file's permissions",
        errno.EPERM: "operation not permitted; check the file's permissions",
        errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
        errno.ENAMETOOLONG: "file name too long",
        errno.EISDIR: "is a folder",
    }
    reason = reasons.get(err.errno or 0, err.strerror or type(err).__name__)
    return InputError(f"{_shown(p)}: cannot read: {reason}")


def _shown(p: Path) -> str:
    """The path as given, shortened when absurdly long (ENAMETOOLONG inputs)."""
    text = str(p)
    return text if len(text) <= 200 else f"{text[:100]}...{text[-60:]} ({len(text)} characters)"


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before parsing it (json's C parser
    recurses per level; a 10^5-deep file would hit RecursionError or worse)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ValueError(
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels; a config needs 3"
                )
        elif ch in "]}":
            depth -= 1


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(
            f"a number with {len(text.lstrip('-'))} digits (limit {MAX_NUMBER_DIGITS}); "
            "use a value that fits the model"
        )
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(
            f"a number written with {len(text)} characters (limit {MAX_NUMBER_DIGITS})"
        )
    return float(text)


def _pairs(duplicates: list[str]) -> Any:
    """object_pairs_hook: build the dict, remembering keys given twice (the last one wins,
    as in json.loads; reported as a finding by load_config)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    return hook


DUPLICATE_KEYS = "__perceiver_calc_duplicate_keys__"
"""Key under which read_json passes the duplicated top-level keys to load_config."""


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a config.json, or the config.json inside a folder. Raises :class:`InputError`.

    Only regular files are read (a FIFO, a device such as /dev/zero, a socket are refused
    without being opened for reading), at most MAX_CONFIG_BYTES, nested at most
    MAX_JSON_DEPTH levels, numbers at most MAX_NUMBER_DIGITS long.
    """
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            inner = p / "config.json"
            try:
                st = inner.stat()
            except FileNotFoundError:
                raise InputError(f"{_shown(p)}: folder has no config.json") from None
            p = inner
    except InputError:
        raise
    except OSError as err:
        raise _os_error(p, err) from None
    except ValueError as err:  # embedded NUL byte in the path
        raise InputError(f"{_shown(p)}: not a valid path ({err})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise InputError(f"{_shown(p)}: is {kind}; give a config.json file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise InputError(
            f"{_shown(p)}: file is {st.st_size:,} bytes, over the {MAX_CONFIG_BYTES:,}-byte "
            "limit for a config; is this a config.json?"
        )
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after stat, open does not block.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise _os_error(p, err) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InputError(f"{_shown(p)}: over the {MAX_CONFIG_BYTES:,}-byte limit for a config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{_shown(p)}: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    if not text.strip():
        raise InputError(f"{_shown(p)}: file is empty; expected a JSON object")
    duplicates: list[str] = []
    try:
        _check_depth(text)
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_pairs(duplicates),
        )
    except json.JSONDecodeError as err:
        raise InputError(
            f"{_shown(p)}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None
    except ValueError as err:
        raise InputError(f"{_shown(p)}: {err}") from None
    except RecursionError:
        raise InputError(f"{_shown(p)}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{_shown(p)}: expected a JSON object, got {type(data).__name__}")
    if duplicates:
        data[DUPLICATE_KEYS] = tuple(dict.fromkeys(duplicates))
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; use a finite number")


def load_config(
    source: str | Path | Mapping[str, Any] | Any, *, strict: bool = False
) -> PerceiverConfig:
    """Load and validate a config from a path (file or folder), a dict, or a transformers config.

    Raises :class:`~perceiver_calc.errors.InputError` when the input cannot be read and
    :class:`~perceiver_calc.errors.ConfigError` (all problems at once) when it is invalid.
    """
    if isinstance(source, PerceiverConfig):
        return source
    if isinstance(source, (str, Path)):
        return _from_dict(read_json(source), strict=strict)
    if isinstance(source, Mapping):
        return _from_dict(source, strict=strict)
    return _from_dict(_from_hf_object(source), strict=strict)
