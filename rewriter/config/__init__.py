"""The original tool's configuration file (JSON with comments, or YAML), read as it is.

``load_config(path)`` reads a POT-style file, checks every key and value
against the original tool's keys (collecting all errors, each with
file:line:column, the key's path in the file and the closest valid key), and
returns a frozen ``LoadedConfig``: the ``QuantizeOptions`` fields the file
sets, the algorithms in file order with their parameters, the
weights/activations quantizer overrides, the pipeline settings (bias
correction, channel alignment, layer-wise tuning) and what the file asks for
that this version does not run (``unsupported``, printed as warnings by the CLI).

``merge_cli(loaded, overrides)`` builds ``QuantizeOptions``: a command-line
value (not None) beats the file, the file beats the defaults.

One module per job:

- ``jsonc``: the JSON-with-comments reader, building the same ruamel.yaml
  node tree as a YAML file, with every key's and value's exact position;
- ``schema``: the checked-key mini-language and the walk that checks a file;
- ``pot_keys``: the original tool's keys and algorithm names in that language;
- ``pot``, ``params``: what the file means (targets, presets, algorithms,
  ignored operations, quantizer and range overrides);
- ``results``: the frozen values ``load_config`` returns;
- ``merge``: the file and the command line -> ``QuantizeOptions``.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "c.json").write_text('''{ "compression": { // comments are fine
    ...   "target_device": "CPU",
    ...   "algorithms": [{"name": "DefaultQuantization",
    ...                   "params": {"preset": "accuracy", "stat_subset_size": 64,},}]}}''')
    >>> cfg = load_config(folder / "c.json")
    >>> cfg.target, cfg.preset, cfg.subset_size   # accuracy runs as mixed on CPU, as in the original tool
    ('CPU', 'mixed', 64)
    >>> merge_cli(cfg, {"preset": "performance"}).preset
    'performance'

The format and what differs from the original tool: docs/config.md.
"""
from __future__ import annotations

from rewriter.config.merge import merge_cli, preset_notice
from rewriter.config.pot import load_config, preset_for_target
from rewriter.config.pot_keys import ALGORITHMS, NOT_RUN_YET
from rewriter.config.results import (AlgorithmConfig, LoadedConfig, Notice, PipelineSettings, QuantizerOverride,
                                     QuantizerOverrides)

__all__ = [
    "AlgorithmConfig", "LoadedConfig", "Notice", "PipelineSettings", "QuantizerOverride", "QuantizerOverrides",
    "ALGORITHMS", "NOT_RUN_YET", "load_config", "merge_cli", "preset_for_target", "preset_notice",
]
