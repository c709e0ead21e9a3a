"""Exact memory counts from resolved dimensions and a workload (no torch).

Conventions (docs/conventions.md explains each one):

* **Weights**: unique parameters (``params.count_params``) plus buffers (BatchNorm running
  statistics; ``num_batches_tracked`` is int64) at the workload's dtype. Mixed precision
  (``mixed-bf16`` / ``mixed-fp16``) = fp32 master weights (4 B) + the half-precision copy
  autocast makes of every weight and keeps for the step (2 B): 6 B per parameter.
* **Gradients** (training only): one per parameter in the parameters' dtype: 4 B for fp32 and
  mixed precision (autocast trains fp32 parameters), 2 B for pure bf16/fp16.
* **Optimizer states** (training only), in the parameters' dtype (torch.optim's default):
  Adam/AdamW 2 states (exp_avg, exp_avg_sq), SGD with momentum 1, plain SGD 0.
* **Activations kept for backward**: the unique storages autograd saves during one training
  forward (and the loss), parameters and buffers excluded, model inputs included when an op
  saves them — modelled tensor by tensor after transformers' code (see
  :func:`saved_tensors`). ``device="cpu"`` reproduces CPU exactly (checked against
  ``saved_tensors_hooks`` on transformers' model); ``device="cuda"`` differs only in the
  dropout mask, which CUDA's fused ``native_dropout`` stores as ``torch.bool`` (1 B/element)
  where CPU stores a float noise tensor of the activation dtype. For half dtypes LayerNorm
  statistics are counted in fp32 (CUDA's accumulation type). Mixed precision is modelled as
  2 B per floating activation (not verified: autocast also keeps fp32 copies around its
  fp32 ops, LayerNorm and softmax).
* **Activation checkpointing** (every ``PerceiverLayer`` wrapped in ``torch.utils.checkpoint``):
  a layer keeps only its inputs; its internals are recomputed in backward, so the training
  total adds the largest single layer's internals (``recompute_peak_bytes``).
* **Inference peak**: weights + the largest working set of one forward under ``no_grad``:
  the tensors held across the whole pass (model inputs, the preprocessed inputs, which the
  decoder reuses, the encoder output) + the largest module's transient tensors. For a
  ``PerceiverLayer``: its inputs, LayerNorm outputs, Q, K, V, and **two** score tensors
  (B × heads × queries × keys) — eager attention holds the raw and the scaled scores, then the
  scaled scores and the probabilities, at the same time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from perceiver_calc.arith import Int, decides, is_scalar, maximum, positive, total, where
from perceiver_calc.classes import FLOW_PATCH_CHANNELS
from perceiver_calc.modules import (
    BatchNorm2d,
    Conv2d,
    Kind,
    Linear,
    ResolvedModel,
    TiedOutput,
)
from perceiver_calc.params import params_total
from perceiver_calc.workload import Dtype, Workload, lengths, resolved_inputs

__all__ = [
    "MemoryCounts",
    "SavedTensor",
    "bytes_per_element",
    "count_memory",
    "saved_tensors",
]

Device = Literal["cpu", "cuda"]


def bytes_per_element(kind: Kind, dtype: Dtype, device: Device) -> int:
    half = dtype != "fp32"
    if kind == "index":
        return 8
    if kind == "stat":
        return 4  # fp32 on CUDA for half inputs (accumulation type); fp32 anyway in fp32
    if kind == "mask":
        if device == "cuda":
            return 1  # native_dropout's torch.bool mask
        return 2 if half else 4  # CPU: a float noise tensor of the activation dtype
    return 2 if half else 4


_WEIGHT_BYTES: dict[Dtype, int] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "mixed-bf16": 6,
    "mixed-fp16": 6,
}
_STATE_BYTES: dict[Dtype, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "mixed-bf16": 4, "mixed-fp16": 4}
_STATES = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedTensor:
    """One storage autograd keeps for backward."""

    id: str
    """Identity of the storage (views of one storage share it; counted once)."""
    module: str
    """Resolved module path that first saves it (``loss`` for the loss)."""
    elements: int
    kind: Kind
    layer_input: bool = False
    """An input of a PerceiverLayer: kept under activation checkpointing."""
    in_layer: str | None = None
    """The PerceiverLayer application whose internals it is (dropped under checkpointing)."""
    count: int = 1
    """Storages of one shape folded into this entry, one per application of a shared block
    (copies x num_blocks); ``elements`` is their total. Closed form: no loop over layers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryCounts:
    """Bytes (exact integers) for one workload."""

    dtype: Dtype
    mode: Literal["inference", "training"]
    device: Device
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    """Kept for backward by the chosen checkpointing setting (training); 0 in inference."""
    activations_no_checkpointing_bytes: int
    activations_checkpointing_bytes: int
    recompute_peak_bytes: int
    """With checkpointing: the largest layer's internals, live again during its backward."""
    inference_peak_bytes: int
    """Weights + the largest working set of a no-grad forward (incl. two score tensors)."""
    largest_attention_scores_bytes: int
    """The biggest (B, heads, queries, keys) score tensor of the model, one copy."""
    total_bytes: int
    """Training: weights + gradients + optimizer + activations (+ recompute peak).
    Inference: inference_peak_bytes."""
    by_module: Mapping[str, int]
    """Activation bytes kept for backward per resolved module path (chosen checkpointing;
    read-only)."""

    def _repr_html_(self) -> str:
        """Jupyter shows the counts as an HTML table (perceiver_calc.report renders it)."""
        from perceiver_calc.report import memory_html

        return memory_html(self)


