"""Differential fuzzer: perceiver-calc against transformers 5.24, case by case (issue 10).

A *case* is a model class, a config dict over every ``transformers.PerceiverConfig`` field
(plus ``num_labels``, ``id2label``, ``problem_type``, ``chunk_size_feed_forward``) and a
workload (batch, input shapes, inference or training; training passes labels to the classes
whose forward computes a loss). Valid cases are built constructively (tests/strategies.py's
``valid_config`` and ``workload_for``, every other field drawn in its legal range, a chunk size
dividing every layer's query count); about 40% are then mutated by one rule-breaking or
edge-case mutation (:data:`MUTATIONS`, config and workload), so a third or more of all cases are
invalid.

For each case:

* **verdict**: perceiver-calc's (``load_config`` + ``resolve`` + ``check_workload``: no error
  finding) must equal transformers' (:func:`hf_verdict`: ``PerceiverConfig(**config)`` and the
  model built on ``torch.device("meta")``, then on CPU for the init-time errors, then one real
  forward on tiny CPU tensors: eval mode under ``no_grad``, or train mode with labels and
  ``loss.backward()``). A rejection by perceiver-calc that transformers runs is allowed only
  when every error is one of the deliberate, documented refusals (:func:`documented_refusal`,
  docs/conventions.md "Deliberate refusals").
* **counts**, where both accept: every parameter tensor's name and shape, the buffers and the
  total (meta build); forward matmul FLOPs, in total and per resolved module, and
  forward + backward FLOPs of a training step, against ``FlopCounterMode`` on meta
  (tests.hf_truth.hf_flops).

Run standalone (prints the agreement rate and every disagreement with its config JSON)::

    PYTHONPATH=$PWD .venv/bin/python -m tests.differential --n 2000 --seed 1

tests/test_differential.py runs the same comparison as hypothesis properties.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import transformers
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import perceiver_calc as pc
from perceiver_calc.config import HF_FIELDS
from perceiver_calc.flops import count_flops
from perceiver_calc.params import count_params
from perceiver_calc.workload import check_workload
from tests import hf_truth
from tests.hf_truth import LABEL_CLASSES, MODEL_CLASSES, Workload
from tests.strategies import BREAKABLE_RULES, valid_config, workload_for
from tests.test_flops import to_workload  # the harness workload as perceiver_calc's

__all__ = [
    "MUTATIONS",
    "Case",
    "CaseResult",
    "HFVerdict",
    "case_strategy",
    "compare",
    "documented_refusal",
    "hf_verdict",
    "main",
    "our_verdict",
]

Config = dict[str, Any]

_TEXT_LIKE = ("PerceiverModel", "PerceiverForMaskedLM", "PerceiverForSequenceClassification")
_CPU_PARAM_LIMIT = 5_000_000  # every generated case is far below; a mutation could exceed it


@dataclass(frozen=True)
class Case:
    model_class: str
    config: Config
    workload: Workload
    mutation: str = "valid"

    def as_json(self) -> str:
        w = {k: v for k, v in self.workload.__dict__.items() if v is not None}
        return json.dumps(
            {"model_class": self.model_class, "config": self.config, "workload": w},
            default=repr,
            sort_keys=True,
        )


# --------------------------------------------------------------------------------------------
# Workload as perceiver-calc spells it
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Valid cases
# --------------------------------------------------------------------------------------------

# Legal values of the fields a class does not read (transformers' strict config still checks
# their types); small so a mutation that makes a class read one stays cheap.
_OTHER_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "vocab_size": st.integers(1, 40),
    "max_position_embeddings": st.integers(1, 16),
    "image_size": st.integers(1, 8),
    "train_size": st.lists(st.integers(1, 6), min_size=2, max_size=2),
    "num_frames": st.integers(1, 4),
    "audio_samples_per_frame": st.integers(1, 32),
    "samples_per_patch": st.integers(1, 8),
    "output_shape": st.lists(st.integers(1, 4), min_size=4, max_size=4),
    "output_num_channels": st.integers(1, 8),
    "_label_trainable_num_channels": st.integers(1, 8),
}


def _query_lengths(model_class: str, config: Config, w: Workload) -> list[int]:
    """Every PerceiverLayer's query count: the latents, and the decoder's outputs."""
    n = [int(config["num_latents"])]
    if model_class == "PerceiverForMaskedLM":
        n.append(int(config.get("max_position_embeddings", 2048)))
    elif model_class in ("PerceiverModel",):
        pass
    elif model_class == "PerceiverForOpticalFlow":
        assert w.image_size is not None
        n.append(w.image_size[0] * w.image_size[1])
    elif model_class == "PerceiverForMultimodalAutoencoding":
        assert w.subsampled_image_points is not None and w.subsampled_audio_points is not None
        n.append(w.subsampled_image_points + w.subsampled_audio_points + 1)
    else:
        n.append(1)
    return n


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def valid_case(draw: st.DrawFn, model_class: str) -> Case:
    """A case transformers builds and runs: valid_config + every other field + a workload."""
    cfg = draw(valid_config(model_class))
    # every remaining PerceiverConfig field: left at transformers' default, or drawn
    for key, strat in _OTHER_FIELDS.items():
        if key not in cfg and draw(st.booleans()):
            cfg[key] = draw(strat)
    cfg["initializer_range"] = draw(st.sampled_from([0.0, 0.02, 0.5]))
    cfg["layer_norm_eps"] = draw(st.sampled_from([1e-12, 1e-5, 0.1]))
    cfg["attention_probs_dropout_prob"] = draw(st.sampled_from([0.0, 0.1, 0.5, 0, 1.0]))
    if model_class not in ("PerceiverModel", "PerceiverForMaskedLM", "PerceiverForOpticalFlow"):
        # labels: num_labels alone, id2label alone, or both agreeing
        n = int(cfg.get("num_labels", 2))
        how = draw(st.sampled_from(["num_labels", "id2label", "both"]))
        if how != "num_labels":
            cfg["id2label"] = {str(i): f"L{i}" for i in range(n)}
            if how == "id2label":
                cfg.pop("num_labels", None)
        if model_class != "PerceiverForMultimodalAutoencoding":
            options: list[str | None] = [None, "regression", "multi_label_classification"]
            if n > 1:
                options.append("single_label_classification")
            cfg["problem_type"] = draw(st.sampled_from(options))
    w = draw(workload_for(model_class, cfg))
    # chunk_size_feed_forward: 0 (off) or a common divisor of every layer's query count
    g = math.gcd(*_query_lengths(model_class, cfg, w))
    cfg["chunk_size_feed_forward"] = draw(st.sampled_from([0, *_divisors(g)]))
    return Case(model_class, cfg, w, "valid")


# --------------------------------------------------------------------------------------------
# Mutations (config and workload). Each returns None where it does not apply.
# --------------------------------------------------------------------------------------------

_Mutation = Callable[[st.DrawFn, Case], Case | None]

_INT_FIELDS = tuple(
    f
    for f in HF_FIELDS
    if f
    not in (
        "qk_channels",
        "v_channels",
        "cross_attention_shape_for_attention",
        "hidden_act",
        "attention_probs_dropout_prob",
        "initializer_range",
        "layer_norm_eps",
        "use_query_residual",
        "image_size",
        "train_size",
        "output_shape",
    )
)


def _cfg(case: Case, **changes: Any) -> Case:
    return replace(case, config={**case.config, **changes})


def _from_rules(name: str) -> _Mutation:
    """A tests.strategies.BREAKABLE_RULES mutation of the config."""

    def mutate(draw: st.DrawFn, case: Case) -> Case | None:
        out = BREAKABLE_RULES[name](draw, case.model_class, case.config)
        return None if out is None else replace(case, config=out)

    return mutate


def _nonpositive_int(draw: st.DrawFn, case: Case) -> Case | None:
    """0 or a negative value for any int field (read by the class or not)."""
    key = draw(st.sampled_from([*_INT_FIELDS, "qk_channels", "v_channels", "num_labels"]))
    return _cfg(case, **{key: draw(st.sampled_from([0, -1, -7]))})


def _wrong_type(draw: st.DrawFn, case: Case) -> Case | None:
    """A value of the wrong JSON type for any field."""
    key = draw(st.sampled_from([*HF_FIELDS, "chunk_size_feed_forward", "num_labels"]))
    current = case.config.get(key)
    bad = draw(
        st.sampled_from(["8", 8.0, True, None, [2, 2], {"a": 1}, 2.5, "kv", -0.5, (3,), [1.0, 2.0]])
    )
    if bad == current and type(bad) is type(current):
        return None
    return _cfg(case, **{key: bad})


def _dropout_range(draw: st.DrawFn, case: Case) -> Case | None:
    return _cfg(case, attention_probs_dropout_prob=draw(st.sampled_from([1.5, -0.1, 2, -1])))


def _layer_norm_eps_sign(draw: st.DrawFn, case: Case) -> Case | None:
    """Not a rule: eps 0 or negative builds and runs (the output may be nan)."""
    return _cfg(case, layer_norm_eps=draw(st.sampled_from([0.0, -1e-5, -1.0])))


def _chunk_outputs(draw: st.DrawFn, case: Case) -> Case | None:
    """A chunk size that divides some query lengths but not others, or exceeds them."""
    lens = _query_lengths(case.model_class, case.config, case.workload)
    c = draw(st.sampled_from([*lens, max(lens) + 1, 2, 3]))
    return _cfg(case, chunk_size_feed_forward=c)


def _chunk_weird(draw: st.DrawFn, case: Case) -> Case | None:
    """Negative, bool or float chunk sizes (a PretrainedConfig key, not type-checked)."""
    return _cfg(case, chunk_size_feed_forward=draw(st.sampled_from([-1, True, False, 1.0, 2.0])))


def _shape_fields(draw: st.DrawFn, case: Case) -> Case | None:
    """image_size / train_size / output_shape in other forms (list, rank, tuple)."""
    key = draw(st.sampled_from(["image_size", "train_size", "output_shape"]))
    value = draw(
        st.sampled_from(
            [[2, 2], [2], [2, 3, 4], [], [1, 1, 2, 2, 1], 4, [0, 2], [2, -2], [1, 2, 2, 2]]
        )
    )
    return _cfg(case, **{key: value})


def _labels(draw: st.DrawFn, case: Case) -> Case | None:
    """num_labels / id2label / problem_type combinations, legal or not."""
    # (PerceiverModel, MaskedLM and OpticalFlow ignore them, but the config still checks them)
    which = draw(st.integers(0, 5))
    cfg = {k: v for k, v in case.config.items() if k not in ("num_labels", "id2label")}
    if which == 0:
        cfg["num_labels"] = draw(st.integers(1, 4))
        cfg["id2label"] = {str(i): f"L{i}" for i in range(draw(st.integers(0, 4)))}
    elif which == 1:
        keys = draw(st.lists(st.sampled_from(["0", "00", "1", "01", "2", "-1", "7"]), max_size=4))
        cfg["id2label"] = {k: f"L{k}" for k in keys}
    elif which == 2:
        cfg["id2label"] = {draw(st.sampled_from(["x", "1.5", ""])): "a"}
    elif which == 3:
        cfg["problem_type"] = draw(
            st.sampled_from(["single_label_classification", "regression", "bogus", ""])
        )
        cfg["num_labels"] = draw(st.integers(1, 3))
    elif which == 4:
        cfg["num_labels"] = draw(st.sampled_from([0, -1, True]))
    else:
        cfg["id2label"] = {}
    return replace(case, config=cfg)


def _big_heads(draw: st.DrawFn, case: Case) -> Case | None:
    """Head counts larger than the width (no divisibility possible) or equal to it."""
    key = draw(st.sampled_from(["num_self_attention_heads", "num_cross_attention_heads"]))
    d = int(case.config["d_latents"])
    return _cfg(case, **{key: draw(st.sampled_from([d, d + 1, 2 * d]))})


def _qk_v_channels(draw: st.DrawFn, case: Case) -> Case | None:
    """qk_channels / v_channels drawn freely (may or may not divide, may differ)."""
    return _cfg(
        case,
        qk_channels=draw(st.none() | st.integers(1, 24)),
        v_channels=draw(st.none() | st.integers(1, 24)),
    )


def _d_model(draw: st.DrawFn, case: Case) -> Case | None:
    """Any d_model (the text classes' kv width; ignored by the others)."""
    return _cfg(case, d_model=draw(st.integers(1, 24)))


# -- workload -------------------------------------------------------------------------------


def _wl(case: Case, **changes: Any) -> Case:
    return replace(case, workload=replace(case.workload, **changes))


def _seq_len(draw: st.DrawFn, case: Case) -> Case | None:
    if case.model_class not in _TEXT_LIKE:
        return None
    p = int(case.config.get("max_position_embeddings", 2048))
    return _wl(case, seq_len=p + draw(st.integers(1, 3)))


def _image_shape(draw: st.DrawFn, case: Case) -> Case | None:
    """Image / frame sizes that break (or, as an edge, fit) the class's rule."""
    mc = case.model_class
    if mc in _TEXT_LIKE:
        return None
    if mc == "PerceiverForMultimodalAutoencoding":
        h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    elif mc == "PerceiverForImageClassificationConvProcessing":
        h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    else:
        h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return _wl(case, image_size=(h, w))


def _multimodal_inputs(draw: st.DrawFn, case: Case) -> Case | None:
    if case.model_class != "PerceiverForMultimodalAutoencoding":
        return None
    which = draw(st.integers(0, 3))
    w = case.workload
    if which == 0:
        return _wl(case, num_frames=draw(st.integers(1, 4)))
    if which == 1:
        assert w.audio_samples is not None
        return _wl(case, audio_samples=w.audio_samples + draw(st.integers(1, 3)))
    if which == 2:
        return _wl(case, subsampled_image_points=draw(st.integers(1, 80)))
    return _wl(case, subsampled_audio_points=draw(st.integers(1, 20)))


def _training(draw: st.DrawFn, case: Case) -> Case | None:
    """Flip training/inference (with labels where the class takes them)."""
    t = not case.workload.training
    return _wl(case, training=t, with_labels=t and case.model_class in LABEL_CLASSES)


MUTATIONS: dict[str, _Mutation] = {
    **{f"rule: {name}": _from_rules(name) for name in BREAKABLE_RULES},
    "int field <= 0": _nonpositive_int,
    "wrong type": _wrong_type,
    "dropout out of [0, 1]": _dropout_range,
    "edge: layer_norm_eps <= 0": _layer_norm_eps_sign,
    "chunk size vs decoder queries": _chunk_outputs,
    "chunk size negative/bool/float": _chunk_weird,
    "image_size/train_size/output_shape forms": _shape_fields,
    "labels: num_labels/id2label/problem_type": _labels,
    "heads >= width": _big_heads,
    "free qk/v channels": _qk_v_channels,
    "free d_model": _d_model,
    "workload: seq_len > max_position_embeddings": _seq_len,
    "workload: image size": _image_shape,
    "workload: multimodal inputs": _multimodal_inputs,
    "workload: training flip": _training,
}
"""Mutation name -> mutation of a valid case (None where it does not apply)."""


@st.composite
def mutated_case(draw: st.DrawFn, model_class: str) -> Case:
    case = draw(valid_case(model_class))
    names = list(MUTATIONS)
    # a uniformly drawn first choice, then the next ones that apply (st.permutations favours
    # the identity order, which would make the first mutation most of the draws)
    start = draw(st.integers(0, len(names) - 1))
    for name in names[start:] + names[:start]:
        out = MUTATIONS[name](draw, case)
        if out is not None:
            return replace(out, mutation=name)
    raise AssertionError("unreachable: 'wrong type' applies to every case")


def case_strategy(
    model_class: str | None = None, p_mutate: float = 0.45
) -> st.SearchStrategy[Case]:
    """Cases of ``model_class`` (any class if None), ``p_mutate`` of them mutated."""
    classes = st.sampled_from(MODEL_CLASSES) if model_class is None else st.just(model_class)

    @st.composite
    def one(draw: st.DrawFn) -> Case:
        mc = draw(classes)
        mutate = draw(st.integers(0, 99)) < round(100 * p_mutate)
        return draw(mutated_case(mc)) if mutate else draw(valid_case(mc))

    return one()


# --------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OurVerdict:
    ok: bool
    errors: list[pc.Finding]
    resolved: Any = None


def our_verdict(case: Case) -> OurVerdict:
    """perceiver-calc: load_config + resolve + check_workload; ok iff no error finding."""
    try:
        resolved = pc.resolve(pc.load_config(case.config), case.model_class)
    except pc.ConfigError as err:
        return OurVerdict(False, list(err.errors))
    errors = [
        f
        for f in [*resolved.findings, *check_workload(resolved, to_workload(case.workload))]
        if f.severity == "error"
    ]
    return OurVerdict(not errors, errors, resolved)


@dataclass(frozen=True)
class HFVerdict:
    """transformers: ``stage`` is "ok", "config", "build" (meta), "init" (CPU build),
    "inputs" (no input of the workload's shapes can be made) or "forward"."""

    stage: str
    exc_type: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.stage == "ok"

    def __str__(self) -> str:
        if self.ok:
            return "ok"
        return f"{self.stage} {self.exc_type}: {self.message[:300]}"


def _labels_for_problem(
    model_class: str, cfg: Any, kwargs: dict[str, Any], b: int, device: str = "cpu"
) -> None:
    """Labels of the kind the config's problem_type wants (hf_truth.make_inputs gives class
    ids, or float targets for one label): regression float (B,) / (B, n); multi-label float
    (B, n) (modeling_perceiver.py L1014-1033, loss_utils ForSequenceClassificationLoss)."""
    if "labels" not in kwargs or model_class not in LABEL_CLASSES:
        return
    if model_class == "PerceiverForMaskedLM":
        return
    n = int(cfg.num_labels)
    problem = cfg.problem_type
    if problem == "multi_label_classification" or (problem == "regression" and n > 1):
        kwargs["labels"] = torch.rand((b, n)).to(device)
    elif problem == "regression":
        kwargs["labels"] = torch.randn((b,)).to(device)


def hf_verdict(case: Case) -> HFVerdict:
    """What transformers does with the case: config, meta build, CPU build (weight init), then
    one forward on CPU (eval under no_grad; training: train mode, labels where the class
    takes them, ``loss.backward()``)."""
    mc, config, w = case.model_class, case.config, case.workload
    try:
        hf_cfg = hf_truth.hf_config(config)
    except Exception as exc:
        return HFVerdict("config", type(exc).__name__, str(exc))
    try:
        meta = hf_truth.build_hf_model(mc, config, device="meta")
    except Exception as exc:
        return HFVerdict("build", type(exc).__name__, str(exc))
    n_params = sum(p.numel() for p in meta.parameters())
    del meta
    if n_params > _CPU_PARAM_LIMIT:
        return HFVerdict("too_big", "", f"{n_params} parameters")
    try:
        model = hf_truth.build_hf_model(mc, config, device="cpu")
    except Exception as exc:
        return HFVerdict("init", type(exc).__name__, str(exc))
    try:
        kwargs = hf_truth.make_inputs(mc, config, w, device="cpu")
        _labels_for_problem(mc, hf_cfg, kwargs, w.batch_size)
    except Exception as exc:
        return HFVerdict("inputs", type(exc).__name__, str(exc))
    try:
        if w.training:
            model.train()
            out = model(**kwargs)
            hf_truth._loss(out).backward()  # type: ignore[no-untyped-call]
        else:
            with torch.no_grad():
                model(**kwargs)
    except Exception as exc:
        return HFVerdict("forward", type(exc).__name__, str(exc))
    return HFVerdict("ok")


def hf_case_flops(case: Case, backward: bool) -> hf_truth.FlopResult:
    """tests.hf_truth.hf_flops on meta for the case, with labels of the kind its problem_type
    wants (training: train mode, labels where the class takes them, ``loss.backward()``)."""
    mc, config, w = case.model_class, case.config, case.workload
    model = hf_truth.build_hf_model(mc, config, device="meta")
    if backward:
        model.train()
    else:
        for p in model.parameters():
            p.requires_grad_(False)
    w = replace(w, with_labels=w.with_labels and backward)
    kwargs = hf_truth.make_inputs(mc, config, w, device="meta")
    _labels_for_problem(mc, hf_truth.hf_config(config), kwargs, w.batch_size, "meta")
    counter = FlopCounterMode(display=False)
    with hf_truth._meta_safe("meta"), counter:
        out = model(**kwargs)
        if backward:
            hf_truth._loss(out).backward()  # type: ignore[no-untyped-call]
    root = type(model).__name__
    by_module = {
        hf_truth._normalise_key(key, root) or "": sum(int(n) for n in ops.values())
        for key, ops in counter.get_flop_counts().items()
        if key != "Global"
    }
    return hf_truth.FlopResult(total=int(counter.get_total_flops()), by_module=by_module, by_op={})


# --------------------------------------------------------------------------------------------
# Deliberate refusals (docs/conventions.md, "Deliberate refusals")
# --------------------------------------------------------------------------------------------


def _nonpositive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value <= 0


# PretrainedConfig keys transformers does not type-check (configuration_utils.py takes them as
# **kwargs): a bool or a float there is used as a number (True chunks by 1, range(True) is one
# label); perceiver-calc wants a whole number (docs/conventions.md "Strictness").
_UNCHECKED_COUNT_KEYS = frozenset({"chunk_size_feed_forward", "num_labels"})


def documented_refusal(errors: list[pc.Finding]) -> str | None:
    """The documented reason when perceiver-calc refuses what transformers runs, else None.

    Every error must be a deliberate refusal (docs/conventions.md, "Deliberate refusals"):

    * ``count <= 0``: a count or width of 0 or below (``PositiveInt`` / ``NonNegativeInt``).
      transformers' config checks types only; a field the class never reads, or a 0-sized
      layer, builds and runs.
    * ``zero labels``: ``id2label: {}`` without ``num_labels`` (transformers: 0 labels, a
      0-wide classifier that builds and runs).
    * ``unknown problem_type``: transformers keeps any string and its loss matches none of its
      three branches, so no loss is computed (modeling_perceiver.py L1014-1033).
    * ``bool/float count``: a bool or float for ``chunk_size_feed_forward`` / ``num_labels``,
      which transformers does not type-check."""
    if not errors:
        return None
    reasons = set()
    for f in errors:
        values = list(f.values.values())
        if f.code == "empty_id2label":
            reasons.add("zero labels")
            continue
        if f.code != "type" or not values:
            return None
        v = values[0]
        if f.fields == ("problem_type",) and isinstance(v, str):
            reasons.add("unknown problem_type")
            continue
        items = v if isinstance(v, (list, tuple)) else values
        if any(_nonpositive(x) for x in items):
            reasons.add("count <= 0")
        elif set(f.fields) <= _UNCHECKED_COUNT_KEYS and isinstance(v, (bool, float)):
            reasons.add("bool/float count")
        else:
            return None
    return ", ".join(sorted(reasons))


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    kind: str
    """agree_ok, agree_reject, documented, verdict, params, flops, harness"""
    ours: str = ""
    theirs: str = ""
    detail: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.kind in ("agree_ok", "agree_reject", "documented")


def _compare_counts(case: Case, resolved: Any) -> tuple[str, str] | None:
    """None when params and FLOPs equal transformers'; else (kind, detail)."""
    mc, config, w = case.model_class, case.config, case.workload
    counts = count_params(resolved)
    hf = hf_truth.build_hf_model(mc, config, device="meta")
    hf_shapes = hf_truth.hf_param_shapes(hf)
    if dict(counts.tensors) != hf_shapes and not counts.tensors_note:
        ours_only = {k: v for k, v in counts.tensors.items() if hf_shapes.get(k) != v}
        theirs_only = {k: v for k, v in hf_shapes.items() if counts.tensors.get(k) != v}
        return "params", f"tensors differ: ours {ours_only} theirs {theirs_only}"
    hf_total = sum(p.numel() for p in hf.parameters())
    if counts.total != hf_total:
        return "params", f"total ours {counts.total} theirs {hf_total}"
    if dict(counts.buffers) != hf_truth.hf_buffer_shapes(hf):
        return (
            "params",
            f"buffers ours {dict(counts.buffers)} theirs {hf_truth.hf_buffer_shapes(hf)}",
        )
    for path, n in counts.by_module.items():
        hf_n = sum(p.numel() for name, p in hf.named_parameters() if name.startswith(path + "."))
        if n != hf_n:
            return "params", f"module {path}: ours {n} theirs {hf_n}"
    del hf
    cw = to_workload(w)
    flops = count_flops(resolved, cw)
    fwd = hf_case_flops(case, backward=False)
    if flops.forward != fwd.total:
        return "flops", f"forward ours {flops.forward} theirs {fwd.total}"
    blocks = {m.path: m.copies for m in resolved.layers() if m.role == "encoder_self"}
    for path, mf in flops.by_module.items():
        if path in blocks:
            theirs = sum(fwd.by_module.get(f"{path}.{i}", 0) for i in range(blocks[path]))
        else:
            theirs = fwd.by_module.get(path, 0)
        if mf.forward != theirs:
            return "flops", f"forward {path}: ours {mf.forward} theirs {theirs}"
    if w.training:
        both = hf_case_flops(case, backward=True)
        if flops.forward + flops.backward != both.total:
            return (
                "flops",
                f"training ours {flops.forward}+{flops.backward} theirs {both.total}",
            )
    return None


def compare(case: Case, counts: bool = True) -> CaseResult:
    """Run both sides on ``case``; ``counts``: compare params/FLOPs where both accept. A
    harness failure (an exception outside the verdicts) is a result of kind "harness"."""
    t0 = time.perf_counter()
    try:
        res = _compare(case, counts)
    except Exception as exc:
        import traceback

        res = CaseResult(case, "harness", detail="".join(traceback.format_exception(exc))[-2000:])
    res.seconds = time.perf_counter() - t0
    return res


def _compare(case: Case, counts: bool) -> CaseResult:
    ours = our_verdict(case)
    theirs = hf_verdict(case)
    ours_text = "ok" if ours.ok else "; ".join(str(f) for f in ours.errors)[:600]
    res = CaseResult(case, "", ours_text, str(theirs))
    if theirs.stage == "too_big":
        res.kind = "harness"
        res.detail = theirs.message
    elif ours.ok and theirs.ok:
        res.kind = "agree_ok"
        if counts:
            bad = _compare_counts(case, ours.resolved)
            if bad is not None:
                res.kind, res.detail = bad
    elif not ours.ok and not theirs.ok:
        res.kind = "agree_reject"
    elif not ours.ok and theirs.ok and (why := documented_refusal(ours.errors)):
        res.kind = "documented"
        res.detail = why
    else:
        res.kind = "verdict"
    return res


# --------------------------------------------------------------------------------------------
# Standalone run
# --------------------------------------------------------------------------------------------


def run(n: int, seed: int, counts: bool = True) -> list[CaseResult]:
    """``n`` random cases, ``n / 8`` per model class (hypothesis generation, no shrinking),
    each compared."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    results: list[CaseResult] = []
    torch.set_num_threads(1)  # tiny tensors: threads only contend (2 shared cores)
    warnings.simplefilter("ignore")  # transformers' and torch's warnings on odd configs
    transformers.logging.set_verbosity_error()
    for i, mc in enumerate(MODEL_CLASSES):
        share = n // len(MODEL_CLASSES) + (i < n % len(MODEL_CLASSES))
        if share == 0:
            continue

        @hseed(seed * 100 + i)
        @settings(
            max_examples=share,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=case_strategy(mc))
        def loop(case: Case) -> None:
            r = compare(case, counts=counts)
            results.append(r)
            if not r.agrees:
                print(describe(r), flush=True)
            if len(results) % 50 == 0:
                bad = sum(not r.agrees for r in results)
                print(f"  {len(results)} cases, {bad} disagreements", file=sys.stderr, flush=True)

        loop()
    return results


def describe(r: CaseResult) -> str:
    """One disagreement: its kind, mutation, case JSON and both verdicts."""
    lines = [
        f"DISAGREE [{r.kind}] mutation={r.case.mutation!r}",
        f"  case: {r.case.as_json()}",
        f"  perceiver-calc: {r.ours}",
        f"  transformers:   {r.theirs}",
    ]
    if r.detail:
        lines.append(f"  detail: {r.detail}")
    return "\n".join(lines)


def summarize(results: list[CaseResult]) -> str:
    kinds = Counter(r.kind for r in results)
    valid = sum(r.case.mutation == "valid" for r in results)
    hf_reject = sum(r.theirs != "ok" for r in results)
    agree = sum(r.agrees for r in results)
    lines = [
        f"cases: {len(results)} ({valid} unmutated, {len(results) - valid} mutated); "
        f"transformers rejects {hf_reject} ({100 * hf_reject / max(len(results), 1):.1f}%)",
        f"agreement: {agree}/{len(results)} = {100 * agree / max(len(results), 1):.2f}% "
        f"(documented refusals counted as agreeing: {kinds.get('documented', 0)})",
        "kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
        "by class: "
        + ", ".join(
            f"{mc.removeprefix('PerceiverFor')} {sum(r.case.model_class == mc for r in results)}"
            for mc in MODEL_CLASSES
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="number of random cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-counts", action="store_true", help="verdicts only")
    parser.add_argument("--jsonl", help="write every case's result to this file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.n, args.seed, counts=not args.no_counts)
    if args.jsonl:
        with open(args.jsonl, "w") as f:
            for r in results:
                row = {
                    "kind": r.kind,
                    "mutation": r.case.mutation,
                    "case": json.loads(r.case.as_json()),
                    "ours": r.ours,
                    "theirs": r.theirs,
                    "detail": r.detail,
                    "seconds": round(r.seconds, 4),
                }
                f.write(json.dumps(row, default=repr) + "\n")
    print(summarize(results))
    print(f"time: {time.perf_counter() - t0:.1f} s")
    return 0 if all(r.agrees for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
