"""The original tool's configuration keys, in the schema mini-language, and its algorithm names.

Each algorithm's ``params`` accept the keys that tool accepted for it; the
values are checked as it documented them. What this tool does with them is
``rewriter.config.pot``'s job.
"""
from __future__ import annotations

import re
from typing import Mapping, get_args

from rewriter.calibrate.aggregators import AGGREGATORS
from rewriter.calibrate.estimators import ESTIMATORS
from rewriter.config.schema import BOOL, FREE, STR, Field, enum, integer, number, section
from rewriter.spec.model import PRESETS, Granularity, Mode

#: Algorithms that quantize (one per file); their params set QuantizeOptions.
QUANTIZING = ("DefaultQuantization", "MinMaxQuantization", "AccuracyAwareQuantization")
#: Algorithm names checked in full.
ALGORITHMS = ("DefaultQuantization", "MinMaxQuantization", "FastBiasCorrection", "BiasCorrection",
              "ActivationChannelAlignment", "AccuracyAwareQuantization", "TPE")
#: The original tool's other algorithms: accepted (params unchecked) and reported as not implemented.
OTHER_POT_ALGORITHMS = ("TunableQuantization", "DataFreeQuantization", "OverflowCorrection", "RangeOptimization",
                        "ParamsTuningSearch", "Ranger", "RangeSupervision", "MagnitudeSparsity", "BaseWeightSparsity",
                        "WeightSparsity")

#: Features the quantize pipeline does not run yet, with what the user is told. Remove an entry
#: when the pipeline wires the feature; the loader reports the rest in ``LoadedConfig.unsupported``.
NOT_RUN_YET: dict[str, str] = {}

#: What this tool does not implement at all.
NOT_IMPLEMENTED = {
    "AccuracyAwareQuantization": "AccuracyAwareQuantization needs an accuracy metric: give --metric FILE.py:FUNCTION "
                                 "(or metric= in the API); without one only its base algorithm ({base}) runs",
    "aaq_param": "{key} is accepted but not run: {why}",
    "optimizer": "the 'optimizer' section (TPE) is not implemented; it is ignored",
    "other": "{name} is not implemented; the entry is ignored (its params are not checked)",
}


#: AccuracyAwareQuantization parameters this tool accepts but does not run, and why.
AAQ_NOT_RUN = {
    "tune_hyperparams": "the range-estimator grid search is TPE's job here (--tpe)",
    "metric_subset_ratio": "it applies to the metrics' baseline_value, which are not used (the float model is "
                           "measured with --metric)",
    "annotation_free": "the search needs the --metric function's annotated data",
    "annotation_conf_threshold": "it belongs to annotation_free, which is not run",
    "metrics": "the metric is the --metric function; the float model is measured, not given",
}

#: The preset names that tool also accepted.
PRESET_ALIASES = {"symmetric": "performance", "asymmetric": "accuracy"}

_SIDE = dict(type=enum(*ESTIMATORS), outlier_prob=number(0, 0.5, high_open=True),
             granularity=enum(*get_args(Granularity)), clipping_value=number())
_RANGE_W = section(preset=enum("default", "quantile"), min=section(**_SIDE), max=section(**_SIDE))
_SIDE_A = section(**_SIDE, aggregator=enum(*AGGREGATORS))
_RANGE_A = section(preset=enum("default", "quantile"), min=_SIDE_A, max=_SIDE_A)
_QUANT = dict(bits=integer(2), mode=enum(*get_args(Mode)), level_low=integer(), level_high=integer(),
              granularity=enum(*get_args(Granularity)))
_IGNORED = section(scope=Field("list", item=STR, example='["conv1"]'),
                   operations=Field("list", item=section(("type",), type=STR, attributes=FREE),
                                    example='[{"type": "Convolution"}]'),
                   skip_model=BOOL)
_DATA = dict(stat_subset_size=integer(1), stat_batch_size=integer(1), shuffle_data=BOOL, seed=integer(0),
             ignored=_IGNORED)
