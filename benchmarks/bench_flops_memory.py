"""FLOPs and memory: perceiver-calc's analytic counts vs the instrumenting tools, side by side.

For each config (default: examples/tiny.json, examples/language-perceiver.json at batch 1 x 2048
tokens, examples/vision-perceiver-conv.json at 224x224; the model class is the config's
`architectures`), every tool counts the same model on the same input:

  * perceiver-calc, as the CLI (`perceiver-calc report --format json --mode training`) and as
    the library (load_config, resolve, count_params, count_flops, count_memory(device="cpu"));
  * transformers' model built on the meta device + torch.utils.flop_counter.FlopCounterMode,
    forward and forward+backward (tests/hf_truth.py's hf_param_count and hf_flops);
  * transformers' model built for real on the CPU (fp32 weights) + FlopCounterMode (eval
    forward; training forward + backward), and the activations autograd saves for backward
    (tests/hf_truth.py's hf_saved_activations: unique storages, parameters excluded);
  * fvcore FlopCountAnalysis + ActivationCountAnalysis, ptflops get_model_complexity_info
    (pytorch and aten backends) and calflops calculate_flops, each on the CPU-built model, as
    their READMEs show them.

Method
  * Every tool runs as a fresh process (cold start, as a user runs it); runs go round-robin
    over the tools, so drift on a shared machine hits all of them alike. Wall time: median
    (min-max) of --runs runs after one untimed warm-up that loads every library once (page
    cache). Peak memory: ru_maxrss of the finished child, read by a fresh wrapper process per
    run (RUSAGE_CHILDREN then holds that run alone). The child also times its own phases
    (import, build, each count); the tables show their medians.
  * "Exact" is FlopCounterMode's figure on the meta model (the test suite proves perceiver-calc
    equals it) and, for activations, the bytes saved_tensors_hooks measures on the CPU model.
    Every ratio and every "equal" is computed in the run. fvcore and ptflops report MACs (one
    per multiply-add); they are doubled before the ratio, and the printed figure is shown too.
  * In-process: the median of --loops calls of resolve + count_params + count_flops +
    count_memory on an already-imported perceiver-calc (a config loaded once), and the median of
    5 meta-device counts (param count, forward, forward+backward) in one warm process.
  * Before timing, waits (up to --wait-load seconds, polling every 30 s) for the 1-minute load
    average to fall below 1.0; the page says whether it did.

Needs the test extras and the instrumenting tools (they are not test dependencies):

    pip install -c constraints.txt -e ".[test,bench]"     # bench = fvcore, ptflops, calflops
    python benchmarks/bench_flops_memory.py [--runs 3] [--config PATH ...] [--no-write]

Writes docs/benchmarks/flops-memory.md (the figures, machine, load and command) unless
--no-write. A tool that is not installed, or that fails on a model, is reported with its error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _child import run_child  # benchmarks/_child.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = (
    "examples/tiny.json",
    "examples/language-perceiver.json",
    "examples/vision-perceiver-conv.json",
)
OUT = ROOT / "docs" / "benchmarks" / "flops-memory.md"
# The child prints its result on one line after this marker: the tools print to stdout too.
MARK = "@@bench-flops-memory@@ "
LOAD_TARGET = 1.0
LOAD_POLL_S = 30


# --------------------------------------------------------------------------------------------
# Child side: one tool, one config, one fresh process
# --------------------------------------------------------------------------------------------


class Phases:
    """Wall seconds of each named step of a child run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


def _hf_fields(path: str) -> tuple[str, dict[str, Any]]:
    """(model class, PerceiverConfig keyword arguments), the class from `architectures` as
    bench_cold_start.py and the CLI pick it."""
    data = json.loads(Path(path).read_text())
    model_class = (data.get("architectures") or ["PerceiverForMaskedLM"])[0]
    drop = ("architectures", "transformers_version")
    return model_class, {k: v for k, v in data.items() if k not in drop}


