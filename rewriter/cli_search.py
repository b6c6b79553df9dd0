"""`rewriter quantize`'s accuracy-driven options: a user's metric and AccuracyAwareQuantization
(docs/accuracy-aware.md). ``add_search_arguments`` adds them to the quantize parser; ``search_settings``
reads them (and the config file's AccuracyAwareQuantization entry); ``run_search`` runs the search."""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Callable

from rewriter.errors import UserError


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("accuracy-aware search (docs/accuracy-aware.md)")
    group.add_argument("--metric", metavar="FILE.py:FUNCTION",
                       help="your accuracy metric: FUNCTION(model_path) returns a float (or a float and a list "
                            "of per-sample floats), higher is better; also module:function")
    group.add_argument("--metric-lower-is-better", action="store_true",
                       help="the metric is an error (a loss, an error rate): lower is better")
    group.add_argument("--accuracy-aware", action="store_true",
                       help="AccuracyAwareQuantization: return the most harmful quantized nodes to float until "
                            "the metric drops at most --max-drop from the float model's (needs --metric)")
    group.add_argument("--max-drop", type=float, default=None, metavar="X",
                       help="the largest metric drop allowed (default 0.01; the config's maximal_drop)")
    group.add_argument("--drop-type", choices=("absolute", "relative"), default=None,
                       help="absolute: metric units; relative: a share of the float model's metric "
                            "(default absolute)")
    group.add_argument("--max-iter", type=int, default=None, metavar="N",
                       help="metric evaluations the search may spend (the config's max_iter_num; default no "
                            "bound)")
    group.add_argument("--tpe", action="store_true",
                       help="TPE (needs optuna: pip install 'rewriter[tpe]'): search presets, range estimators "
                            "and which nodes stay float for the fastest model within --max-drop (needs --metric)")
    group.add_argument("--tpe-trials", type=int, default=None, metavar="N", help="TPE trials (default 20)")
    group.add_argument("--tpe-minutes", type=float, default=None, metavar="M",
                       help="TPE time limit in minutes (default none)")
    group.add_argument("--tpe-groups", type=int, default=None, metavar="N",
                       help="the most suspect quantized nodes whose float/quantized choice TPE searches (default 8)")
    group.add_argument("--tpe-study", metavar="FILE", default=None,
                       help="optuna study file (SQLite): finished trials are kept there and a rerun resumes")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="TPE: evaluate trials in N local processes (default 1; the same search for any N), "
                            "or in N Ray actors with --ray")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="TPE: evaluate trials as Ray tasks on the cluster at ADDRESS (without one, a new "
                            "local Ray instance); needs pip install 'rewriter[distributed]'")


def search_settings(args: argparse.Namespace, loaded: Any, warn: Callable[[str], None]) -> Any:
    """The AccuracyAwareQuantization settings the command line and config file ask for, or None.

    Raises:
        UserError: search options without --accuracy-aware or a config entry, or a search without --metric.
    """
    from rewriter.tuning.accuracy_aware import AccuracyAwareSettings

    if args.tpe:
        return _tpe_settings(args, loaded)
    tpe_flags = [flag for flag in ("--tpe-trials", "--tpe-minutes", "--tpe-groups", "--tpe-study", "--workers",
                                   "--ray")
                 if getattr(args, flag[2:].replace("-", "_")) is not None]
    if tpe_flags:
        raise UserError(f"{', '.join(tpe_flags)} set(s) the TPE search: add --tpe (and --metric)")
    if loaded is not None and loaded.tpe is not None and args.metric is not None and not args.accuracy_aware:
        return _tpe_settings(args, loaded)
    from_file = loaded.accuracy_aware if loaded is not None else None
    given = {key: value for key, value in (("maximal_drop", args.max_drop), ("drop_type", args.drop_type),
                                           ("max_iter_num", args.max_iter)) if value is not None}
    if not args.accuracy_aware and from_file is None:
        if args.metric is not None:
            raise UserError("--metric is for a measured search: add --accuracy-aware or --tpe")
        if given:
            flags = ", ".join(f"--{k}" for k in ("max-drop", "drop-type", "max-iter")
                              if getattr(args, k.replace("-", "_")) is not None)
            raise UserError(f"{flags} set(s) the accuracy-aware search: add --accuracy-aware (and --metric)")
        return None
    if args.metric is None:
        if from_file is None:
            raise UserError("--accuracy-aware needs --metric FILE.py:FUNCTION (FUNCTION(model_path) returning "
                            "the model's accuracy on your annotated data)")
        # The config file's entry without a metric: its base algorithm runs, as before the search existed.
        from rewriter.config.pot_keys import NOT_IMPLEMENTED
        warn(f"{loaded.path}: " + NOT_IMPLEMENTED["AccuracyAwareQuantization"].format(base=from_file.base_algorithm))
        return None
    if args.max_iter is not None and args.max_iter < 1:
        raise UserError(f"--max-iter must be at least 1, got {args.max_iter}")
    return replace(from_file or AccuracyAwareSettings(), **given)


def _tpe_settings(args: argparse.Namespace, loaded: Any) -> Any:
    from rewriter.tuning.tpe_settings import TpeSettings

    if args.metric is None:
        raise UserError("--tpe needs --metric FILE.py:FUNCTION (FUNCTION(model_path) returning the model's "
                        "accuracy on your annotated data)")
    if args.accuracy_aware:
        raise UserError("choose one search: --accuracy-aware or --tpe")
    base = (loaded.tpe if loaded is not None else None) or TpeSettings()
    given = {key: value for key, value in (("max_trials", args.tpe_trials), ("max_minutes", args.tpe_minutes),
                                           ("groups", args.tpe_groups), ("storage", args.tpe_study),
                                           ("workers", args.workers), ("maximal_drop", args.max_drop),
                                           ("drop_type", args.drop_type)) if value is not None}
    if args.ray is not None:
        given.update(ray=True, ray_address=args.ray or None)
    return replace(base, **given)


def run_search(args: argparse.Namespace, settings: Any, model: str, output: Any, data: Any, options: Any,
               write_model: Callable[[Any, Any], None]) -> Any:
    """Run the accuracy-aware search and write its model; the result (its report has a ``search`` section)."""
    from rewriter.search.accuracy_aware import quantize_accuracy_aware
    from rewriter.search.metric import Metric, load_metric
    from rewriter.search.tpe import quantize_tpe
    from rewriter.tuning.tpe_settings import TpeSettings

    metric = Metric(load_metric(args.metric), args.metric, args.metric_lower_is_better)
    if isinstance(settings, TpeSettings):
        result = quantize_tpe(model, data, options, settings, metric)
    else:
        result = quantize_accuracy_aware(model, data, options, settings, metric)
    write_model(result.model, output)
    return result
