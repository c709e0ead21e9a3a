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

from perceiver_calc.config import MODEL_CLASSES, ModelClass, PerceiverConfig, load_config
from perceiver_calc.errors import ConfigError, Finding, InputError, PerceiverCalcError
from perceiver_calc.flops import FlopCounts, ModuleFlops, count_flops
from perceiver_calc.memory import MemoryCounts, count_memory
from perceiver_calc.params import ParamCounts, count_params
from perceiver_calc.report import Report, build_report
from perceiver_calc.resolve import Dim, ResolvedModel, model_class_of, resolve, validate
from perceiver_calc.workload import Workload, check_workload, lengths

__all__ = [
    "MODEL_CLASSES",
    "ConfigError",
    "Dim",
    "Finding",
    "FlopCounts",
    "InputError",
    "MemoryCounts",
    "ModelClass",
    "ModuleFlops",
    "ParamCounts",
    "PerceiverCalcError",
    "PerceiverConfig",
    "Report",
    "ResolvedModel",
    "Workload",
    "build_report",
    "check_workload",
    "count_flops",
    "count_memory",
    "count_params",
    "lengths",
    "load_config",
    "model_class_of",
    "resolve",
    "validate",
]

__version__ = "0.1.0"