def _error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def child_calc(path: str, ph: Phases) -> dict[str, Any]:
    with ph("import"):
        import perceiver_calc as pc
    with ph("count"):
        resolved = pc.resolve(pc.load_config(path))
        workload = pc.Workload(mode="training")
        params = pc.count_params(resolved).total
        flops = pc.count_flops(resolved, workload)
        # device="cpu": CPU dropout keeps a float mask, as the CPU measurement below sees.
        memory = pc.count_memory(resolved, workload, device="cpu")
    return {
        "params": params,
        "forward_printed": flops.forward,
        "forward_unit": "FLOP",
        "forward": flops.forward,
        "fwd_bwd": flops.forward + flops.backward,
        "activation_bytes": memory.activations_bytes,
        "elementwise_forward": flops.elementwise_forward,
    }


def child_meta(path: str, ph: Phases, warm: int = 0) -> dict[str, Any]:
    with ph("import"):
        sys.path.insert(0, str(ROOT))
        from tests import hf_truth as ht
    model_class, fields = _hf_fields(path)
    w = ht.Workload(with_labels=model_class in ht.LABEL_CLASSES)

    def count() -> tuple[int, int, int, str]:
        # Each hf_* call builds its own meta model: milliseconds, no weights.
        with ph("params"):
            params = ht.hf_param_count(model_class, fields)
        with ph("forward"):
            fwd = ht.hf_flops(model_class, fields, w)
        with ph("forward+backward"):
            both = ht.hf_flops(model_class, fields, w, backward=True)
        return params, fwd.total, both.total, both.device

    params, fwd, both, device = count()
    out: dict[str, Any] = {
        "params": params,
        "forward_printed": fwd,
        "forward_unit": "FLOP",
        "forward": fwd,
        "fwd_bwd": both,
        "device": device,
    }
    if warm:
        times = []
        for _ in range(warm):
            t = time.perf_counter()
            count()
            times.append(time.perf_counter() - t)
        out["warm_s"] = statistics.median(times)
    return out


def _cpu_model(path: str, ph: Phases) -> tuple[Any, Any, str, dict[str, Any], Any]:
    """(hf_truth, model built on CPU in eval mode, class, fields, eval-forward kwargs)."""
    with ph("import"):
        sys.path.insert(0, str(ROOT))
        from tests import hf_truth as ht
    model_class, fields = _hf_fields(path)
    with ph("build"):
        model = ht.build_hf_model(model_class, fields, device="cpu")
        kwargs = ht.make_inputs(model_class, fields, ht.Workload(), device="cpu")
    return ht, model, model_class, fields, kwargs


def child_cpu(path: str, ph: Phases) -> dict[str, Any]:
    ht, model, model_class, fields, kwargs = _cpu_model(path, ph)
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    with ph("forward"):
        # As hf_truth does: grad mode on (no_grad trips FlopCounterMode's ModuleTracker), no
        # parameter requiring grad, so no autograd graph is kept.
        for p in model.parameters():
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as fc:
            model(**kwargs)
        fwd = int(fc.get_total_flops())
    w = ht.Workload(training=True, with_labels=model_class in ht.LABEL_CLASSES)
    with ph("forward+backward"):
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        train_kwargs = ht.make_inputs(model_class, fields, w, device="cpu")
        with FlopCounterMode(display=False) as fc:
            ht._loss(model(**train_kwargs)).backward()
        both = int(fc.get_total_flops())
        model.zero_grad(set_to_none=True)
    with ph("saved activations"):
        # hf_saved_activations builds its own model; hand it this one instead, so the tool's
        # cost is one weight initialisation, as a user measuring by hand would pay.
        from unittest import mock

        with mock.patch.object(ht, "build_hf_model", lambda *_a, **_k: model):
            saved = ht.hf_saved_activations(model_class, fields, w, device="cpu")
    return {
        "params": params,
        "forward_printed": fwd,
        "forward_unit": "FLOP",
        "forward": fwd,
        "fwd_bwd": both,
        "activation_bytes": saved.total_bytes,
    }


