"""Ground truth from Hugging Face transformers' real Perceiver models.

Everything the calculator (``perceiver_calc``) computes is checked against what this module
measures on transformers' own models. Nothing here uses our formulas.

What each helper measures, and how
----------------------------------
* Parameters / buffers: ``named_parameters()`` / ``named_buffers()`` of a model built under
  ``torch.device("meta")`` (no memory, no init cost). ``named_parameters`` removes duplicates
  as torch does; the masked-LM output projection is tied by *call* (``embedding_decoder`` reads
  ``perceiver.input_preprocessor.embeddings.weight``), so it never appears twice anyway.
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` around a forward (and optionally a
  backward) of a meta-device model. FlopCounterMode counts matmul-like ops only (``mm``,
  ``addmm``, ``bmm``, ``convolution``, SDPA, ...) at 2 FLOPs per multiply-add; elementwise ops
  count 0.
* Accept / reject: :func:`hf_outcome` builds a small model on CPU and runs a real forward.
* Saved activations: :func:`hf_saved_activations` runs a training forward on a real device under
  ``torch.autograd.graph.saved_tensors_hooks`` and sums the bytes of the unique storages saved.

FlopCounterMode facts (torch 2.13, found while writing this module)
-------------------------------------------------------------------
* Module keys are ``"<RootClassName>.<attribute path>"`` (e.g.
  ``"PerceiverForMaskedLM.perceiver.encoder.self_attends.0.attention.self"``), plus the root
  key ``"<RootClassName>"`` and ``"Global"``. :func:`hf_flops` strips the root class name so the
  keys are transformers' module paths as ``named_modules()`` spells them; the root becomes ``""``
  and ``"Global"`` is dropped (it equals the total, see ``FlopResult.by_op``).
* Counts are *inclusive*: a parent's count contains its children's. Sum leaf modules, or take a
  single level, never sum across levels.
* A module called several times accumulates under one key: ``encoder.self_attends.i`` holds
  ``num_blocks`` applications of layer i (its weights are shared across blocks).
* Only modules that issued counted ops have a key: layer norms, ``perceiver.embeddings``,
  Fourier encodings, dropout etc. (0 FLOPs) are absent, so read missing keys as 0.
* Ops issued outside any submodule are charged only to the root and ``Global``; in Perceiver
  that happens for nothing matmul-like (the tied output matmul is inside ``embedding_decoder``),
  so the root's direct children, and ``perceiver``'s, sum exactly to their parent (checked for
  all 8 classes in test_hf_truth.py). Inside a layer that is not so: ``attention.self`` issues
  its score and context ``bmm`` itself, beyond its ``query``/``key``/``value`` children.
* Backward FLOPs land on the same keys as forward FLOPs (no "(backward)" suffix): ModuleTracker
  re-enters a module when the gradient of its outputs arrives and leaves it when the gradients
  of its tensor inputs are done. A module whose inputs do not require grad (e.g.
  ``perceiver.embeddings``, called with an int; ``perceiver.input_preprocessor`` on token ids)
  is never left during backward, so per-module *backward* attribution after that point is
  approximate. Totals and ``by_op`` are exact.

What cannot run on meta
-----------------------
* ``PerceiverModel.forward`` always builds a ``(B, M)`` all-ones attention mask and passes it
  through ``create_bidirectional_mask``, which calls ``padding_mask.all()`` -> ``.item()``: a
  data-dependent op that fails on meta. With no padding that function returns ``None`` (the
  encoder then adds no mask), so on meta :func:`hf_flops` substitutes a function returning
  ``None``. This is exact for our workloads, which never pass a padding mask.
* Under ``torch.no_grad()`` the ModuleTracker inside FlopCounterMode asserts ("Expected
  gradient function to be set") on ``perceiver.embeddings`` (a view of a parameter made under
  no_grad still reports ``requires_grad``). Forward-only counting therefore runs with grad mode
  on and all parameters set to ``requires_grad=False`` instead.
* With those two measures, all 8 classes run forward and backward on meta. If a future
  transformers breaks that, :func:`hf_flops` falls back to a CPU model (tiny configs only) and
  reports ``FlopResult.device == "cpu"``.
* Data-dependent *checks* (token ids >= vocab_size, index bounds) cannot fail on meta, so
  accept/reject questions go to :func:`hf_outcome` on CPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from unittest import mock

import torch
import transformers
import transformers.models.perceiver.modeling_perceiver as modeling_perceiver
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "LABEL_CLASSES",
    "MODEL_CLASSES",
    "FlopResult",
    "Outcome",
    "SavedActivations",
    "Workload",
    "build_hf_model",
    "hf_buffer_shapes",
    "hf_config",
    "hf_flops",
    "hf_outcome",
    "hf_param_count",
    "hf_param_shapes",
    "hf_saved_activation_bytes",
    "hf_saved_activations",
    "make_inputs",
    "resolve_workload",
]

MODEL_CLASSES: tuple[str, ...] = (
    "PerceiverModel",
    "PerceiverForMaskedLM",
    "PerceiverForSequenceClassification",
    "PerceiverForImageClassificationLearned",
    "PerceiverForImageClassificationFourier",
    "PerceiverForImageClassificationConvProcessing",
    "PerceiverForOpticalFlow",
    "PerceiverForMultimodalAutoencoding",
)

# Classes whose forward computes a loss from `labels`. OpticalFlow and MultimodalAutoencoding
# accept the argument but raise NotImplementedError; PerceiverModel has no `labels` argument
# (its **kwargs would swallow it silently).
LABEL_CLASSES: frozenset[str] = frozenset(
    {
        "PerceiverForMaskedLM",
        "PerceiverForSequenceClassification",
        "PerceiverForImageClassificationLearned",
        "PerceiverForImageClassificationFourier",
        "PerceiverForImageClassificationConvProcessing",
    }
)

_TEXT_CLASSES = frozenset({"PerceiverForMaskedLM", "PerceiverForSequenceClassification"})
_MULTIMODAL = "PerceiverForMultimodalAutoencoding"
_IMAGE_CLASSES = frozenset(
    {
        "PerceiverForImageClassificationLearned",
        "PerceiverForImageClassificationFourier",
        "PerceiverForImageClassificationConvProcessing",
    }
)

# Defaults of the workload fields that do not come from the config (see `Workload`).
# They match perceiver_calc.workload's defaults, so one set of Workload arguments means the same
# inputs on both sides: 224x224 is the DeepMind checkpoints' ImageNet size, and transformers'
# multimodal example decodes a video in 128 chunks (1/128 of the image and audio queries each).
_DEFAULT_IMAGE_SIDE = 224
_MULTIMODAL_CHUNKS = 128

# Refuse to build bigger models than this on CPU (hf_outcome / saved activations / CPU FLOPs).
_CPU_PARAM_LIMIT = 50_000_000


# --------------------------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What is fed to the model. ``None`` fields take a class- and config-dependent default.

    :func:`resolve_workload` fills every ``None``; the defaults are:

    These are the same names and defaults as ``perceiver_calc.workload.Workload``:

    * ``seq_len`` (M): text classes and bare ``PerceiverModel`` (inputs of width ``d_model``):
      ``max_position_embeddings``. The masked-LM decoder always emits
      ``max_position_embeddings`` positions, so MaskedLM labels have that many entries (-100
      past the M inputs); M > max_position_embeddings fails for text classes.
    * ``image_size`` (H, W): Learned: ``(image_size, image_size)`` (H·W must equal
      ``image_size**2``); Fourier and Conv: (224, 224) (Conv needs H, W >= 5: conv 7x7/2 then
      maxpool 3/2, 224 -> 112 -> 55); OpticalFlow: ``train_size`` (H·W must equal its product);
      Multimodal: ``(image_size, image_size)`` of each video frame (multiples of 4). Pass a
      small size explicitly for CPU runs of the Fourier / Conv classes.
    * ``num_frames`` (multimodal): ``config.num_frames``.
    * ``audio_samples`` (multimodal): ``num_frames * audio_samples_per_frame`` (must be a
      multiple of ``samples_per_patch``).
    * ``subsampled_image_points`` / ``subsampled_audio_points`` (multimodal decoder queries):
      ``max(1, prod(output_shape[1:4]) // 128)`` and
      ``max(1, (num_frames·audio_samples_per_frame // samples_per_patch) // 128)``; the inputs
      are ``torch.arange(n)`` (the first n flat indices), as in transformers' example.

    ``training``: model.train() (dropout active) and, for FLOPs/activations, a backward.
    ``with_labels``: pass ``labels`` (only meaningful for :data:`LABEL_CLASSES`).
    """

    batch_size: int = 1
    seq_len: int | None = None
    image_size: tuple[int, int] | None = None
    num_frames: int | None = None
    audio_samples: int | None = None
    subsampled_image_points: int | None = None
    subsampled_audio_points: int | None = None
    training: bool = False
    with_labels: bool = False