_MINMAX = dict(_DATA, preset=enum(*PRESETS, aliases=PRESET_ALIASES), range_estimator=_RANGE_W,
               weights=section(**_QUANT, range_estimator=_RANGE_W),
               activations=section(**_QUANT, range_estimator=_RANGE_A),
               inplace_statistics=BOOL, saturation_fix=enum("first_layer", "all", "no"),
               smoothing_alpha=number(0, 1, high_open=True),
               # This tool's self-check and fidelity guard (docs/fidelity.md).
               self_check=BOOL, self_check_samples=integer(1), fidelity_guard=BOOL,
               fidelity_guard_threshold=number(-999, 999), fidelity_guard_budget=integer(1))
_BIAS = dict(_DATA, apply_for_all_nodes=BOOL, threshold=number(0, low_open=True))
LAYERWISE = dict(num_samples_for_tuning=integer(1), batch_size=integer(1), optimizer=STR, loss=STR,
                  tuning_iterations=integer(1), random_seed=integer(0), use_ranking_subset=BOOL,
                  calibration_indices_pool=integer(1), calculate_grads_on_loss_increase_only=BOOL,
                  weight_decay=number(0))
#: The layer-wise tuning keys the grid search honours; the others (POT's torch optimizer settings) are reported.
LAYERWISE_HONOURED = ("num_samples_for_tuning",)
_DEFAULT = dict(_MINMAX, **_BIAS, use_fast_bias=BOOL, use_layerwise_tuning=BOOL, **LAYERWISE)
_METRICS = Field("list", item=section(("name",), name=STR, baseline_value=number()),
                 example='[{"name": "accuracy", "baseline_value": 0.72}]')
AAQ_PARAMS = dict(maximal_drop=number(0), drop_type=enum("absolute", "relative"), max_iter_num=integer(1),
                  ranking_subset_size=integer(1), metric_subset_ratio=number(0, 1, low_open=True),
                  tune_hyperparams=BOOL, convert_to_mixed_preset=BOOL, use_prev_if_drop_increase=BOOL,
                  annotation_free=BOOL, annotation_conf_threshold=number(0, 1), metrics=_METRICS,
                  base_algorithm=enum("DefaultQuantization", "MinMaxQuantization"))
TPE_PARAMS = dict(max_trials=integer(1), max_minutes=number(0, low_open=True), stop_on_target=BOOL,
                  eval_subset_size=integer(1),
                  trials_load_method=enum("cold_start", "warm_start", "fine_tune", "eval"), accuracy_loss=number(0),
                  latency_reduce=number(0), accuracy_weight=number(0), latency_weight=number(0), metrics=_METRICS,
                  benchmark=FREE, multinode=FREE)
PARAMS: dict[str, Mapping[str, Field]] = {
    "DefaultQuantization": _DEFAULT, "MinMaxQuantization": _MINMAX, "FastBiasCorrection": _BIAS,
    "BiasCorrection": _BIAS, "ActivationChannelAlignment": _DATA, "TPE": TPE_PARAMS,
}
TOP_KEYS = ("model", "engine", "compression", "optimizer")
COMPRESSION_KEYS = ("target_device", "model_type", "algorithms", "dump_intermediate_model", "inplace_statistics")
# Keys people put one level off: where they belong.
_MISPLACED = {"target_device": "compression", "model_type": "compression", "algorithms": "compression",
              "preset": "compression.algorithms[].params", "stat_subset_size": "compression.algorithms[].params",
              "ignored": "compression.algorithms[].params", "weights": "compression.algorithms[].params",
              "activations": "compression.algorithms[].params"}
#: What to say about a key that is unknown where it was written (and not a misspelling of a valid one).
UNKNOWN_KEY_HINTS: Mapping[str, str] = {
    **{key: f"; it belongs in {where}" for key, where in _MISPLACED.items()},
    "aggregator": "; only the activations' range estimators take an aggregator",
}
PLACEHOLDER = re.compile(r"^<[^<>]+>$")  # "<NODE_NAME>" left from the documentation's template