def child_fvcore(path: str, ph: Phases) -> dict[str, Any]:
    with ph("import"):
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis, parameter_count
    _ht, model, _cls, _fields, kwargs = _cpu_model(path, ph)
    # fvcore traces with torch.jit and takes positional inputs; `inputs` is the first
    # positional argument of every Perceiver forward.
    inputs = (kwargs["inputs"],)
    out: dict[str, Any] = {"params": parameter_count(model)[""], "forward_unit": "MAC"}
    with ph("forward"):
        try:
            fa = FlopCountAnalysis(model, inputs)
            fa.unsupported_ops_warnings(False)
            fa.uncalled_modules_warnings(False)
            out["forward_printed"] = int(fa.total())
            out["forward"] = 2 * out["forward_printed"]
            out["by_operator"] = {k: int(v) for k, v in fa.by_operator().items()}
            out["unsupported"] = {k: int(v) for k, v in fa.unsupported_ops().items()}
        except Exception as exc:  # a tool's failure is a result
            out["error"] = _error(exc)
    with ph("activations"):
        try:
            ac = ActivationCountAnalysis(model, inputs)
            ac.unsupported_ops_warnings(False)
            ac.uncalled_modules_warnings(False)
            out["activation_elements"] = int(ac.total())
        except Exception as exc:
            out["activation_error"] = _error(exc)
    return out


def _child_ptflops(path: str, ph: Phases, backend: str) -> dict[str, Any]:
    with ph("import"):
        from ptflops import get_model_complexity_info
    _ht, model, _cls, _fields, kwargs = _cpu_model(path, ph)
    captured = io.StringIO()
    with ph("forward"), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        # input_constructor: ptflops then calls model(**kwargs), the real Perceiver inputs.
        macs, params = get_model_complexity_info(
            model,
            (1,),
            input_constructor=lambda _res: dict(kwargs),
            as_strings=False,
            print_per_layer_stat=False,
            backend=backend,
        )
    out: dict[str, Any] = {"forward_unit": "MAC"}
    if params is not None:
        out["params"] = int(params)
    if macs is None:
        # ptflops catches the exception itself, prints it and returns (None, None).
        lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
        out["error"] = " ".join(lines[-1:])[:300] or "returned None"
    else:
        out["forward_printed"] = int(macs)
        out["forward"] = 2 * int(macs)
    return out


def child_ptflops_pytorch(path: str, ph: Phases) -> dict[str, Any]:
    return _child_ptflops(path, ph, "pytorch")


def child_ptflops_aten(path: str, ph: Phases) -> dict[str, Any]:
    return _child_ptflops(path, ph, "aten")


def child_calflops(path: str, ph: Phases) -> dict[str, Any]:
    with ph("import"):
        from calflops import calculate_flops
    _ht, model, _cls, _fields, kwargs = _cpu_model(path, ph)
    # calflops moves every kwarg with .to(device): drop the None attention mask.
    tensors = {k: v for k, v in kwargs.items() if v is not None}
    out: dict[str, Any] = {"forward_unit": "FLOP"}
    quiet = dict(print_results=False, print_detailed=False, output_as_string=False)
    try:
        with ph("forward"):
            flops, macs, params = calculate_flops(model, kwargs=dict(tensors), **quiet)
        # include_backPropagation runs the same forward again and scales its result by
        # 1 + compute_bp_factor; no backward runs.
        with ph("forward again, include_backPropagation"):
            both, _macs, _params = calculate_flops(
                model, kwargs=dict(tensors), include_backPropagation=True, **quiet
            )
        out |= {
            "params": int(params),
            "forward_printed": int(flops),
            "forward": int(flops),
            "macs": int(macs),
            "fwd_bwd": int(both),
        }
    except Exception as exc:
        out["error"] = _error(exc)
    return out


CHILDREN: dict[str, Callable[[str, Phases], dict[str, Any]]] = {
    "calc": child_calc,
    "meta": child_meta,
    "cpu": child_cpu,
    "fvcore": child_fvcore,
    "ptflops-pytorch": child_ptflops_pytorch,
    "ptflops-aten": child_ptflops_aten,
    "calflops": child_calflops,
}


