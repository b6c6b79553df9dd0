"""The original tool's semantics: what a checked configuration file asks this tool to run.

``load_config(path)`` reads the file (``rewriter.config.jsonc`` for JSON,
ruamel.yaml for YAML), checks it against the original tool's keys
(``rewriter.config.pot_keys``), and turns its algorithms into a
``LoadedConfig``: the target and its device name, the preset as that tool
ran it on that device, the quantization params, and the pipeline steps
(channel alignment, bias correction, layer-wise tuning, smoothing). What the
file asks for and this version does not run becomes a notice.

Device names and preset renames are data: the built-in specs' ``pot``
sections (``rewriter.spec.loader.pot_devices``).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from rewriter.algorithms.smoothing import DEFAULT_ALPHA as DEFAULT_SMOOTHING
from rewriter.config.jsonc import ConfigFile
from rewriter.config.params import read_ignored, read_quantizer_overrides, read_ranges
from rewriter.config.pot_keys import (AAQ_NOT_RUN, AAQ_PARAMS, ALGORITHMS, COMPRESSION_KEYS, LAYERWISE,
                                      LAYERWISE_HONOURED,
                                      NOT_IMPLEMENTED, NOT_RUN_YET, OTHER_POT_ALGORITHMS, PARAMS, PRESET_ALIASES,
                                      QUANTIZING, TOP_KEYS, TPE_PARAMS, UNKNOWN_KEY_HINTS)
from rewriter.config.results import AlgorithmConfig, LoadedConfig, Notice, PipelineSettings
from rewriter.config.schema import BOOL, Field, SchemaChecker, enum, freeze, section
from rewriter.errors import SourceLoc, UserError, source_excerpt
from rewriter.io_utils import cannot_look_up, read_utf8
from rewriter.spec.loader import list_targets, looks_like_path, pot_devices
from rewriter.spec.model import MODEL_TYPES
from rewriter.spec.yaml_nodes import Problems, suggest
from rewriter.tuning.accuracy_aware import AccuracyAwareSettings
from rewriter.tuning.tpe_settings import TpeSettings

__all__ = ["POT_DEFAULT_TARGET", "load_config", "preset_for_target"]

#: The device the original tool assumed when a file names none.
POT_DEFAULT_TARGET = "ANY"


def preset_for_target(preset: str, target: str | None) -> str:
    """The preset the original tool ran for a config-file ``preset`` on ``target`` (aliases, device renames).

    Only the original tool's device names rename; our ORT target and spec files keep the preset.

    >>> preset_for_target("asymmetric", "CPU"), preset_for_target("mixed", "GNA"), preset_for_target("accuracy", "ORT")
    ('mixed', 'accuracy', 'accuracy')
    """
    preset = PRESET_ALIASES.get(preset, preset)
    device = pot_devices().get((target or POT_DEFAULT_TARGET).upper())
    return preset if device is None else device.preset_renames.get(preset, preset)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and check a config file of the original tool (JSON with comments, or YAML).

    Raises:
        UserErrors: every problem in the file, each with file:line:column and the source line.
        UserError: the file is missing or unreadable.
    """
    path = Path(path)
    try:
        text = read_utf8(path)  # a file that is not UTF-8 raises a located UserError
    except FileNotFoundError:
        raise UserError(f"config file '{path}' not found") from None
    except OSError as exc:
        raise UserError(f"cannot read the config file '{path}': {exc}") from None
    problems = Problems()
    f = ConfigFile(path, problems, text)
    root = f.compose()
    result = None
    if root is None and not problems:
        problems.add(SourceLoc(str(path), 1, 1), "the config file is empty; it needs a 'compression' section")
    elif root is not None:
        result = _Loader(f).load(root)
    if problems:
        # Every error gets its source line with a caret under the column.
        problems.items = [e if e.context or not e.loc or not e.loc.line else
                          UserError(e.message, e.loc, source_excerpt(text, e.loc.line, e.loc.column or 1))
                          for e in problems.items]
        problems.raise_if_any()
    assert result is not None
    return result



