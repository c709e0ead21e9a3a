"""What a user reads: ``explain --format markdown`` (source and rule for every dimension) and
the HTML a notebook shows for a report and for the counts (``_repr_html_``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import perceiver_calc as pc
from perceiver_calc.cli import app
from perceiver_calc.report import build_report, grouped_params, human_flops

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
runner = CliRunner()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_explain_markdown_has_every_dimension_with_source_and_rule(path: Path) -> None:
    result = runner.invoke(app, ["explain", str(path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    sections = dict(re.findall(r"^## `([^`]+)` \((\w+)\)$", text, flags=re.M))
    resolved = pc.resolve(pc.load_config(path))
    checked = 0
    for module in resolved.modules:
        mpath, kind, dims, notes = module.describe()
        shown = re.sub(r"self_attends$", "self_attends.*", mpath)
        assert sections.get(shown) == kind, shown
        body = text[text.index(f"## `{shown}` ({kind})") :].split("\n## ")[0]
        for name, dim in dims.items():
            value = ("yes" if dim.value else "no") if name == "use_query_residual" else dim.value
            rule = dim.rule.replace("|", "\\|")
            assert f"| `{name}` | {value} | {dim.source} | {rule} |" in body, (shown, name)
            checked += 1
        for note in notes:
            assert f"- {note}" in body
    assert checked >= 20
    # the findings too, each with its code
    for f in resolved.findings:
        assert f"- **{f.severity}** `{f.code}`: {f}" in text


def test_explain_markdown_pins_the_masked_lm_decoder() -> None:
    result = runner.invoke(
        app, ["explain", str(ROOT / "examples" / "language-perceiver.json"), "-f", "markdown"]
    )
    assert (
        "| `num_heads` | 8 | hardcoded | num_heads=8, hardcoded by PerceiverForMaskedLM |"
        in result.stdout
    )
    assert "| `kv_dim` | 1280 | explicit | d_latents |" in result.stdout


class _Tables(HTMLParser):
    """Every <table> of an HTML string: caption -> rows of cell texts (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._caption: str | None = None
        self._rows: list[list[str]] = []
        self._in: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows = []
        elif tag == "caption":
            self._in, self._text = "caption", ""
        elif tag == "tr":
            self._rows.append([])
        elif tag in ("td", "th"):
            self._in, self._text = "cell", ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._caption, self._in = self._text, None
        elif tag in ("td", "th"):
            self._rows[-1].append(self._text)
            self._in = None
        elif tag == "table":
            assert self._caption is not None
            self.tables[self._caption] = self._rows

    def handle_data(self, data: str) -> None:
        if self._in:
            self._text += data


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def _num(cell: str) -> int:
    return int(cell.replace(",", ""))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_report_html_tables_hold_the_counts(path: Path) -> None:
    resolved = pc.resolve(pc.load_config(path))
    workload = pc.Workload(mode="training", batch_size=2)
    params = pc.count_params(resolved)
    flops = pc.count_flops(resolved, workload)
    memory = pc.count_memory(resolved, workload)
    report = build_report(resolved, source=str(path), workload=workload)
    html = report._repr_html_()
    got = tables(html)
    assert set(got) >= {
        "Attention layers (resolved)",
        "Parameters by module",
        "FLOPs by module",
        "Memory (bytes; training, fp32)",
    }
    by_module = {r[0]: _num(r[1]) for r in got["Parameters by module"][1:]}
    assert by_module.pop("total") == params.total
    by_module.pop("buffers (not parameters)", None)
    assert sum(by_module.values()) == params.total
    assert by_module == {
        label: n for label, n, _ in grouped_params(params.by_module, params.copies)
    }
    flop_rows = {
        r[0]: _num(r[1]) for r in next(t for c, t in got.items() if c.startswith("FLOPs ("))[1:]
    }
    assert flop_rows["forward"] == flops.forward
    assert flop_rows["backward"] == flops.backward
    assert flop_rows["training step"] == flops.training_step
    assert sum(_num(r[1]) for r in got["FLOPs by module"][1:]) == flops.forward
    mem = {r[0]: _num(r[1]) for r in got["Memory (bytes; training, fp32)"][1:]}
    assert mem["weights"] == memory.weights_bytes
    assert mem["optimizer states"] == memory.optimizer_bytes
    assert mem["total (training)"] == memory.total_bytes
    layers = got["Attention layers (resolved)"]
    assert layers[0][:3] == ["module", "q_dim", "kv_dim"]
    attention = [m for m in resolved.modules if m.describe()[1] == "encoder_cross"]
    if attention:
        dims = attention[0].describe()[2]
        assert layers[1][:3] == [
            attention[0].path,
            str(dims["q_dim"].value),
            str(dims["kv_dim"].value),
        ]
    # the counts' own displays are the same tables
    assert tables(params._repr_html_())["Parameters by module"] == got["Parameters by module"]
    memory_caption = "Memory (bytes; training, fp32)"
    assert tables(memory._repr_html_()) == {memory_caption: got[memory_caption]}
    flops_tables = tables(flops._repr_html_())
    # the same rows (FlopCounts alone names a shared block by its key, without the layer range)
    assert [r[1:] for r in flops_tables["FLOPs by module"]] == [
        r[1:] for r in got["FLOPs by module"]
    ]
    first = next(t for c, t in flops_tables.items() if c.startswith("FLOPs ("))
    assert first[1:4] == [
        ["forward", f"{flops.forward:,}", human_flops(flops.forward)],
        ["backward", f"{flops.backward:,}", human_flops(flops.backward)],
        ["training step", f"{flops.training_step:,}", human_flops(flops.training_step)],
    ]


def test_report_html_escapes_user_text() -> None:
    resolved = pc.resolve(pc.load_config(ROOT / "examples" / "tiny.json"))
    html = build_report(resolved, source="<script>x</script>.json")._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;.json" in html
    # no workload: parameters only, no FLOP or memory tables
    assert set(tables(html)) == {"Attention layers (resolved)", "Parameters by module"}
