"""docs/papers.md and the named FLOP conventions (perceiver_calc.conventions).

* The page is what docs/gen_papers.py generates from examples/papers/sources.json (no drift).
* It covers every figure of the reference list of paper figures (pinned below, transcribed
  from the project's paper-figures.md; the file itself is read too when it is present).
* Every claim holds both ways: a row is marked claimed iff the paper convention is within 1%.
* The shipped configs' exact parameters equal transformers' real models (meta device), and
  their exact forward FLOPs (each row's workload) equal FlopCounterMode's on them.
* The conventions are pure functions of the exact counts, tested on generated configs; the
  ``no-attention`` reading is checked against FlopCounterMode's own split by op (the
  attention score and context matmuls are transformers' only ``bmm`` calls).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from perceiver_calc.cli import ConventionChoice, app
from perceiver_calc.config import load_config
from perceiver_calc.conventions import CONVENTIONS, IO_TERMS, apply_convention
from perceiver_calc.errors import InputError
from perceiver_calc.flops import count_flops
from perceiver_calc.params import count_params
from perceiver_calc.resolve import resolve, validate
from perceiver_calc.workload import Workload
from tests import hf_truth
from tests.strategies import valid_config, workload_for
from tests.test_flops import to_workload

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ROOT / "examples" / "papers"
FIGURES_MD = Path(
    os.environ.get("PAPER_FIGURES_MD", ROOT.parent / "shared" / "reference" / "paper-figures.md")
)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_papers", ROOT / "docs" / "gen_papers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_papers"] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
SOURCES: dict[str, Any] = gen.load_sources()
ROWS = gen.build_rows(SOURCES)

# The figures of paper-figures.md, (paper params, paper FLOPs) per row, as printed there.
PAPER_FIGURES: dict[str, tuple[int | None, int]] = {
    "Perceiver IO Base (SentencePiece)": (223_000_000, 119_000_000_000),
    "Perceiver IO (UTF-8 bytes)": (201_000_000, 113_000_000_000),
    "Perceiver IO++": (425_000_000, 241_000_000_000),
    "ImageNet, 2D Fourier features": (48_400_000, 407_000_000_000),
    "ImageNet, learned positions": (62_300_000, 407_000_000_000),
    "ImageNet, conv preprocessing": (48_600_000, 369_000_000_000),
    "Optical flow, 368 x 496": (27_900_000, 987_000_000_000),
    "Multimodal, train": (20_000_000, 310_000_000_000),
    "Multimodal, eval": (20_000_000, 6_850_000_000_000),
}


def test_page_is_generated_from_the_shipped_configs() -> None:
    page = (ROOT / "docs" / "papers.md").read_text(encoding="utf-8")
    assert page == gen.render(ROWS), "docs/papers.md is stale: run python docs/gen_papers.py"


def test_every_row_of_paper_figures_is_on_the_page() -> None:
    listed = [(r.spec["paper_params"], r.spec["paper_flops"]) for r in ROWS]
    for name, figures in PAPER_FIGURES.items():
        assert listed.count(figures) == 1, name
    marked = {(r.spec["paper_params"], r.spec["paper_flops"]) for r in ROWS if r.spec["figures_md"]}
    assert marked == set(PAPER_FIGURES.values())
    page = (ROOT / "docs" / "papers.md").read_text(encoding="utf-8")
    for r in ROWS:
        assert f"### {r.spec['name']}" in page
        assert f"| {r.spec['name']} |" in page


def _figures_in_markdown(text: str) -> Iterator[int]:
    """The params/FLOPs figures of paper-figures.md: table cells like 223M / 119B, the
    'roughly ...' sentences and the Table 17 line."""
    units = {"M": 10**6, "B": 10**9, "T": 10**12, "million": 10**6, "billion": 10**9}

    def value(number: str, unit: str) -> int:
        whole, _, frac = number.partition(".")
        return (int(whole) * 10 ** len(frac) + int(frac or 0)) * units[unit] // 10 ** len(frac)

    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for cell in cells[-2:]:  # the params and FLOPs columns
                m = re.fullmatch(r"(\d+(?:\.\d+)?)([MBT])", cell)
                if m:
                    yield value(*m.groups())
    prose = " ".join(text.split())  # sentences wrap across lines
    for m in re.finditer(r"roughly (\d+(?:\.\d+)?) (million|billion)", prose):
        yield value(*m.groups())
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("Multimodal autoencoding"):
            for m in re.finditer(r"(\d+(?:\.\d+)?)([MBT]) (?:params|FLOPs)", paragraph):
                yield value(*m.groups())


def test_paper_figures_md_matches_the_pinned_list() -> None:
    if not FIGURES_MD.is_file():
        pytest.skip(f"{FIGURES_MD} not present (set PAPER_FIGURES_MD)")
    found = set(_figures_in_markdown(FIGURES_MD.read_text(encoding="utf-8")))
    pinned = {n for pair in PAPER_FIGURES.values() for n in pair if n is not None}
    assert found == pinned


def test_claims_hold_both_ways() -> None:
    claimed = {r.id for r in ROWS if r.spec["claimed"]}
    reproduced = {r.id for r in ROWS if r.reproduced("paper")}
    assert claimed == reproduced
    assert claimed  # the page claims something, and each claim is within 1%
    for r in ROWS:
        ratio = r.ratio("paper")
        if r.spec["claimed"]:
            assert ratio is not None and abs(ratio - 1) <= 0.01, r.id


def _configs() -> dict[str, tuple[str, dict[str, Any]]]:
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for r in ROWS:
        config = json.loads(r.config_path.read_text(encoding="utf-8"))
        out[str(r.config_path.relative_to(ROOT))] = (r.model, config)
    return out


CONFIGS = _configs()


@pytest.mark.parametrize("path", sorted(CONFIGS))
def test_shipped_config_params_equal_transformers(path: str) -> None:
    model_class, config = CONFIGS[path]
    ours = count_params(resolve(load_config(config), model_class)).total
    assert ours == hf_truth.hf_param_count(model_class, config)


def _hf_workload(spec: dict[str, Any]) -> hf_truth.Workload:
    return hf_truth.Workload(**spec)


_HF_FLOPS: dict[str, hf_truth.FlopResult] = {}


def _hf_flops(row: Any) -> hf_truth.FlopResult:
    """FlopCounterMode on the row's meta model, once per (config, workload)."""
    key = json.dumps([str(row.config_path), row.spec["workload"]], sort_keys=True)
    if key not in _HF_FLOPS:
        model_class, config = CONFIGS[str(row.config_path.relative_to(ROOT))]
        _HF_FLOPS[key] = hf_truth.hf_flops(model_class, config, _hf_workload(row.spec["workload"]))
    return _HF_FLOPS[key]