def _cfg(config: Mapping[str, Any], key: str) -> Any:
    """A config field, falling back to PerceiverConfig's default."""
    if key in config:
        return config[key]
    return getattr(transformers.PerceiverConfig(), key)


def resolve_workload(model_class: str, config: Mapping[str, Any], workload: Workload) -> Workload:
    """Return ``workload`` with every ``None`` field replaced by its documented default.

    Fields irrelevant to the class stay ``None``.
    """
    _check_class(model_class)
    w = workload
    if model_class == "PerceiverModel" or model_class in _TEXT_CLASSES:
        seq = w.seq_len if w.seq_len is not None else int(_cfg(config, "max_position_embeddings"))
        return replace(w, seq_len=seq)
    side = _cfg(config, "image_size")
    side = side if isinstance(side, int) else _DEFAULT_IMAGE_SIDE
    if w.image_size is not None:
        image = w.image_size
    elif model_class in ("PerceiverForImageClassificationLearned", _MULTIMODAL):
        image = (side, side)
    elif model_class == "PerceiverForOpticalFlow":
        ts = tuple(_cfg(config, "train_size"))
        image = (int(ts[0]), int(ts[1])) if len(ts) >= 2 else (int(ts[0]), 1)
    else:  # Fourier, Conv
        image = (_DEFAULT_IMAGE_SIDE, _DEFAULT_IMAGE_SIDE)
    if model_class != _MULTIMODAL:
        return replace(w, image_size=image)
    frames = w.num_frames if w.num_frames is not None else int(_cfg(config, "num_frames"))
    n_audio_config = int(_cfg(config, "num_frames")) * int(_cfg(config, "audio_samples_per_frame"))
    audio = w.audio_samples if w.audio_samples is not None else n_audio_config
    out_shape = tuple(_cfg(config, "output_shape"))
    n_image_queries = math.prod(out_shape[1:4]) if len(out_shape) == 4 else 1
    n_audio_queries = n_audio_config // max(int(_cfg(config, "samples_per_patch")), 1)
    image_points = w.subsampled_image_points
    audio_points = w.subsampled_audio_points
    return replace(
        w,
        image_size=image,
        num_frames=frames,
        audio_samples=audio,
        subsampled_image_points=(
            image_points
            if image_points is not None
            else max(1, n_image_queries // _MULTIMODAL_CHUNKS)
        ),
        subsampled_audio_points=(
            audio_points
            if audio_points is not None
            else max(1, n_audio_queries // _MULTIMODAL_CHUNKS)
        ),
    )


# --------------------------------------------------------------------------------------------
# Config and model construction
# --------------------------------------------------------------------------------------------


def _check_class(model_class: str) -> None:
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"model_class {model_class!r} is not one of {MODEL_CLASSES}")


def hf_config(config: Mapping[str, Any]) -> transformers.PerceiverConfig:
    """``transformers.PerceiverConfig(**config)``.

    ``config`` holds PerceiverConfig field names (plus base-config keys such as ``num_labels``).
    Lists are passed through as given: ``train_size`` / ``output_shape`` accept lists or tuples.
    Raises what transformers raises (e.g. ``StrictDataclassFieldValidationError`` for a wrong
    type).
    """
    return transformers.PerceiverConfig(**dict(config))


def build_hf_model(
    model_class: str,
    config: Mapping[str, Any],
    device: Literal["meta", "cpu", "cuda"] | str = "meta",
    seed: int = 0,
) -> torch.nn.Module:
    """Build ``transformers.<model_class>(hf_config(config))`` on ``device``.

    On ``"meta"`` the model is built under the ``torch.device("meta")`` context: no memory, no
    weight init, milliseconds even for checkpoint-sized configs. On a real device the weights
    are initialised by transformers' ``post_init`` after ``torch.manual_seed(seed)``.
    Returned in eval mode (as ``from_pretrained`` does); construction errors propagate.
    """
    _check_class(model_class)
    cls = getattr(transformers, model_class)
    hf_cfg = hf_config(config)
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls(hf_cfg)
    model.eval()
    return model  # type: ignore[no-any-return]


def hf_param_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of ``model.named_parameters()`` (duplicates removed, as torch does)."""
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def hf_buffer_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of ``model.named_buffers()``.

    In transformers 5.24 only the conv classifier has buffers: BatchNorm ``running_mean``,
    ``running_var`` (64,) and ``num_batches_tracked`` () in ``perceiver.input_preprocessor``.
    """
    return {name: tuple(b.shape) for name, b in model.named_buffers()}


def hf_param_count(model_class: str, config: Mapping[str, Any]) -> int:
    """Number of unique parameter elements of the meta-built model."""
    model = build_hf_model(model_class, config, device="meta")
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _classification_labels(
    num_labels: int, batch_size: int, device: torch.device | str, gen: torch.Generator | None
) -> torch.Tensor:
    """(B,) int64 class ids; (B,) float32 targets when num_labels == 1 (regression loss)."""
    if num_labels == 1:
        return _randn((batch_size,), device, gen)
    return _randint(num_labels, (batch_size,), device, gen)


def _randn(
    shape: tuple[int, ...], device: torch.device | str, gen: torch.Generator | None
) -> torch.Tensor:
    if torch.device(device).type == "meta":
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen).to(device)


