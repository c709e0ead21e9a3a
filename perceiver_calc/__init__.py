"""perceiver-calc: validate Perceiver configs and count parameters, FLOPs and memory exactly.

The public surface, for planning scripts::

    import perceiver_calc as pc

    config = pc.load_config("config.json")          # or a dict, or a transformers config
    resolved = pc.resolve(config, "PerceiverForMaskedLM")
    params = pc.count_params(resolved)
    print(params.total, params.by_module)

Nothing here imports torch.
"""

from perceiver_calc.config import MODEL_CLASSES, ModelClass, PerceiverConfig, load_config
from perceiver_calc.errors import ConfigError, Finding, InputError, PerceiverCalcError
from perceiver_calc.params import ParamCounts, count_params
from perceiver_calc.report import Report, build_report
from perceiver_calc.resolve import Dim, ResolvedModel, model_class_of, resolve

__all__ = [
    "MODEL_CLASSES",
    "ConfigError",
    "Dim",
    "Finding",
    "InputError",
    "ModelClass",
    "ParamCounts",
    "PerceiverCalcError",
    "PerceiverConfig",
    "Report",
    "ResolvedModel",
    "build_report",
    "count_params",
    "load_config",
    "model_class_of",
    "resolve",
]

__version__ = "0.1.0"