# --------------------------------------------------------------------------------------------
# Saved tensors: the graph of one training forward


class _Graph:
    def __init__(self) -> None:
        self.saved: dict[str, SavedTensor] = {}
        self.counter = 0

    def new(self, name: str) -> str:
        self.counter += 1
        return f"{name}#{self.counter}"

    def save(
        self,
        sid: str | None,
        module: str,
        elements: Int,
        kind: Kind = "float",
        *,
        layer_input: bool = False,
        in_layer: str | None = None,
        count: Int = 1,
    ) -> None:
        if sid is None:
            return  # a parameter's storage (latents, trainable queries)
        scalar = is_scalar(elements, count)
        if scalar and (elements <= 0 or count <= 0):
            return  # an empty tensor
        prev = self.saved.get(sid)
        if prev is not None:
            if layer_input and not prev.layer_input:
                prev = self.saved[sid] = dataclasses.replace(prev, layer_input=True, in_layer=None)
            if not scalar:
                # The sweep's per-row sizes: a storage saved twice has one size where it is
                # not empty (the scalar path keeps the first non-empty save); rows where the
                # first save was empty (0) take the later one.
                self.saved[sid] = dataclasses.replace(
                    prev, elements=maximum(prev.elements, elements * count)
                )
            return
        self.saved[sid] = SavedTensor(
            id=sid,
            module=module,
            elements=elements * count,
            kind=kind,
            layer_input=layer_input,
            in_layer=in_layer,
            count=count,
        )


# (B, Q, W·q_dim) tensors the MLP keeps per activation: what the activation saves plus
# mlp.dense2's input, unique storages. Measured with saved_tensors_hooks on transformers 5.24's
# ACT2FN modules (torch 2.13): gelu saves its input (2 with dense2's input); relu, tanh and
# sigmoid save their output, which is dense2's input (1); python-formula GELUs keep every
# intermediate (gelu_new 5, gelu_fast 8). xielu also saves four 0-dim scalars (not counted).
ACTIVATION_SAVES: dict[str, int] = {
    "gelu": 2,
    "gelu_10": 3,
    "gelu_accurate": 5,
    "gelu_fast": 8,
    "gelu_new": 5,
    "gelu_python": 4,
    "gelu_python_tanh": 5,
    "gelu_pytorch_tanh": 2,
    "hardswish": 2,
    "laplace": 2,
    "leaky_relu": 2,
    "linear": 1,
    "mish": 2,
    "prelu": 2,
    "quick_gelu": 3,
    "relu": 1,
    "relu2": 2,
    "relu6": 2,
    "sigmoid": 1,
    "silu": 2,
    "sqrtsoftplus": 2,
    "swish": 2,
    "tanh": 1,
    "xielu": 6,
}