def _randint(
    high: int, shape: tuple[int, ...], device: torch.device | str, gen: torch.Generator | None
) -> torch.Tensor:
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=torch.long, device="meta")
    return torch.randint(0, max(high, 1), shape, generator=gen).to(device)


def make_inputs(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Forward kwargs for ``model_class`` under ``workload`` (``None`` fields resolved).

    Shapes (B = batch_size):

    * PerceiverModel: ``inputs`` (B, M, d_model) float32.
    * MaskedLM / SequenceClassification: ``inputs`` (B, M) int64 token ids < vocab_size.
      Labels: MaskedLM (B, max_position_embeddings) int64: the M tokens' labels, then -100
      (the loss needs one target per decoder position; a tokenizer pads them so);
      SequenceClassification (B,) int64, or (B,) float32 when num_labels == 1 (regression).
    * Image classifiers: ``inputs`` (B, 3, H, W); labels as SequenceClassification.
    * OpticalFlow: ``inputs`` (B, 2, 27, H, W). Labels (B, H, W, 2) float32 if asked for
      (transformers raises NotImplementedError on them).
    * Multimodal: ``inputs = {"image": (B, F, 3, H, W), "audio": (B, A, 1), "label": (B, nl)}``
      and ``subsampled_output_points = {"image": arange(subsampled_image_points), "audio":
      arange(subsampled_audio_points), "label": None}``. Labels (B, nl) if asked for
      (NotImplementedError).

    ``attention_mask`` is always ``None`` (no padding). Tensors are random (seeded) on real
    devices and uninitialised on meta. Raises ValueError for ``with_labels`` on PerceiverModel,
    which has no ``labels`` argument.
    """
    w = resolve_workload(model_class, config, workload)
    gen = None if torch.device(device).type == "meta" else torch.Generator().manual_seed(seed)
    b = w.batch_size
    # As transformers counts it: num_labels if given, else len(id2label) after int(), else 2.
    num_labels = int(hf_config(config).num_labels)
    kwargs: dict[str, Any] = {"attention_mask": None}
    if model_class == "PerceiverModel":
        if w.with_labels:
            raise ValueError("PerceiverModel has no labels argument; use with_labels=False")
        assert w.seq_len is not None
        kwargs["inputs"] = _randn((b, w.seq_len, int(_cfg(config, "d_model"))), device, gen)
        return kwargs
    if model_class in _TEXT_CLASSES:
        assert w.seq_len is not None
        vocab = int(_cfg(config, "vocab_size"))
        kwargs["inputs"] = _randint(vocab, (b, w.seq_len), device, gen)
        if w.with_labels:
            if model_class == "PerceiverForMaskedLM":
                # One label per decoder position (the logits always have
                # max_position_embeddings rows): the M tokens' labels, then -100 (ignored by
                # the loss), as a tokenizer padding to max_length gives them.
                p = int(_cfg(config, "max_position_embeddings"))
                labels = torch.full((b, p), -100, dtype=torch.int64, device=device)
                m = min(w.seq_len, p)
                labels[:, :m] = _randint(vocab, (b, m), device, gen)
                kwargs["labels"] = labels
            else:
                kwargs["labels"] = _classification_labels(num_labels, b, device, gen)
        return kwargs
    assert w.image_size is not None
    h, wd = w.image_size
    if model_class in _IMAGE_CLASSES:
        kwargs["inputs"] = _randn((b, 3, h, wd), device, gen)
        if w.with_labels:
            kwargs["labels"] = _classification_labels(num_labels, b, device, gen)
        return kwargs
    if model_class == "PerceiverForOpticalFlow":
        # (B, T=2 frames, 27 = 3 channels x 3x3 patch, H, W), as PerceiverForOpticalFlow expects.
        kwargs["inputs"] = _randn((b, 2, 27, h, wd), device, gen)
        if w.with_labels:
            kwargs["labels"] = _randn((b, h, wd, 2), device, gen)
        return kwargs
    # PerceiverForMultimodalAutoencoding
    assert w.num_frames is not None and w.audio_samples is not None
    assert w.subsampled_image_points is not None and w.subsampled_audio_points is not None
    kwargs["inputs"] = {
        "image": _randn((b, w.num_frames, 3, h, wd), device, gen),
        "audio": _randn((b, w.audio_samples, 1), device, gen),
        "label": torch.zeros((b, num_labels), device=device),
    }
    kwargs["subsampled_output_points"] = {
        "image": torch.arange(w.subsampled_image_points, device=device),
        "audio": torch.arange(w.subsampled_audio_points, device=device),
        "label": None,
    }
    if w.with_labels:
        kwargs["labels"] = _randint(num_labels, (b,), device, gen)
    return kwargs


# --------------------------------------------------------------------------------------------
# Forward helpers
# --------------------------------------------------------------------------------------------


def _no_padding_mask(**_: Any) -> None:
    """Stand-in for ``create_bidirectional_mask`` on meta: no padding -> no mask (``None``)."""
    return None


@contextlib.contextmanager
def _meta_safe(device: torch.device | str) -> Iterator[None]:
    """Patch the one data-dependent call of the Perceiver forward when running on meta."""
    if torch.device(device).type != "meta":
        yield
        return
    with mock.patch.object(modeling_perceiver, "create_bidirectional_mask", _no_padding_mask):
        yield


def _output_tensors(out: Any) -> list[torch.Tensor]:
    """Tensors whose sum is the stand-in loss: ``logits`` (a dict for multimodal), or
    ``last_hidden_state`` for PerceiverModel (which has no decoder)."""
    logits = getattr(out, "logits", None)
    if logits is None:
        return [out.last_hidden_state]
    if isinstance(logits, dict):
        return [logits[k] for k in sorted(logits)]
    return [logits]


def _loss(out: Any) -> torch.Tensor:
    """``out.loss`` when labels were given, else the sum of all output logits."""
    loss = getattr(out, "loss", None)
    if loss is not None:
        return loss  # type: ignore[no-any-return]
    parts = [t.sum() for t in _output_tensors(out)]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlopResult:
    """FlopCounterMode's count (2 FLOPs per multiply-add, matmul-like ops only).

    * ``total``: all counted FLOPs (forward, plus backward when requested).
    * ``by_module``: inclusive per-module counts keyed by transformers' module path
      (``named_modules()`` spelling; root = ``""``). Repeated calls accumulate under one key;
      modules with no counted op have no key.
    * ``by_op``: e.g. ``{"aten.addmm": ..., "aten.bmm": ..., "aten.mm": ...}``; sums to total.
    * ``by_module_op``: ``{path: {op: flops}}``.
    * ``device``: ``"meta"``, or ``"cpu"`` when the meta forward failed and a CPU model was used.
    """

    total: int
    by_module: dict[str, int]
    by_op: dict[str, int]
    by_module_op: dict[str, dict[str, int]] = field(default_factory=dict)
    device: str = "meta"


def _normalise_key(key: str, root: str) -> str | None:
    if key == "Global":
        return None
    if key == root:
        return ""
    prefix = root + "."
    return key[len(prefix) :] if key.startswith(prefix) else key


def _count_flops(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload,
    backward: bool,
    device: str,
) -> FlopResult:
    model = build_hf_model(model_class, config, device=device)
    if backward:
        model.train()
    else:
        # Grad mode stays on (see module docstring: no_grad trips ModuleTracker); with no
        # parameter requiring grad no autograd graph or backward hooks are made.
        for p in model.parameters():
            p.requires_grad_(False)
    w = replace(workload, with_labels=workload.with_labels and backward)
    kwargs = make_inputs(model_class, config, w, device=device)
    counter = FlopCounterMode(display=False)
    with _meta_safe(device), counter:
        out = model(**kwargs)
        if backward:
            _loss(out).backward()  # type: ignore[no-untyped-call]
    root = type(model).__name__
    by_module: dict[str, int] = {}
    by_module_op: dict[str, dict[str, int]] = {}
    by_op: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        named = {str(op): int(n) for op, n in ops.items()}
        if key == "Global":
            by_op = named
            continue
        path = _normalise_key(key, root)
        assert path is not None
        by_module[path] = sum(named.values())
        by_module_op[path] = named
    return FlopResult(
        total=int(counter.get_total_flops()),
        by_module=by_module,
        by_op=by_op,
        by_module_op=by_module_op,
        device=device,
    )


def hf_flops(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload,
    backward: bool = False,
    device: Literal["meta", "cpu"] | str = "meta",
) -> FlopResult:
    """FlopCounterMode on transformers' model; see :class:`FlopResult` and the module docstring.

    ``backward=False``: one eval-mode forward (no dropout; ``workload.with_labels`` ignored, so
    no loss FLOPs — the loss has no matmul anyway). ``backward=True``: train mode, forward +
    ``loss.backward()`` where loss is ``out.loss`` (if ``workload.with_labels``) or the sum of
    the logits; ``total`` is forward + backward, so backward alone is the difference with
    ``backward=False``. Dropout runs on meta (its mask is not counted: FlopCounterMode counts
    no elementwise ops).

    ``device="meta"`` (default) falls back to a CPU model (and says so in
    ``FlopResult.device``) if the meta forward raises a meta-specific error — only sensible
    for small configs. Any other ``device`` runs there directly (tests use ``"cpu"`` to check
    that meta and CPU counts agree).
    """
    _check_class(model_class)
    if device != "meta":
        return _count_flops(model_class, config, workload, backward, device)
    try:
        return _count_flops(model_class, config, workload, backward, "meta")
    except (RuntimeError, NotImplementedError) as exc:
        if "meta" not in str(exc).lower():
            raise
        if hf_param_count(model_class, config) > _CPU_PARAM_LIMIT:
            raise
        return _count_flops(model_class, config, workload, backward, "cpu")


# --------------------------------------------------------------------------------------------
# Accept / reject oracle
# --------------------------------------------------------------------------------------------

OutcomeKind = Literal["ok", "build_error", "forward_error"]


@dataclass(frozen=True)
class Outcome:
    """What transformers does with a config.

    ``kind``: ``"ok"``; ``"build_error"`` (``PerceiverConfig(**config)`` or the model
    constructor raised — ``exc_type`` tells which, e.g. ``StrictDataclassFieldValidationError``
    for a config-level type error, ``ValueError`` for non-dividing heads); ``"forward_error"``
    (the model built but its eval forward raised). ``exc_type`` is the exception class name,
    ``message`` its text; both empty for ``"ok"``.
    """

    kind: OutcomeKind
    exc_type: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def hf_outcome(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload | None = None,
    max_params: int = _CPU_PARAM_LIMIT,
) -> Outcome:
    """Build ``model_class`` on CPU and run one eval forward under ``torch.no_grad()``.

    The oracle for "the calculator rejects exactly the configs transformers refuses to build or
    that crash in forward". CPU, not meta: only real tensors catch data-dependent failures
    (e.g. an out-of-range position-embedding lookup). Tiny configs only: a ValueError is raised
    (not returned) if the model would have more than ``max_params`` parameters, which is a
    harness misuse, not a verdict. ``workload`` defaults to ``Workload()``; labels are passed
    iff ``workload.with_labels``.
    """
    _check_class(model_class)
    workload = workload or Workload()
    try:
        meta = build_hf_model(model_class, config, device="meta")
    except Exception as exc:  # every construction error is a verdict
        return Outcome("build_error", type(exc).__name__, str(exc))
    n_params = sum(p.numel() for p in meta.parameters())
    if n_params > max_params:
        raise ValueError(f"{model_class} has {n_params} parameters (> {max_params}); too big")
    del meta
    try:
        model = build_hf_model(model_class, config, device="cpu")
    except Exception as exc:  # pragma: no cover - meta built, so CPU should too
        return Outcome("build_error", type(exc).__name__, str(exc))
    kwargs = make_inputs(model_class, config, workload, device="cpu")
    try:
        with torch.no_grad():
            model(**kwargs)
    except Exception as exc:  # every forward error is a verdict
        return Outcome("forward_error", type(exc).__name__, str(exc))
    return Outcome("ok")


# --------------------------------------------------------------------------------------------
# Saved activations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedActivations:
    """Unique storages saved for backward by one training forward (incl. the loss).

    * ``total_bytes``: sum of ``untyped_storage().nbytes()`` over unique storages.
    * ``by_dtype``: bytes per dtype name (``"torch.float32"``, ``"torch.int64"``,
      ``"torch.bool"``); the dtype of the first tensor seen on that storage.
    * ``num_storages``: how many unique storages.
    * ``device``: where it ran (CPU and CUDA differ, see :func:`hf_saved_activations`).
    """

    total_bytes: int
    by_dtype: dict[str, int]
    num_storages: int
    device: str


def hf_saved_activations(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload,
    device: str = "cpu",
    seed: int = 0,
) -> SavedActivations:
    """Measure what autograd saves for backward in a training forward.

    Procedure: build on ``device`` (real memory, so tiny configs on CPU), ``model.train()``
    (dropout active at ``attention_probs_dropout_prob``), forward with ``labels`` when
    ``workload.with_labels`` (only :data:`LABEL_CLASSES`; ValueError otherwise), loss =
    ``out.loss`` or the sum of the logits (PerceiverModel: of ``last_hidden_state``), all under
    ``torch.autograd.graph.saved_tensors_hooks``. No backward is run.

    Counted: every storage that autograd packs, keyed by ``(device, data_ptr)``, once, with its
    full ``nbytes`` — so views of one storage (reshape/transpose/expand of an activation) count
    once, and a view that pins a bigger base storage counts the whole base. Model inputs count
    when some op saves them (token ids for the embedding backward, pixel values for a conv).
    Not counted: storages of parameters and buffers, including their views (the latents
    expanded over the batch, trainable decoder queries, transposed weights saved by ``addmm``);
    storages of 0 bytes. Every packed tensor is kept alive until counting ends, so a freed
    storage's address can never be reused and counted twice.

    CPU vs CUDA: on CPU the dropout mask is saved in the activation dtype (float32, 4 B per
    element); on CUDA the fused ``native_dropout`` saves a ``torch.bool`` mask (1 B). Other
    saved tensors agree in shape and dtype.
    """
    _check_class(model_class)
    if workload.with_labels and model_class not in LABEL_CLASSES:
        raise ValueError(f"{model_class} computes no loss from labels; use with_labels=False")
    model = build_hf_model(model_class, config, device=device, seed=seed)
    model.train()
    kwargs = make_inputs(model_class, config, workload, device=device, seed=seed)
    excluded = {
        (t.device.type, t.untyped_storage().data_ptr())
        for t in [*model.parameters(), *model.buffers()]
    }
    seen: dict[tuple[str, int], tuple[int, str]] = {}
    keep_alive: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        keep_alive.append(t)
        storage = t.untyped_storage()
        key = (t.device.type, storage.data_ptr())
        if key not in excluded and key not in seen and storage.nbytes() > 0:
            seen[key] = (storage.nbytes(), str(t.dtype))
        return t

    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = model(**kwargs)
        loss = _loss(out)
    by_dtype: dict[str, int] = {}
    for nbytes, dtype in seen.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
    del loss, out
    keep_alive.clear()
    return SavedActivations(
        total_bytes=sum(by_dtype.values()),
        by_dtype=dict(sorted(by_dtype.items())),
        num_storages=len(seen),
        device=device,
    )


def hf_saved_activation_bytes(
    model_class: str,
    config: Mapping[str, Any],
    workload: Workload,
    device: str = "cpu",
) -> int:
    """``hf_saved_activations(...).total_bytes``."""
    return hf_saved_activations(model_class, config, workload, device=device).total_bytes