class _Loader(SchemaChecker):
    """Walks the node tree once, checking against the schema; then builds the LoadedConfig."""

    def __init__(self, f: ConfigFile) -> None:
        super().__init__(f, UNKNOWN_KEY_HINTS)

    # ---------------------------------------------------------------- sections

    def load(self, root: Node) -> LoadedConfig:
        top = dict(self.entries(root, "the top level", TOP_KEYS))
        if isinstance(root, MappingNode) and "compression" not in top:
            self.f.error(root, "the config file has no 'compression' section; it needs at least "
                               "\"compression\": {\"algorithms\": [{\"name\": \"DefaultQuantization\"}]}")
        model = self._model(top["model"]) if "model" in top else None
        data_source = self._engine(top["engine"]) if "engine" in top else None
        if "optimizer" in top:
            self._optimizer(top["optimizer"])
        settings: dict[str, Any] = {}
        if "compression" in top:
            settings = self._compression(top["compression"])
        return LoadedConfig(path=str(self.f.path), data_source=data_source,
                            data_source_loc=self.loc("engine.data_source") if data_source else None, model=model,
                            model_loc=self.loc("model.model") if model else None, warnings=tuple(self.warnings),
                            unsupported=tuple(self.unsupported), **settings)

    def _model(self, node: Node) -> str | None:
        """``model.model``, the model when the command line names none (the rest of ``model`` is not read)."""
        section = self.plain(node, "model")
        if not isinstance(section, dict):
            self.f.error(node, f"model must be a mapping, got {self.f.kind(node)}")
            return None
        path = section.get("model")
        if path is not None and not isinstance(path, str):
            self.error("model.model", f"model.model must be a string (a model path), got {path!r}")
            return None
        return None if path is None else self._path(path, "model.model")

    def _engine(self, node: Node) -> str | None:
        """Only ``data_source`` is read (the calibration folder when --data is not given)."""
        engine = self.plain(node, "engine")
        if not isinstance(engine, dict):
            self.f.error(node, f"engine must be a mapping, got {self.f.kind(node)}")
            return None
        source = engine.get("data_source")
        if source is not None and not isinstance(source, str):
            self.error("engine.data_source", f"engine.data_source must be a string (a folder), got {source!r}")
            return None
        if engine.get("type") == "data_free":
            self.unsupported.append(Notice(self.loc("engine.type"), "the data_free engine (generated calibration "
                                           "data) is not implemented; engine.data_source is read as a data folder"))
        if source is None:
            return None
        return self._path(source, "engine.data_source")

    def _path(self, text: str, where: str) -> str | None:
        """A relative path: from the working directory (the original tool's rule) if it exists there,
        else from the config file's folder if it exists there, else as written. None, with a located
        error, when the file system cannot look it up (a name too long, an unknown user's ``~``)."""
        try:
            path = Path(text).expanduser()
            if path.is_absolute() or path.exists():
                return str(path)
            beside = self.f.path.parent / path
            return str(beside) if beside.exists() else text
        except (OSError, RuntimeError) as exc:
            self.error(where, f"{where}: the path {cannot_look_up(text, exc)}")
            return None

    def _optimizer(self, node: Node) -> None:
        entries = dict(self.entries(node, "optimizer", ("name", "params")))
        if "name" in entries:
            self.walk(entries["name"], enum("Tpe", "TPE"), "optimizer.name")
        if "params" in entries:
            self.walk(entries["params"], section(**TPE_PARAMS), "optimizer.params")
        self.unsupported.append(Notice(self.loc("optimizer", key=True), NOT_IMPLEMENTED["optimizer"]))

    def _compression(self, node: Node) -> dict[str, Any]:
        entries = dict(self.entries(node, "compression", COMPRESSION_KEYS))
        target, device = self._target(entries.get("target_device"))
        model_type = self._model_type(entries["model_type"]) if "model_type" in entries else None
        if "inplace_statistics" in entries:  # no effect here: statistics are always computed per sample
            self.walk(entries["inplace_statistics"], BOOL, "compression.inplace_statistics")
        if "dump_intermediate_model" in entries and \
                self.walk(entries["dump_intermediate_model"], BOOL, "compression.dump_intermediate_model"):
            self.unsupported.append(Notice(self.loc("compression.dump_intermediate_model", key=True),
                                           "dump_intermediate_model is not implemented; `rewriter audit` "
                                           "shows the plan"))
        algorithms: list[AlgorithmConfig] = []
        if "algorithms" not in entries:
            if isinstance(node, MappingNode):
                self.f.error(node, "compression needs 'algorithms', e.g. [{\"name\": \"DefaultQuantization\"}]")
        elif not isinstance(entries["algorithms"], SequenceNode):
            self.f.error(entries["algorithms"], f"compression.algorithms must be a list, got "
                                                f"{self.f.kind(entries['algorithms'])}")
        else:
            if not entries["algorithms"].value:
                self.f.error(entries["algorithms"], "compression.algorithms is empty; give at least one, "
                                                    "e.g. {\"name\": \"DefaultQuantization\"}")
            for i, item in enumerate(entries["algorithms"].value):
                algo = self._algorithm(item, f"compression.algorithms[{i}]")
                if algo is not None:
                    algorithms.append(algo)
        settings = self._settings(algorithms, device)
        model_type_loc = self.loc("compression.model_type") if model_type else None
        return dict(target=target, device=device, model_type=model_type, model_type_loc=model_type_loc,
                    algorithms=tuple(algorithms), **settings)

    def _target(self, node: Node | None) -> tuple[str | None, str | None]:
        """(target for QuantizeOptions, the original tool's device name for preset renames)."""
        if node is None or self.f.is_null(node):
            return None, None
        where = "compression.target_device"
        text = self.f.get_str(node, where)
        if text is None:
            return None, None
        if looks_like_path(text):
            path = self._path(text, where)
            if path is None:
                return None, None
            if not Path(path).is_file():
                self.f.error(node, f"{where}: spec file '{text}' not found")
                return None, None
            return path, text  # not a device of the original tool: presets are not renamed
        device = text.upper()
        names = [name for name, _, _ in list_targets()]
        for name in names:
            if name.upper() == device:
                return name, device
        stand_in = pot_devices().get(device)
        if stand_in is not None and stand_in.differs is not None:
            self.warnings.append(Notice(self.f.loc(node), f"target_device {text} has no spec here; the "
                                                          f"{stand_in.target} spec is used: {stand_in.differs}"))
            return stand_in.target, device
        hint = suggest(text, names) or f"; available: {', '.join(names)} (or a spec file path)"
        self.f.error(node, f"unknown {where} '{text}'{hint}")
        return None, None

    def _model_type(self, node: Node) -> str | None:
        value = self.f.value(node)
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        if isinstance(value, str) and value.lower() in MODEL_TYPES:
            return value.lower()
        shown = f"'{value}'" if isinstance(value, str) else self.f.kind(node)
        hint = suggest(value, MODEL_TYPES) if isinstance(value, str) else ""
        choices = ", ".join(f'"{name}"' for name in MODEL_TYPES)
        self.f.error(node, f"compression.model_type must be null, \"None\" or {choices}, got {shown}{hint}")
        return None

    def _algorithm(self, node: Node, where: str) -> AlgorithmConfig | None:
        if not isinstance(node, MappingNode):
            self.f.error(node, f"{where} must be an object with 'name' and 'params', got {self.f.kind(node)}")
            return None
        entries = dict(self.entries(node, where, ("name", "params")))
        if "name" not in entries:
            self.f.error(node, f"{where} needs 'name', e.g. \"DefaultQuantization\"")
            return None
        name = self.f.get_str(entries["name"], f"{where}.name")
        if name is None:
            return None
        known = ALGORITHMS + OTHER_POT_ALGORITHMS
        name = next((k for k in known if k.casefold() == name.casefold()), name)
        params_node = entries.get("params")
        where_params = f"{where}.params"
        if name not in known:
            close = difflib.get_close_matches(name.casefold(), [k.casefold() for k in ALGORITHMS], n=1, cutoff=0.6)
            meant = next((k for k in ALGORITHMS if close and k.casefold() == close[0]), None)
            hint = f"; did you mean '{meant}'?" if meant else f"; known: {', '.join(ALGORITHMS)}"
            self.f.error(entries["name"], f"unknown algorithm '{name}' in {where}.name{hint}")
            if meant is not None and params_node is not None:
                # Checked as the algorithm it is closest to, so that one typo does not hide its params' errors.
                params = self.walk(params_node, section(**self._schema(meant, params_node)), where_params)
                if meant in QUANTIZING and isinstance(params, dict):
                    self._quantization(params, where_params, None)  # ignored operations, quantizers, ranges
            return None
        if params_node is None:
            params = {}
        elif name in OTHER_POT_ALGORITHMS:
            params = self.plain(params_node, where_params)
            if params is not None and not isinstance(params, dict):
                self.f.error(params_node, f"{where_params} must be a mapping, got {self.f.kind(params_node)}")
                return None
        else:
            params = self.walk(params_node, section(**self._schema(name, params_node)), where_params)
        return AlgorithmConfig(name, freeze(params or {}), self.f.loc(node), where)

    def _schema(self, name: str, params: Node) -> Mapping[str, Field]:
        if name != "AccuracyAwareQuantization":
            return PARAMS[name]
        base = "DefaultQuantization"
        if isinstance(params, MappingNode):
            for key_node, value_node in params.value:
                if getattr(key_node, "value", None) == "base_algorithm" and self.f.value(value_node) in PARAMS:
                    base = str(self.f.value(value_node))
        return {**PARAMS[base], **AAQ_PARAMS}

    # ---------------------------------------------------------------- meaning

    def _settings(self, algorithms: list[AlgorithmConfig], device: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        quantizing = [a for a in algorithms if a.name in QUANTIZING]
        for extra in quantizing[1:]:
            self.f.problems.add(extra.loc, f"a second quantization algorithm ({extra.name}); a file quantizes "
                                           f"once, with {quantizing[0].name} here")
        pipeline: dict[str, Any] = {}
        for algo in algorithms:
            where = algo.where
            self._pipeline(algo, where, pipeline)
            if algo is (quantizing[0] if quantizing else None):
                out.update(self._quantization(algo.params, f"{where}.params", device))
        for search in ("accuracy_aware", "tpe"):
            if search in pipeline:
                out[search] = pipeline.pop(search)
        out["pipeline"] = PipelineSettings(**pipeline)
        return out

    def _not_run(self, key: str, loc: SourceLoc, what: str = "") -> None:
        if key in NOT_RUN_YET:
            self.unsupported.append(Notice(loc, f"{what}{NOT_RUN_YET[key]}"))

    def _pipeline(self, algo: AlgorithmConfig, where: str, out: dict[str, Any]) -> None:
        p, name, loc = algo.params, algo.name, algo.loc
        if name == "AccuracyAwareQuantization":
            base = p.get("base_algorithm", "DefaultQuantization")
            out["accuracy_aware"] = AccuracyAwareSettings(
                maximal_drop=p.get("maximal_drop", 0.01), drop_type=p.get("drop_type", "absolute"), base_algorithm=base,
                ranking_subset_size=p.get("ranking_subset_size"), max_iter_num=p.get("max_iter_num"),
                metric_subset_ratio=p.get("metric_subset_ratio", 0.5),
                convert_to_mixed_preset=p.get("convert_to_mixed_preset", False),
                use_prev_if_drop_increase=p.get("use_prev_if_drop_increase", True),
                tune_hyperparams=p.get("tune_hyperparams", False))
            for key, why in AAQ_NOT_RUN.items():
                if p.get(key):
                    self.unsupported.append(Notice(self.loc(f"{where}.params.{key}", key=True),
                                                   NOT_IMPLEMENTED["aaq_param"].format(key=key, why=why)))
            name = base
        elif name == "TPE":
            out["tpe"] = TpeSettings(max_trials=p.get("max_trials", 20), max_minutes=p.get("max_minutes"))
            for key in sorted(set(p) - {"max_trials", "max_minutes"}):
                self.unsupported.append(Notice(self.loc(f"{where}.params.{key}", key=True),
                                               f"TPE's {key} is accepted but not run"))
            return
        elif name in OTHER_POT_ALGORITHMS:
            self.unsupported.append(Notice(loc, NOT_IMPLEMENTED["other"].format(name=name)))
            return
        steps = {"DefaultQuantization": ["ActivationChannelAlignment",
                                         "FastBiasCorrection" if p.get("use_fast_bias", True) else "BiasCorrection"],
                 "ActivationChannelAlignment": [name], "FastBiasCorrection": [name], "BiasCorrection": [name]}
        for step in steps.get(name, []):
            if step == "ActivationChannelAlignment":
                out["channel_alignment"] = True
            else:
                out["bias_correction"] = "fast" if step == "FastBiasCorrection" else "full"
                if "threshold" in p:
                    out["bias_threshold"] = p["threshold"]
                out["bias_apply_for_all_nodes"] = p.get("apply_for_all_nodes", False)
            self._not_run(step, loc, f"{name}: " if step != name else "")
        # This tool's extension: activation smoothing before the ranges. DefaultQuantization runs it unless
        # smoothing_alpha is 0 (it only touches MatMul inputs with outlier channels); MinMax only when asked.
        alpha = p.get("smoothing_alpha", DEFAULT_SMOOTHING if name == "DefaultQuantization" else 0)
        if alpha:
            out["smoothing"] = alpha
        if p.get("use_layerwise_tuning"):
            out["layerwise_tuning"] = True
            for key in sorted(set(LAYERWISE) & set(p) - set(LAYERWISE_HONOURED)):
                self.unsupported.append(Notice(self.loc(f"{where}.params.{key}", key=True),
                                               f"{key} is ignored: layer-wise tuning here is a gradient-free "
                                               "grid search (no optimizer, loss or iterations to set)"))
        if p.get("saturation_fix") is not None:
            out["saturation_fix"] = p["saturation_fix"]
        for key, field_name in (("self_check", "self_check"), ("self_check_samples", "check_samples"),
                                ("fidelity_guard", "guard"), ("fidelity_guard_threshold", "guard_threshold"),
                                ("fidelity_guard_budget", "guard_budget")):
            if p.get(key) is not None:
                out[field_name] = p[key]
        if p.get("shuffle_data") is False:
            self.unsupported.append(Notice(self.loc(f"{where}.params.shuffle_data", key=True),
                                           "shuffle_data: false is not honoured: the calibration subset is always "
                                           "a seeded random choice"))
        if p.get("ignored", {}).get("skip_model"):
            self.unsupported.append(Notice(self.loc(f"{where}.params.ignored.skip_model", key=True),
                                           "ignored.skip_model (model cascades) is not implemented"))

    def _quantization(self, params: Mapping[str, Any], where: str, device: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "preset" in params:
            # A rename is reported once the target is known (merge.preset_notice): the command line may change it.
            out["preset_written"] = params["preset"]
            out["preset"] = preset_for_target(params["preset"], device)
            out["preset_loc"] = self.loc(f"{where}.preset")
        for key, field_name in (("stat_subset_size", "subset_size"), ("seed", "seed"),
                                ("stat_batch_size", "batch_size")):
            if key in params:
                out[field_name] = params[key]
        scope, ops = read_ignored(self, params.get("ignored", {}), f"{where}.ignored")
        out.update(ignore_scope=tuple(name for name, _ in scope), ignore_scope_sources=scope, ignore_ops=ops)
        overrides = read_quantizer_overrides(self, params, where)
        if not overrides.is_empty():
            out["quantizers"] = overrides
            self._not_run("quantizer_overrides", self.loc(f"{where}.weights" if not overrides.weights.is_empty()
                                                          else f"{where}.activations", key=True))
        ranges = read_ranges(self, params, where)
        if ranges is not None:
            out["ranges"] = ranges
        return out