def _activation_saves(hidden_act: str) -> int:
    return ACTIVATION_SAVES.get(hidden_act, 2)


def saved_tensors(
    resolved: ResolvedModel, workload: Workload, *, with_labels: bool | None = None
) -> list[SavedTensor]:
    """Every storage one training forward (model.train()) of transformers' model saves for
    backward, loss included: ``out.loss`` with labels (``with_labels``, default: for the
    classes that take labels), else a sum of the logits, which saves nothing."""
    cfg = resolved.config
    lens = lengths(resolved, workload)
    inp = resolved_inputs(resolved, workload)
    b = workload.batch_size
    spec = resolved.spec
    dropout = cfg.attention_probs_dropout_prob
    act = _activation_saves(cfg.hidden_act)
    if with_labels is None:
        with_labels = spec.takes_labels
    g = _Graph()
    mods = {m.path: m for m in resolved.modules}
    pre = "perceiver.input_preprocessor"
    prep: str | None  # storage of the encoder's kv input (the preprocessed inputs)
    m_in = lens["inputs"]
    kind = resolved.input_kind

    # --- preprocessor --------------------------------------------------------------------
    if kind == "embeddings":
        prep = g.new("inputs")  # the user's (B, M, d_model) tensor, saved by layernorm2
    elif kind == "tokens":
        g.save(g.new("input_ids"), f"{pre}.embeddings", b * m_in, "index")
        g.save(g.new("position_ids"), f"{pre}.position_embeddings", m_in, "index")
        prep = g.new("embeddings+positions")
    elif kind == "image":
        assert inp.image_size is not None
        # the conv saves the pixels (zero-padded first by Conv2dSamePadding), for its weight
        # gradient; the conv stem's BatchNorm, ReLU and max-pool save theirs
        for conv in resolved.find(Conv2d):
            conv.save_for_backward(g, b, inp.image_size)
        for bn in resolved.find(BatchNorm2d):
            bn.save_for_backward(g, b, inp.image_size, lens["inputs"])
        if spec.image_preprocessor == "learned":
            proj = mods[f"{pre}.positions_projection"]
            assert isinstance(proj, Linear)
            # Linear on the batch-expanded positions (B, S², C): for B > 1 the stride-0 tensor
            # is not contiguous and (if S² > 1) matmul folds it to (B·S², C) with a copy, which mm
            # saves; otherwise it folds to a view of the parameter (not an activation).
            folded = (b > 1) & (lens["inputs"] > 1)
            if not is_scalar(folded) or folded:  # (the sweep: a per-row condition)
                g.save(
                    g.new("positions_folded"),
                    proj.path,
                    where(folded, b * lens["inputs"] * proj.in_features.value, 0),
                )
        prep = g.new("preprocessed")
    elif kind == "flow":
        lin = mods[f"{pre}.conv_after_patches"]
        assert isinstance(lin, Linear)
        # space_to_depth copies the frames into (B, H, W, 54) patches; the Linear saves them.
        g.save(g.new("patches"), lin.path, b * m_in * lin.in_features.value)
        prep = g.new("preprocessed")
    else:
        # PerceiverMultimodalPreprocessor masks every modality in mask_probs (all three):
        # (1 - mask) * padded + mask * mask_token saves (1 - mask) and mask, (B, n, 1) each,
        # float32 whatever the model dtype (torch.full's default dtype).
        for modality in ("audio", "image", "label"):
            n = b * lens[f"inputs.{modality}"]
            g.save(g.new(f"{modality}.1-mask"), f"{pre}.mask", n, "stat")
            g.save(g.new(f"{modality}.mask"), f"{pre}.mask", n, "stat")
        prep = g.new("preprocessed")  # concat of the padded modalities

    # --- encoder ---------------------------------------------------------------------------
    layers = resolved.layers()
    cross = next(m for m in layers if m.role == "encoder_cross")
    selfs = [m for m in layers if m.role == "encoder_self"]
    z = cross.save_for_backward(g, None, prep, lens, b, dropout, act)
    for m in selfs:  # the shared block: num_blocks x L same-shape applications, folded
        if positive(m.runs):
            z = m.save_for_backward(g, z, None, lens, b, dropout, act, count=m.runs)

    # --- decoder and head ------------------------------------------------------------------
    dec = next((m for m in layers if m.role == "decoder_cross"), None)
    if dec is None:
        return list(g.saved.values())  # bare PerceiverModel: its output's sum saves nothing
    if kind == "flow":
        query: str | None = prep  # the decoder queries ARE the preprocessed inputs
    elif dec.query_is_parameter:
        query = None
    else:
        query = g.new("decoder_query")  # multimodal: concat of the padded modality queries
    out = dec.save_for_backward(g, query, z, lens, b, dropout, act)
    heads = [
        m
        for m in resolved.modules
        if isinstance(m, (Linear, TiedOutput))
        and m.path.startswith(("perceiver.decoder", "embedding_decoder"))
    ]
    post = [
        m
        for m in resolved.modules
        if isinstance(m, Linear) and m.path.startswith("perceiver.output_postprocessor")
    ]
    o = lens["outputs"]
    logits = out
    logits_width = dec.q_dim.value
    for hm in heads:  # final_layer and/or the tied output projection, in order
        width = hm.in_features.value
        g.save(logits, hm.path, b * o * width)
        logits = g.new(f"{hm.path}:out")
        logits_width = hm.out_features.value if isinstance(hm, Linear) else hm.vocab_size.value
    for pm in post:
        # Each postprocessor Linear reads its modality's slice (B, n, C) of final_layer's
        # output (B, O, C). matmul folds it to (B·n, C): a view of the whole output when
        # B == 1, n == 1 or n == O (the saved view pins all of it), else a copy of the slice.
        n = pm.rows(lens)
        view = (b == 1) | (n == 1) | (n == o)
        g.save(logits, pm.path, where(view, b * o * pm.in_features.value, 0))
        if not is_scalar(view) or not view:
            copy = where(view, 0, b * n * pm.in_features.value)
            g.save(g.new(f"{pm.path}:input"), pm.path, copy)
    if with_labels and spec.takes_labels:
        _loss(g, resolved, b, o, logits, logits_width)
    return list(g.saved.values())


