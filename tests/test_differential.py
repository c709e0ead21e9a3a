"""Differential fuzzing against transformers 5.24 (issue 10), as hypothesis properties.

Cases come from tests/differential.py: every PerceiverConfig field and the workload (batch,
input shapes, inference or training with labels) for all 8 model classes, built valid and
then, for about 45% of them, mutated by one rule-breaking or edge-case mutation. For each case
perceiver-calc's verdict must equal transformers' (config, meta build, CPU build, one real
forward / training step on tiny tensors), except the documented deliberate refusals; where
both accept, every parameter tensor, the total, per-module params, forward FLOPs (total and
per module) and training-step FLOPs must equal transformers' (meta build, FlopCounterMode on
meta).

Size: a sixth of the profile's examples per model class (dev 4 x 8 classes, about a minute on
2 shared cores; ci 16 x 8). The standalone run prints the agreement rate over many more:
``python -m tests.differential --n 2000``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.differential import (
    MUTATIONS,
    Case,
    case_strategy,
    compare,
    documented_refusal,
    our_verdict,
)
from tests.hf_truth import MODEL_CLASSES

PER_CLASS = settings(
    max_examples=max(4, settings().max_examples // 6),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny CPU tensors: intra-op threads only contend on the shared cores (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@PER_CLASS
@given(case=st.data())
def test_agrees_with_transformers(model_class: str, case: st.DataObject) -> None:
    c = case.draw(case_strategy(model_class), label="case")
    r = compare(c)
    assert r.agrees, (
        f"[{r.kind}] mutation {c.mutation!r}\ncase: {c.as_json()}\n"
        f"perceiver-calc: {r.ours}\ntransformers: {r.theirs}\n{r.detail}"
    )


def test_a_third_or_more_of_the_cases_are_invalid() -> None:
    """The generator's mix, judged by perceiver-calc's verdict (equal to transformers' per the
    property above, so cheap to count): at least 30% rejected, at least 30% accepted, every
    class and most mutations drawn. Collected over 30 examples of one case per class (one
    example drawing all 160 overran hypothesis' buffer on a loaded machine: Unsatisfiable)."""
    cases: list[Case] = []

    # derandomized: a share over 160-240 random cases has a standard deviation of ~3 points,
    # so an unlucky draw (26% once, 2026-12-03) would fail a correct generator now and then
    @settings(
        max_examples=30,
        suppress_health_check=list(HealthCheck),
        database=None,
        deadline=None,
        derandomize=True,
    )
    @given(st.tuples(*(case_strategy(mc) for mc in MODEL_CLASSES)))
    def collect(batch: tuple[Case, ...]) -> None:
        cases.extend(batch)

    collect()
    assert len(cases) >= 8 * 20  # hypothesis may stop early on a loaded machine
    rejected = sum(not our_verdict(c).ok for c in cases)
    assert 0.3 * len(cases) <= rejected <= 0.7 * len(cases), rejected
    assert {c.model_class for c in cases} == set(MODEL_CLASSES)
    drawn = {c.mutation for c in cases}
    assert len(drawn) >= len(MUTATIONS) // 2, drawn


def test_documented_refusals_are_only_nonpositive_counts() -> None:
    """The one class of disagreement the fuzzer tolerates: a count <= 0, which transformers'
    config accepts (it checks types only) and perceiver-calc refuses (docs/conventions.md)."""
    zero = our_verdict(Case("PerceiverForSequenceClassification", {"vocab_size": 0}, _W))
    assert not zero.ok and documented_refusal(zero.errors) == "count <= 0"
    heads = our_verdict(Case("PerceiverModel", {"d_latents": 1001}, _W))
    assert not heads.ok and documented_refusal(heads.errors) is None


_W = __import__("tests.hf_truth", fromlist=["Workload"]).Workload(seq_len=4)
