"""perceiver-calc: validate Perceiver configs and count parameters, FLOPs and memory exactly.

The public surface, for planning scripts::

    import perceiver_calc as pc

    config = pc.load_config("config.json")          # or a dict, or a transformers config
    resolved = pc.resolve(config, "PerceiverForMaskedLM")
    params = pc.count_params(resolved)
    workload = pc.Workload(batch_size=8, mode="training", dtype="mixed-bf16")
    flops = pc.count_flops(resolved, workload)      # exact, as FlopCounterMode counts
    memory = pc.count_memory(resolved, workload)    # exact integer bytes

Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and IDEs; at run time __getattr__ below
    from perceiver_calc.classes import CLASSES, ModelClassSpec
    from perceiver_calc.config import MODEL_CLASSES, ModelClass, PerceiverConfig, load_config
    from perceiver_calc.errors import ConfigError, Finding, InputError, PerceiverCalcError
    from perceiver_calc.flops import FlopCounts, ModuleFlops, count_flops
    from perceiver_calc.memory import MemoryCounts, count_memory
    from perceiver_calc.modules import Dim, ResolvedModel
    from perceiver_calc.params import ParamCounts, count_params
    from perceiver_calc.plan import compare, fit, pareto_front, training_plan
    from perceiver_calc.report import Report, build_report
    from perceiver_calc.resolve import model_class_of, resolve, validate
    from perceiver_calc.sweep import Sweep, SweepResult, evaluate, grid
    from perceiver_calc.sweep_io import evaluate_blocks
    from perceiver_calc.workload import Workload, check_workload, lengths

# Public name -> the module that defines it. Imported on first use (PEP 562), so that
# ``import perceiver_calc.cli`` loads only what the command it runs needs (the report path
# has an import-time budget: tests/test_import_budget.py).
_EXPORTS: dict[str, str] = {
    "CLASSES": "classes",
    "ModelClassSpec": "classes",
    "MODEL_CLASSES": "config",
    "ModelClass": "config",
    "PerceiverConfig": "config",
    "load_config": "config",
    "ConfigError": "errors",
    "Finding": "errors",
    "InputError": "errors",
    "PerceiverCalcError": "errors",
    "FlopCounts": "flops",
    "ModuleFlops": "flops",
    "count_flops": "flops",
    "MemoryCounts": "memory",
    "count_memory": "memory",
    "ParamCounts": "params",
    "count_params": "params",
    "Report": "report",
    "build_report": "report",
    "Dim": "modules",
    "ResolvedModel": "modules",
    "model_class_of": "resolve",
    "resolve": "resolve",
    "validate": "resolve",
    "Workload": "workload",
    "check_workload": "workload",
    "lengths": "workload",
    # the planning API (numpy; imported on first use)
    "Sweep": "sweep",
    "SweepResult": "sweep",
    "evaluate": "sweep",
    "grid": "sweep",
    "evaluate_blocks": "sweep_io",
    "compare": "plan",
    "fit": "plan",
    "pareto_front": "plan",
    "training_plan": "plan",
}

__all__ = [
    "CLASSES",
    "MODEL_CLASSES",
    "ConfigError",
    "Dim",
    "Finding",
    "FlopCounts",
    "InputError",
    "MemoryCounts",
    "ModelClass",
    "ModelClassSpec",
    "ModuleFlops",
    "ParamCounts",
    "PerceiverCalcError",
    "PerceiverConfig",
    "Report",
    "ResolvedModel",
    "Sweep",
    "SweepResult",
    "Workload",
    "build_report",
    "check_workload",
    "compare",
    "count_flops",
    "count_memory",
    "count_params",
    "evaluate",
    "evaluate_blocks",
    "fit",
    "grid",
    "lengths",
    "load_config",
    "model_class_of",
    "pareto_front",
    "resolve",
    "training_plan",
    "validate",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'perceiver_calc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"perceiver_calc.{module}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """``perceiver_calc.resolve`` is both a submodule and the public function: importing the
    submodule binds the module object to the package attribute, which would hide the function
    once anything imported it lazily. Keep the function there (as the eager imports did)."""

    @property
    def resolve(self) -> Any:
        override = self.__dict__.get("_resolve_override")
        if override is not None:
            return override
        return importlib.import_module("perceiver_calc.resolve").resolve

    @resolve.setter
    def resolve(self, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == "perceiver_calc.resolve":
            return  # the import system binding the submodule
        self.__dict__["_resolve_override"] = value  # e.g. a test's monkeypatch


sys.modules[__name__].__class__ = _Package