def _loss(g: _Graph, resolved: ResolvedModel, b: int, o: int, logits: str, width: int) -> None:
    """Cross-entropy (log_softmax saves its output; nll_loss the targets and a 0-dim
    total_weight) or, for one label (regression), MSE (saves logits and targets)."""
    cfg = resolved.config
    rows = b * o
    problem = cfg.problem_type
    if resolved.spec.loss == "vocab_cross_entropy":
        problem = "single_label_classification"  # CrossEntropyLoss over the vocabulary, always
    elif problem is None:
        # transformers' rule: one label -> regression (MSE), else class ids -> cross-entropy
        problem = "regression" if decides(width == 1) else "single_label_classification"
    if problem == "regression":
        g.save(logits, "loss", rows * width)
        g.save(g.new("labels"), "loss", rows * width)  # float targets
        return
    if problem == "multi_label_classification":
        # BCEWithLogits saves logits and float targets (not verified).
        g.save(logits, "loss", rows * width)
        g.save(g.new("labels"), "loss", rows * width)
        return
    g.save(g.new("log_softmax"), "loss", rows * width)
    g.save(g.new("labels"), "loss", rows, "index")
    g.save(g.new("total_weight"), "loss", 1, "stat")


# --------------------------------------------------------------------------------------------
# Inference working set


