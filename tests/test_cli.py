"""The command line: output shapes, exit codes, error text, and no torch on the report path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from perceiver_calc.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "language-perceiver.json"
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_report_json_shape() -> None:
    result = run("report", str(EXAMPLE), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "PerceiverForMaskedLM"
    assert data["params"]["total"] == 201_108_230
    assert data["params"]["trainable"] == 201_108_230
    assert sum(data["params"]["by_module"].values()) == 201_108_230
    assert data["params"]["by_module"]["embedding_decoder"] == 262


def test_report_table_and_markdown() -> None:
    table = run("report", str(EXAMPLE))
    assert table.exit_code == 0
    assert "201,108,230" in table.stdout
    assert "perceiver.encoder.self_attends.0-25" in table.stdout
    md = run("report", str(EXAMPLE), "--format", "markdown")
    assert md.exit_code == 0
    assert md.stdout.startswith("# PerceiverForMaskedLM")
    assert "| **total** | **201,108,230** | |" in md.stdout


def test_report_accepts_a_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(EXAMPLE.read_text())
    result = run("report", str(tmp_path), "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["params"]["total"] == 201_108_230


def test_explain_shows_sources() -> None:
    result = run("explain", str(EXAMPLE))
    assert result.exit_code == 0
    out = result.stdout
    assert "d_model (text preprocessor num_channels)" in out
    assert "qk_channels=8*32, hardcoded by PerceiverForMaskedLM" in out
    assert "num_heads=8, hardcoded by PerceiverForMaskedLM" in out


def test_model_override_and_architectures(tmp_path: Path) -> None:
    cfg = {"architectures": ["PerceiverForSequenceClassification"]}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    assert json.loads(run("report", str(path), "-f", "json").stdout)["model"] == (
        "PerceiverForSequenceClassification"
    )
    out = run("report", str(path), "-f", "json", "--model", "PerceiverModel").stdout
    assert json.loads(out)["model"] == "PerceiverModel"


PINNED_ERROR = (
    "qk_channels (100) must be divisible by num_cross_attention_heads (8) "
    "[perceiver.encoder.cross_attention]; choose a multiple of 8 for qk_channels (96, 104) or "
    "leave it unset"
)


def test_invalid_config_exit_2_all_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"qk_channels": 100, "d_model": 770, "vocab_sise": 5}))
    result = run("report", str(path))
    assert result.exit_code == 2
    err = result.stderr
    assert "invalid config: 4 errors" in err
    assert (
        "self-attention v_channels (100, from qk_channels of this layer (qk_channels)) must " in err
    )
    assert PINNED_ERROR in err
    assert (
        "qk_channels (100) must be divisible by num_self_attention_heads (8) "
        "[perceiver.encoder.self_attends.*]" in err
    )
    assert (
        "v_channels (770 = d_model (v_channels as PerceiverForMaskedLM sets it)) must be "
        "divisible by decoder_num_heads (8, num_heads=8, hardcoded by PerceiverForMaskedLM)" in err
    )
    assert (
        "warning: vocab_sise (5) is not a PerceiverConfig field; did you mean 'vocab_size'?" in err
    )
    assert "Traceback" not in result.output


def test_type_errors_reported_with_dimension_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"d_latents": -3, "qk_channels": 100}))
    result = run("report", str(path))
    assert result.exit_code == 2
    assert "d_latents (-3): input should be greater than or equal to 1" in result.stderr
    assert PINNED_ERROR in result.stderr


def test_strict_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"num_latent": 8}))
    assert run("report", str(path)).exit_code == 0
    result = run("report", str(path), "--strict")
    assert result.exit_code == 2
    assert "num_latent (8) is not a PerceiverConfig field; did you mean 'num_latents'?" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("{", "malformed JSON at line 1"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ('{"d_model": NaN}', "NaN is not valid JSON"),
        ('{"d_model": "768"}', "d_model ('768'): input should be a valid integer"),
        ('{"d_model": 7.5}', "d_model (7.5): input should be a valid integer"),
        ('{"d_model": true}', "d_model (True): input should be a valid integer"),
        ('{"d_model": 0}', "d_model (0): input should be greater than or equal to 1"),
        ('{"num_latents": 1e400}', "num_latents (inf)"),
        ('{"d_latents": 99999999999999999999}', "input should be less than or equal to"),
        ('{"use_query_residual": "yes"}', "use_query_residual ('yes')"),
        ('{"hidden_act": "gelu2"}', "hidden_act ('gelu2') is not an activation"),
        ('{"cross_attention_shape_for_attention": "k"}', "must be 'q' or 'kv'"),
        ('{"id2label": {"a": "x"}}', "id2label keys must be whole numbers"),
        ('{"attention_probs_dropout_prob": 1.5}', "attention_probs_dropout_prob (1.5)"),
        ("[" * 100000 + "]" * 100000, "nested deeper than 64 levels"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    result = run("report", str(path))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_missing_path_and_folder_without_config(tmp_path: Path) -> None:
    result = run("report", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "no such file" in result.stderr
    result = run("report", str(tmp_path))
    assert result.exit_code == 2
    assert "folder has no config.json" in result.stderr


def test_unknown_model_class(tmp_path: Path) -> None:
    result = run("report", str(EXAMPLE), "--model", "PerceiverForMaskedLm")
    assert result.exit_code == 2
    assert "did you mean 'PerceiverForMaskedLM'?" in result.stderr


def test_input_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    text = EXAMPLE.read_text()
    path.write_text(text)
    run("report", str(path))
    run("explain", str(path), "-f", "json")
    assert path.read_text() == text


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = [
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
    "vocab_size",
    "max_position_embeddings",
    "image_size",
    "train_size",
    "output_shape",
    "id2label",
    "num_labels",
    "architectures",
    "decoder_num_heads",
    "hidden_act",
    "use_query_residual",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=6),
    model=st.sampled_from(
        [
            None,
            "PerceiverForMaskedLM",
            "PerceiverForOpticalFlow",
            "PerceiverForMultimodalAutoencoding",
            "PerceiverForImageClassificationLearned",
        ]
    ),
)
def test_fuzz_never_a_traceback(tmp_path: Path, data: dict[str, Any], model: str | None) -> None:
    """Any JSON object: exit 0 (valid) or 2 (invalid), never 1 or a traceback."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    args = ["report", str(path), "-f", "json"] + (["--model", model] if model else [])
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2), (data, result.output)
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ")