def child_main(tool: str, path: str, warm: int) -> None:
    ph = Phases()
    try:
        if tool == "warmup":
            # Load every library once so the timed runs start from a warm page cache.
            for name in ("perceiver_calc", "torch", "transformers", "fvcore", "ptflops"):
                with contextlib.suppress(ImportError):
                    __import__(name)
            with contextlib.suppress(Exception):
                __import__("calflops")
            result: dict[str, Any] = {}
        elif tool == "meta":
            result = child_meta(path, ph, warm=warm)
        else:
            result = CHILDREN[tool](path, ph)
    except ImportError as exc:
        result = {"error": f"not installed: {_error(exc)}"}
    except Exception as exc:  # a tool's failure is a result, reported in the table
        result = {"error": _error(exc)}
    result["phases"] = ph.seconds
    sys.stdout.flush()
    print(MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent side: run the children, time them, write the page
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    key: str
    label: str
    note: str  # what the tool counts, read from its source or docs


TOOLS: tuple[Tool, ...] = (
    Tool(
        "cli",
        "perceiver-calc report (CLI)",
        "JSON report, `--mode training`; its activations model CUDA (1-byte dropout masks)",
    ),
    Tool(
        "calc",
        "perceiver-calc (library)",
        'resolve + count_params/flops/memory(device="cpu"); no torch',
    ),
    Tool("meta", "transformers on meta + FlopCounterMode", "no weights; matmul-like aten ops"),
    Tool(
        "cpu",
        "transformers on CPU + FlopCounterMode + saved_tensors_hooks",
        "fp32 weights; eval forward, training forward + backward, saved storages",
    ),
    Tool(
        "fvcore",
        "fvcore FlopCountAnalysis",
        "jit trace; MACs of matmul/linear/conv/einsum, norms (layer_norm, batch_norm) too",
    ),
    Tool(
        "ptflops-pytorch",
        "ptflops, pytorch backend",
        "module hooks (Linear with bias, LayerNorm, GELU, conv, BN, pool) + patched "
        "torch.matmul/bmm/add/mul, F.softmax/gelu; MACs",
    ),
    Tool(
        "ptflops-aten",
        "ptflops, aten backend",
        "aten mm/matmul/addmm/bmm/convolution; MACs, +1 per output for addmm/conv bias",
    ),
    Tool(
        "calflops",
        "calflops",
        "patched torch/F functions and module hooks; FLOPs; backward = its compute_bp_factor",
    ),
)


@dataclass
class Runs:
    """The timed runs of one tool on one config."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    differs: bool = False  # figures changed between runs (they never should)


def command(tool: str, config: str, warm: int = 0) -> list[str]:
    if tool == "cli":
        exe = shutil.which("perceiver-calc") or str(
            Path(sys.executable).with_name("perceiver-calc")
        )
        return [exe, "report", config, "--format", "json", "--mode", "training"]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", tool, config]
    return [*cmd, "--warm", str(warm)] if warm else cmd


def parse(tool: str, out: str, rc: int, err: str) -> dict[str, Any]:
    if tool == "cli":
        if rc != 0:
            return {"error": f"exit {rc}: {err.strip()[-300:]}"}
        data = json.loads(out)
        return {
            "params": data["params"]["total"],
            "forward_printed": data["flops"]["forward"],
            "forward_unit": "FLOP",
            "forward": data["flops"]["forward"],
            "fwd_bwd": data["flops"]["forward"] + data["flops"]["backward"],
            "activation_bytes_cuda": data["memory"]["activations_bytes"],
        }
    lines = [ln for ln in out.splitlines() if ln.startswith(MARK)]
    if rc != 0 or not lines:
        return {"error": f"exit {rc}: {err.strip()[-300:]}"}
    return json.loads(lines[-1][len(MARK) :])  # type: ignore[no-any-return]


FIGURES = ("params", "forward_printed", "forward", "fwd_bwd", "activation_bytes", "error")


def wait_for_load(max_wait_s: int) -> tuple[float, bool]:
    """Seconds waited, and whether the 1-minute load average fell below LOAD_TARGET."""
    t = time.monotonic()
    while os.getloadavg()[0] >= LOAD_TARGET:
        waited = time.monotonic() - t
        if waited >= max_wait_s:
            return waited, False
        print(f"load {os.getloadavg()[0]:.2f} >= {LOAD_TARGET}; waiting ({waited:.0f} s)")
        time.sleep(LOAD_POLL_S)
    return time.monotonic() - t, True


def in_process_calc(config: str, loops: int) -> float:
    """Median seconds of resolve + all counts on an imported library, config loaded once."""
    import perceiver_calc as pc

    loaded = pc.load_config(config)
    workload = pc.Workload(mode="training")
    times = []
    for _ in range(loops):
        t = time.perf_counter()
        resolved = pc.resolve(loaded)
        pc.count_params(resolved)
        pc.count_flops(resolved, workload)
        pc.count_memory(resolved, workload, device="cpu")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def describe_workload(config: str) -> str:
    import perceiver_calc as pc
    from perceiver_calc.workload import resolved_inputs

    resolved = pc.resolve(pc.load_config(config))
    shape = resolved_inputs(resolved, pc.Workload())
    if shape.seq_len is not None:
        size = f"{shape.seq_len} tokens"
    else:
        assert shape.image_size is not None
        size = f"{shape.image_size[0]}x{shape.image_size[1]} images"
    return f"{resolved.model}, batch {shape.batch_size}, {size}"


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def si(x: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3f} {prefix}{unit}"
    return f"{x:.0f} {unit}"


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def ratio(x: int | None, exact: int | None) -> str:
    if x is None or not exact:
        return "-"
    if x == exact:
        return "**= 1**"
    return f"{x / exact:.4f}"


def figure_rows(results: dict[str, Runs], exact: dict[str, int | None]) -> list[str]:
    rows = [
        "| tool | parameters | forward as printed | forward FLOPs (2/MAC) | vs exact "
        "| forward + backward FLOPs | vs exact | activations for backward | vs measured |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tool in TOOLS:
        if tool.key not in results:
            continue
        r = results[tool.key].result
        params = f"{r['params']:,}" if "params" in r else "-"
        if "forward" in r:
            printed = si(r["forward_printed"], r["forward_unit"])
            fwd = si(r["forward"], "FLOP")
        else:
            printed = fwd = "fails" if "error" in r else "-"
        both = si(r["fwd_bwd"], "FLOP") if "fwd_bwd" in r else "-"
        if "activation_bytes" in r:
            act = mib(r["activation_bytes"])
            act_ratio = ratio(r["activation_bytes"], exact["activation_bytes"])
        elif "activation_bytes_cuda" in r:
            act = mib(r["activation_bytes_cuda"]) + " (CUDA)"
            act_ratio = ratio(r["activation_bytes_cuda"], exact["activation_bytes"])
        elif "activation_elements" in r:
            # fvcore counts output elements of the ops it handles, not bytes kept for backward;
            # x 4 bytes (fp32) only to put it on the same scale.
            n = r["activation_elements"]
            act = f"{n:,} elements (x4 B = {mib(4 * n)})"
            act_ratio = ratio(4 * r["activation_elements"], exact["activation_bytes"])
        else:
            act, act_ratio = "-", "-"
        fwd_ratio = ratio(r.get("forward"), exact["forward"])
        both_ratio = ratio(r.get("fwd_bwd"), exact["fwd_bwd"])
        rows.append(
            f"| {tool.label} | {params} | {printed} | {fwd} | {fwd_ratio} "
            f"| {both} | {both_ratio} | {act} | {act_ratio} |"
        )
    return rows


def cost_rows(results: dict[str, Runs]) -> list[str]:
    rows = [
        "| tool | median wall (s) | min-max (s) | CPU, median (s) | peak RSS (MiB) "
        "| wall / CLI's | RSS / CLI's | phases inside the child, median (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    cli = results.get("cli")
    for tool in TOOLS:
        if tool.key not in results:
            continue
        runs = results[tool.key]
        wall, rss = statistics.median(runs.wall), max(runs.rss)
        names = list(runs.phases[0]) if runs.phases else []
        phases = ", ".join(
            f"{n} {statistics.median(p.get(n, 0.0) for p in runs.phases):.3f}" for n in names
        )
        vs_wall = f"{wall / statistics.median(cli.wall):,.1f}x" if cli else "-"
        vs_rss = f"{rss / max(cli.rss):,.1f}x" if cli else "-"
        rows.append(
            f"| {tool.label} | {wall:.3f} | {min(runs.wall):.3f}-{max(runs.wall):.3f} "
            f"| {statistics.median(runs.cpu):.2f} | {rss / 2**20:,.1f} | {vs_wall} | {vs_rss} "
            f"| {phases or '-'} |"
        )
    return rows


def notes(results: dict[str, Runs], exact: dict[str, int | None]) -> list[str]:
    lines = []
    for tool in TOOLS:
        if tool.key not in results:
            continue
        r = results[tool.key].result
        parts = [tool.note]
        if "error" in r:
            parts.append(f"**failed**: `{r['error']}`")
        if "activation_error" in r:
            parts.append(f"ActivationCountAnalysis failed: `{r['activation_error']}`")
        if r.get("unsupported"):
            ops = ", ".join(f"{k} x{v}" for k, v in sorted(r["unsupported"].items()))
            parts.append(f"ops it reports as unsupported (counted 0): {ops}")
        if r.get("by_operator"):
            ops = ", ".join(f"{k} {si(v, 'MAC')}" for k, v in sorted(r["by_operator"].items()))
            parts.append(f"by operator: {ops}")
        if "macs" in r:
            parts.append(
                f"MACs it reports: {si(r['macs'], 'MAC')} "
                f"(x2 vs exact: {ratio(2 * r['macs'], exact['forward'])})"
            )
        if "elementwise_forward" in r:
            parts.append(
                "elementwise forward work, a separate estimate, not in the headline: "
                + si(r["elementwise_forward"], "FLOP")
            )
        if r.get("device") not in (None, "meta"):
            parts.append(f"meta forward failed; counted on {r['device']}")
        if "fwd_bwd" in r and exact["forward"] and tool.key == "calflops":
            parts.append(f"its forward+backward is {r['fwd_bwd'] / r['forward']:.2f}x its forward")
        if results[tool.key].differs:
            parts.append("**figures differed between runs**")
        lines.append(f"- {tool.label}: " + "; ".join(parts) + ".")
    return lines


def exact_figures(results: dict[str, Runs]) -> dict[str, int | None]:
    """FlopCounterMode on meta (CPU if meta failed); activations as measured on the CPU."""
    meta = results.get("meta", Runs()).result
    cpu = results.get("cpu", Runs()).result
    return {
        "forward": meta.get("forward", cpu.get("forward")),
        "fwd_bwd": meta.get("fwd_bwd", cpu.get("fwd_bwd")),
        "activation_bytes": cpu.get("activation_bytes"),
    }


def summary_rows(all_results: dict[str, dict[str, Runs]]) -> list[str]:
    """One line per config: cost of the three exact routes, and how far the others land."""
    rows = [
        "| config | exact forward | perceiver-calc CLI | meta + FlopCounterMode "
        "| CPU + FlopCounterMode + hooks | fvcore / ptflops / calflops forward vs exact |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cost(runs: Runs | None) -> str:
        if runs is None:
            return "-"
        return f"{statistics.median(runs.wall):.2f} s, {max(runs.rss) / 2**20:,.0f} MiB"

    for config, results in all_results.items():
        exact = exact_figures(results)
        ratios = [
            results[k].result["forward"] / exact["forward"]
            for k in ("fvcore", "ptflops-pytorch", "ptflops-aten", "calflops")
            if k in results and "forward" in results[k].result and exact["forward"]
        ]
        spread = f"{min(ratios):.4f}-{max(ratios):.4f}" if ratios else "-"
        fwd = si(exact["forward"], "FLOP") if exact["forward"] else "-"
        rows.append(
            f"| `{_rel(config)}` | {fwd} | {cost(results.get('cli'))} "
            f"| {cost(results.get('meta'))} | {cost(results.get('cpu'))} | {spread} |"
        )
    return rows


def agreement(results: dict[str, Runs], exact: dict[str, int | None]) -> str:
    calc = results.get("calc", Runs()).result
    cpu = results.get("cpu", Runs()).result
    checks = [
        ("forward", calc.get("forward"), exact["forward"], "meta FlopCounterMode"),
        ("forward + backward", calc.get("fwd_bwd"), exact["fwd_bwd"], "meta FlopCounterMode"),
        ("parameters", calc.get("params"), results.get("meta", Runs()).result.get("params"), ""),
        ("activations", calc.get("activation_bytes"), exact["activation_bytes"], "CPU hooks"),
        ("CPU forward FLOPs vs meta", cpu.get("forward"), exact["forward"], ""),
    ]
    said = []
    for name, got, want, _ in checks:
        if got is None or want is None:
            said.append(f"{name}: not compared (a tool failed)")
        elif got == want:
            said.append(f"{name} equal ({got:,})")
        else:
            said.append(f"{name} DIFFER ({got:,} vs {want:,})")
    return "perceiver-calc (library) vs the instruments, computed in this run: " + "; ".join(said)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--config", nargs="+", default=list(DEFAULT_CONFIGS))
    ap.add_argument("--tools", nargs="+", default=[t.key for t in TOOLS])
    ap.add_argument("--loops", type=int, default=100, help="in-process calls of the library")
    ap.add_argument("--wait-load", type=int, default=1200, help="max seconds to wait for load")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=int, default=0, help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.child:
        child_main(args.child, rest[0], args.warm)
        return

    waited, load_ok = wait_for_load(args.wait_load)
    load_start = os.getloadavg()
    started = datetime.datetime.now()
    run_child(command("warmup", args.config[0]))
    run_child(command("cli", args.config[0]))

    all_results: dict[str, dict[str, Runs]] = {}
    for config in args.config:
        results = {t: Runs() for t in args.tools}
        # Round-robin over the tools: drift on a shared machine hits them alike.
        for i in range(args.runs):
            for tool in args.tools:
                child = run_child(command(tool, config))
                res = parse(tool, child.out, child.rc, child.err)
                runs = results[tool]
                runs.wall.append(child.wall)
                runs.cpu.append(child.cpu)
                runs.rss.append(child.rss)
                runs.phases.append(res.pop("phases", {}))
                if runs.result and any(runs.result.get(k) != res.get(k) for k in FIGURES):
                    runs.differs = True
                runs.result = res
                print(
                    f"{config} run {i + 1}/{args.runs} {tool:16s} {child.wall:7.2f} s "
                    f"(cpu {child.cpu:6.2f} s) {child.rss / 2**20:8.1f} MiB "
                    f"{res.get('error', '')[:80]}",
                    flush=True,
                )
        all_results[config] = results
    in_process = {c: in_process_calc(c, args.loops) for c in args.config}
    meta_warm: dict[str, float | None] = {}
    if "meta" in args.tools:
        for config in args.config:
            child = run_child(command("meta", config, warm=5))
            meta_warm[config] = parse("meta", child.out, child.rc, child.err).get("warm_s")
    load_end = os.getloadavg()
    elapsed = (datetime.datetime.now() - started).total_seconds()

    lines = render(args, all_results, in_process, meta_warm, load_start, load_end, waited, load_ok)
    lines.append(f"The run took {elapsed:.0f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT}")


def _rel(config: str) -> str:
    path = Path(config).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else config


def _versions() -> str:
    from importlib import metadata

    found = []
    for name in ("torch", "transformers", "fvcore", "ptflops", "calflops", "numpy"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def _load(avg: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in avg)


def render(
    args: argparse.Namespace,
    all_results: dict[str, dict[str, Runs]],
    in_process: dict[str, float],
    meta_warm: dict[str, float | None],
    load_start: tuple[float, float, float],
    load_end: tuple[float, float, float],
    waited: float,
    load_ok: bool,
) -> list[str]:
    cmd = "python benchmarks/bench_flops_memory.py"
    if args.runs != 3:
        cmd += f" --runs {args.runs}"
    if list(args.config) != list(DEFAULT_CONFIGS):
        cmd += " --config " + " ".join(_rel(c) for c in args.config)
    if list(args.tools) != [t.key for t in TOOLS]:
        cmd += " --tools " + " ".join(args.tools)
    lines = [
        "# FLOPs and memory: perceiver-calc vs the instrumenting tools",
        "",
        "The same model and input for every tool: perceiver-calc's analytic counts next to",
        "transformers' model under `torch.utils.flop_counter.FlopCounterMode` (built on the",
        "meta device, and built for real on the CPU with the activations autograd saves",
        "measured by `saved_tensors_hooks`), and next to fvcore, ptflops and calflops. Each",
        f"tool runs as a fresh process (cold start), {args.runs} runs after one warm-up,",
        "round-robin; wall time is the median (min-max), memory the largest peak RSS of a run,",
        "CPU the child's user + system seconds (all threads). Written by",
        "[`benchmarks/bench_flops_memory.py`](../../benchmarks/bench_flops_memory.py), whose",
        "docstring gives the method; every figure below was computed in the run.",
        "",
        "```sh",
        'pip install -c constraints.txt -e ".[test,bench]"   # fvcore, ptflops, calflops',
        cmd,
        "```",
        "",
        "**Exact** is FlopCounterMode's count on the meta model (2 FLOPs per multiply-add,",
        "matmul-like ops only: what perceiver-calc's headline counts, see",
        "[conventions](../conventions.md)); activations are compared with the bytes measured",
        "on the CPU model (fp32, training mode with labels, CPU dropout masks). fvcore and",
        "ptflops print MACs; the 2/MAC column doubles them. `= 1` means equal integers.",
        "",
        "## Summary (cold start: median wall, peak RSS)",
        "",
        *summary_rows(all_results),
        "",
        "The third-party forward figures include work FlopCounterMode leaves out (bias adds,",
        "norms, elementwise ops, each tool its own choice: see the notes under each table);",
        "calflops' backward is its forward times a fixed factor (`compute_bp_factor`), not a",
        "count; fvcore's activation count is output elements of the ops it handles, not what",
        "autograd keeps for backward. Only FlopCounterMode measures a backward.",
        "",
    ]
    for config, results in all_results.items():
        exact = exact_figures(results)
        lines += [
            f"## `{_rel(config)}`: {describe_workload(config)}",
            "",
            "Cost, cold start:",
            "",
            *cost_rows(results),
            "",
            "Figures each tool reports:",
            "",
            *figure_rows(results, exact),
            "",
            agreement(results, exact) + ".",
            "",
            *notes(results, exact),
            "",
        ]
    lines += [
        "## In-process: counts in a loop",
        "",
        f"perceiver-calc: median of {args.loops} calls of `resolve` + `count_params` +",
        '`count_flops` + `count_memory(device="cpu")` (training workload) on an imported library,',
        "the config loaded once. Meta: median of 5 rounds of `hf_param_count` + forward and",
        "forward+backward `hf_flops` (each builds a meta model) in one warm process.",
        "",
        "| config | perceiver-calc in-process (ms) | perceiver-calc cold, CLI (s) "
        "| meta + FlopCounterMode in-process (s) | in-process ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for config in args.config:
        cli = all_results[config].get("cli")
        cold = f"{statistics.median(cli.wall):.3f}" if cli else "-"
        warm = meta_warm.get(config)
        lines.append(
            f"| `{_rel(config)}` | {in_process[config] * 1e3:.2f} | {cold} "
            f"| {f'{warm:.3f}' if warm else '-'} "
            f"| {f'{warm / in_process[config]:,.0f}x' if warm else '-'} |"
        )
    waited_text = (
        f"waited {waited:.0f} s for the 1-minute load average to fall below {LOAD_TARGET}"
        if load_ok
        else f"**the 1-minute load average stayed at or above {LOAD_TARGET} for {waited:.0f} s;"
        " ran anyway** (figures may be slowed by other work)"
    )
    lines += [
        "",
        "## Machine and run",
        "",
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {_versions()}.",
        f"Measured {datetime.date.today().isoformat()}; {waited_text}. Load average "
        f"(1 / 5 / 15 min) at the start {_load(load_start)}, at the end {_load(load_end)}",
        "(the end figure includes this benchmark's own work; the machine may be shared).",
    ]
    return lines


if __name__ == "__main__":
    main()