def _inference_peak_activations(resolved: ResolvedModel, workload: Workload) -> tuple[Int, Int]:
    """(elements of the largest no-grad working set, elements of the biggest score tensor)."""
    lens = lengths(resolved, workload)
    inp = resolved_inputs(resolved, workload)
    b = workload.batch_size
    kind = resolved.input_kind
    image = inp.image_size if kind == "image" else None
    # Held across the whole forward: the model input and the preprocessed inputs (the
    # PerceiverModel keeps them for the decoder query).
    k = resolved.encoder_kv_dim.value
    held = b * lens["inputs"] * k
    if image is not None:
        held = held + b * 3 * image[0] * image[1]
    elif kind == "flow":
        held = held + b * FLOW_PATCH_CHANNELS * lens["inputs"]
    # the largest module's transient tensors (each kind's working_set); the encoder output z
    # is held while the decoder runs (counted in the layer inputs)
    peak = maximum(0, *(m.working_set(lens, b, image) for m in resolved.modules))
    biggest_scores = maximum(0, *(m.scores(lens, b) for m in resolved.layers()))
    return held + peak, biggest_scores


# --------------------------------------------------------------------------------------------


def count_memory(
    resolved: ResolvedModel, workload: Workload, *, device: Device = "cuda", detail: bool = True
) -> MemoryCounts:
    """Bytes for weights, gradients, optimizer states, activations and the inference peak of
    ``resolved`` on ``workload``; see the module docstring for the conventions.
    ``detail=False`` leaves ``by_module`` empty (the sweep needs only the totals)."""
    dtype = workload.dtype
    training = workload.mode == "training"
    act_b = 2 if dtype != "fp32" else 4
    params = params_total(resolved)
    buffers = 0
    for m in resolved.modules:
        for name, shape in m.buffers().items():
            n = math.prod(shape)
            buffers = buffers + (
                8 * n
                if name.endswith("num_batches_tracked")
                else (4 if dtype.startswith("mixed") else act_b) * n
            )
    weights = params * _WEIGHT_BYTES[dtype] + buffers
    grads = params * _STATE_BYTES[dtype] if training else 0
    optim = params * _STATE_BYTES[dtype] * _STATES[workload.optimizer] if training else 0

    tensors = saved_tensors(resolved, workload)

    def nbytes(t: SavedTensor) -> int:
        return t.elements * bytes_per_element(t.kind, dtype, device)

    full = total(nbytes(t) for t in tensors)
    kept = [t for t in tensors if t.in_layer is None or t.layer_input]
    ckpt = total(nbytes(t) for t in kept)
    per_layer: dict[str, int] = {}
    for t in tensors if workload.checkpointing else ():  # else no layer is recomputed
        if t.in_layer is not None and not t.layer_input:
            # one application's internals (a folded entry holds t.count equal ones)
            per_layer[t.in_layer] = per_layer.get(t.in_layer, 0) + nbytes(t) // t.count
    recompute_peak = maximum(0, *per_layer.values())
    chosen = kept if workload.checkpointing else tensors
    by_module: dict[str, int] = {}
    for t in chosen if detail else ():
        by_module[t.module] = by_module.get(t.module, 0) + nbytes(t)
    activations = (ckpt if workload.checkpointing else full) if training else 0

    peak_elems, biggest = _inference_peak_activations(resolved, workload)
    inference_peak = weights + peak_elems * act_b
    # training: everything kept for the step; inference: the no-grad working set
    total_bytes = (
        weights + grads + optim + activations + recompute_peak if training else inference_peak
    )
    return MemoryCounts(
        dtype=dtype,
        mode=workload.mode,
        device=device,
        weights_bytes=weights,
        gradients_bytes=grads,
        optimizer_bytes=optim,
        activations_bytes=activations,
        activations_no_checkpointing_bytes=full,
        activations_checkpointing_bytes=ckpt,
        recompute_peak_bytes=recompute_peak,
        inference_peak_bytes=inference_peak,
        largest_attention_scores_bytes=biggest * act_b,
        total_bytes=total_bytes,
        by_module=MappingProxyType(by_module),
    )