def test_report_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from perceiver_calc.cli import main\n"
        f"sys.argv = ['perceiver-calc', 'report', {str(EXAMPLE)!r}, '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('torch', 'transformers', 'numpy.testing') if m in sys.modules]\n"
        "assert not [m for m in bad if m != 'numpy.testing'], bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_console_script_exit_codes(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("perceiver-calc")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    ok = subprocess.run([exe, "report", str(EXAMPLE)], capture_output=True, text=True)
    assert ok.returncode == 0
    bad = tmp_path / "c.json"
    bad.write_text("{")
    proc = subprocess.run([exe, "report", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_config_reference_is_up_to_date() -> None:
    """docs/config-reference.md is generated from the code; regenerate it when this fails."""
    script = ROOT / "docs" / "gen_config_reference.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_report_workload_flags_json() -> None:
    """FLOPs and memory sections with the workload echoed; the pinned forward FLOPs of
    deepmind/language-perceiver at batch 1, 2048 tokens (FlopCounterMode on transformers)."""
    result = run("report", str(EXAMPLE), "-f", "json", "--mode", "training", "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workload"]["seq_len"] == 2048
    assert data["workload"]["mode"] == "training"
    assert data["flops"]["forward"] == 120_949_047_296
    assert data["flops"]["training_step"] == data["flops"]["forward"] + data["flops"]["backward"]
    mem = data["memory"]
    parts = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")
    assert mem["total_bytes"] == sum(mem[k] for k in parts)
    assert mem["weights_bytes"] == 4 * 201_108_230
    assert mem["optimizer_bytes"] == 8 * 201_108_230  # AdamW: two fp32 states
    # the activation figure is CUDA's (1-byte dropout masks); the table says so
    assert mem["device"] == "cuda"
    table = run("report", str(EXAMPLE), "--mode", "training", "--dtype", "fp32")
    row = rf"activations kept for backward \(as on CUDA\)\s+{mem['activations_bytes']:,}\s"
    assert re.search(row, table.stdout), table.stdout


def test_report_bad_workload_exit_2() -> None:
    result = run("report", str(EXAMPLE), "--seq-len", "4096")
    assert result.exit_code == 2
    assert "max_position_embeddings" in result.stderr
    result = run("report", str(EXAMPLE), "--image-size", "abc")
    assert result.exit_code == 2
    assert "--image-size 'abc': expected HxW" in result.stderr
    result = run("report", str(EXAMPLE), "--batch-size", "0")
    assert result.exit_code == 2
    assert "--batch-size (0)" in result.stderr


def test_default_workload_problems_are_warnings(tmp_path: Path) -> None:
    """A config whose natural input crashes transformers (a one-frame video) still gets its
    parameters reported; FLOPs and memory are left out with the reason."""
    data = json.loads((ROOT / "examples" / "multimodal-perceiver.json").read_text())
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**data, "num_frames": 1}))
    result = run("report", str(path), "-f", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "flops" not in out
    assert any("one-frame video" in f["rule"] for f in out["findings"])
    assert run("report", str(path), "--num-frames", "1").exit_code == 2


def test_cli_doc_is_up_to_date() -> None:
    """docs/cli.md is generated from the commands' --help; regenerate it when this fails."""
    script = ROOT / "docs" / "gen_cli_doc.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