FLOP_ROWS = [r for r in ROWS if "flops_of" not in r.spec]


@pytest.mark.parametrize("row", FLOP_ROWS, ids=[r.id for r in FLOP_ROWS])
def test_row_flops_equal_flopcountermode(row: Any) -> None:
    hf = _hf_flops(row)
    assert row.values["flopcounter"] == row.flops.forward == hf.total
    # the no-attention reading is exactly FlopCounterMode's total without its bmm calls
    bmm = sum(n for op, n in hf.by_op.items() if "bmm" in op)
    assert row.values["no-attention"] == hf.total - bmm


def test_module_row_is_that_module_in_flopcountermode() -> None:
    row = next(r for r in ROWS if "flops_of" in r.spec)
    module, times = row.spec["flops_of"]["module"], row.spec["flops_of"]["times"]
    hf = _hf_flops(row)
    assert row.values["flopcounter"] == times * hf.by_module[module]
    bmm = sum(n for op, n in hf.by_module_op[module].items() if "bmm" in op)
    assert row.values["no-attention"] == times * (hf.by_module[module] - bmm)


# --------------------------------------------------------------------------------------------
# The conventions themselves


@settings(max_examples=max(8, settings().max_examples // 2))
@given(data=st.data(), model_class=st.sampled_from(hf_truth.MODEL_CLASSES))
def test_conventions_are_pure_functions_of_the_exact_counts(data: Any, model_class: str) -> None:
    config = data.draw(valid_config(model_class), label="config")
    w = data.draw(workload_for(model_class, config), label="workload")
    flops = count_flops(resolve(load_config(config), model_class), to_workload(w))
    before = (flops.forward, dict(flops.ops), dict(flops.forward_terms))
    results = {name: apply_convention(flops, name) for name in CONVENTIONS}
    assert (flops.forward, dict(flops.ops), dict(flops.forward_terms)) == before  # untouched
    for name, conv in results.items():
        assert conv.convention == name
        assert conv.exact_forward == flops.forward
        assert conv.forward + sum(conv.left_out.values()) == flops.forward
        assert 0 <= conv.forward <= flops.forward
    assert results["flopcounter"].forward == results["paper"].forward == flops.forward
    assert 2 * results["macs"].forward == flops.forward
    attention = sum(n for k, n in flops.ops.items() if k.endswith((":scores", ":context")))
    assert results["no-attention"].forward == flops.forward - attention
    io = sum(flops.forward_terms.get(t, 0) for t in IO_TERMS)
    assert results["io-half"].forward == flops.forward - io // 2
    # io-half moves only input/output-proportional work: the latent terms stay whole
    latent = sum(n for t, n in flops.forward_terms.items() if t not in IO_TERMS)
    assert results["io-half"].forward - latent == io - io // 2


def test_unknown_convention_is_refused_with_the_names() -> None:
    flops = count_flops(validate(load_config(ROOT / "examples" / "tiny.json")), Workload())
    with pytest.raises(InputError) as err:
        apply_convention(flops, "fvcore")
    assert str(err.value) == (
        "convention 'fvcore' is not one of flopcounter, paper, macs, no-attention, io-half: "
        "pass one of those names (flopcounter is the exact count)"
    )


def test_cli_choices_are_the_conventions() -> None:
    assert [c.value for c in ConventionChoice] == list(CONVENTIONS)


runner = CliRunner()
LANGUAGE = ROOT / "examples" / "language-perceiver.json"


def test_report_convention_lines_and_json() -> None:
    table = runner.invoke(app, ["report", str(LANGUAGE), "--convention", "no-attention"])
    assert table.exit_code == 0, table.output
    assert "forward FLOPs (no-attention): 113,030,201,344 (0.9345 x the exact " in table.stdout
    assert "120,949,047,296" in table.stdout  # the exact count is still shown
    data = json.loads(
        runner.invoke(app, ["report", str(LANGUAGE), "-f", "json", "--convention", "paper"]).stdout
    )
    assert data["flops"]["forward"] == 120_949_047_296
    assert data["flops_convention"]["forward"] == 120_949_047_296
    assert data["flops_convention"]["left_out"] == {}
    plain = json.loads(runner.invoke(app, ["report", str(LANGUAGE), "-f", "json"]).stdout)
    assert "flops_convention" not in plain


def test_report_refuses_an_unknown_convention() -> None:
    result = runner.invoke(app, ["report", str(LANGUAGE), "--convention", "fvcore"])
    assert result.exit_code == 2
    assert "'fvcore' is not one of" in result.output


def test_plus_plus_parameters_support_the_qk_256_reading() -> None:
    """sources.json: qk = D = 1536 would give about 586M parameters, not the paper's 425M."""
    model_class, config = CONFIGS["examples/papers/perceiver-io-plus-plus.json"]
    wide = config | {"qk_channels": 1536}
    n = hf_truth.hf_param_count(model_class, wide)
    assert count_params(resolve(load_config(wide), model_class)).total == n
    assert round(n / 1e6) == 586


def test_the_observations_on_the_page_hold() -> None:
    """docs/papers.md's Observations, as computed facts (they are prose in gen_papers.py)."""
    by_id = {r.id: r for r in ROWS}

    def ratio(rid: str, convention: str) -> float:
        value = by_id[rid].ratio(convention)
        assert value is not None
        return float(value)

    assert {r.id for r in ROWS if r.reproduced("no-attention")} == {"lang-bytes"}
    for rid in ("lang-sentencepiece", "lang-bytes", "lang-n128", "lang-n512"):
        assert abs(ratio(rid, "io-half") - 1) < 0.015, rid
        assert ratio(rid, "flopcounter") > 1.05, rid
    for rid in ("lang-plus-plus", "imagenet-fourier"):
        assert abs(ratio(rid, "io-half") - 1) > 0.03, rid
    # the learned row prints the Fourier row's figure; the exact counts differ by far more
    assert ratio("imagenet-learned", "paper") > 1.1
