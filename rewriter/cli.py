"""The `rewriter` command line: parse arguments, call the API, print, exit.

Exit codes: 0 success, 2 bad input (one clear message, no traceback),
1 internal error (a bug: the message says so and how to get the traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NoReturn, Sequence, TextIO

from rewriter.choices import DEFAULT_TARGETS, MODEL_TYPES, PRESETS, SATURATION_FIX_MODES
from rewriter.cli_quantize import add_quantize_parser, print_warning, run_quantize
from rewriter.cli_report import add_report_parser, run_audit_extras, run_report
from rewriter.errors import RuntimeRefused, UserError
from rewriter.io_utils import atomic_write, atomic_write_text, check_outputs

# Each subcommand imports what it runs inside its handler, so that `rewriter --help` and the light
# subcommands start without loading onnx, onnxruntime, lark or the numeric passes.

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Parser(argparse.ArgumentParser):
    """Every parser of the command line, the top one and each subcommand's, takes the diagnostic options,
    so that ``rewriter --debug audit M`` and ``rewriter audit M --debug`` mean the same.

    Their defaults are suppressed: a subcommand that was not given one does not overwrite the value the
    top-level parser read; an option given nowhere is absent from the namespace, and the readers
    (``_log_level``, ``_run``) fall back to its default.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        group = self.add_argument_group("diagnostics (accepted before or after the subcommand)")
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="show tracebacks of internal errors")
        group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                           help="log what each stage does on stderr: -v info (stage timings), -vv debug")
        group.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS,
                           help="the least severe messages logged on stderr (default WARNING; overrides -v)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rewriter", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_ShowVersion)
    sub = parser.add_subparsers(dest="command", required=True)

    audit = sub.add_parser("audit", help="print where FakeQuantize goes and why")
    audit.add_argument("model", help="an .onnx file")
    _plan_arguments(audit)
    audit.add_argument("--format", choices=("table", "json"), default="table")
    audit.add_argument("--no-trails", action="store_true", help="table format: hide the decision trails")
    audit.add_argument("--why", action="append", default=[], metavar="NODE",
                       help="explain this node instead of printing the plan: rules tried on it and why each "
                            "matched or not, its spec entry, its trail (repeatable)")
    audit.add_argument("--report", metavar="FILE",
                       help="a quantize report (--report of `rewriter quantize`) of this model: the plan shows the "
                            "fidelity guard's reverts, each with its measured reason")
    audit.add_argument("-o", "--output", help="write to this file instead of stdout")
    audit.add_argument("--diff-target", metavar="TARGET",
                       help="print what changes from --target to this target instead of the plan, node by node")
    audit.add_argument("--html", metavar="FILE",
                       help="also write the plan as a self-contained HTML page (with --diff-target: the diff too)")
    add_follow_symlinks(audit)

    specs = sub.add_parser("specs", help="list, show or validate hardware spec files")
    specs_sub = specs.add_subparsers(dest="specs_command", required=True)
    specs_sub.add_parser("list", help="the built-in targets")
    show = specs_sub.add_parser("show", help="a target's resolved spec, as JSON or as a table")
    show.add_argument("name", help="target name or spec file")
    show.add_argument("--format", choices=("json", "table"), default="json",
                      help="json (default): every field; table: one line per op type and its configs")
    validate = specs_sub.add_parser("validate", help="check a spec file; every error with file:line:column")
    validate.add_argument("file", nargs="+")

    rules = sub.add_parser("rules", help="check rule files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_sub.add_parser("check", help="parse and check rule files")
    check.add_argument("file", nargs="+")

    add_quantize_parser(sub, _plan_arguments, add_follow_symlinks)
    add_report_parser(sub, add_follow_symlinks)
    return parser


class _ShowVersion(argparse.Action):
    """``--version``: print ``rewriter X.Y.Z`` on stdout and exit; the metadata is read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="print the installed version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        import rewriter  # the package itself: its __version__ reads the installed metadata

        print(f"{parser.prog} {rewriter.__version__}")
        parser.exit()


def _plan_arguments(parser: argparse.ArgumentParser, target_default: str | None = DEFAULT_TARGETS["qdq"],
                    target_help: str = "(default: ORT, the placement of quantize's default QDQ output)") -> None:
    parser.add_argument("--target", default=target_default,
                        help=f"CPU, GPU, VPU, GNA, ANY, ORT or a spec .yaml path {target_help}")
    parser.add_argument("--rules", action="append", default=[], metavar="FILE", help="extra rule file (repeatable)")
    parser.add_argument("--ignore-scope", action="append", default=[], metavar="NAME", help="keep this node float")
    parser.add_argument("--ignore-op", action="append", default=[], metavar="TYPE",
                        help="keep this op type float (an ONNX op type, or a custom one the model has)")
    parser.add_argument("--preset", choices=PRESETS, default=None)
    parser.add_argument("--model-type", choices=MODEL_TYPES, default=None)
    parser.add_argument("--saturation-fix", choices=SATURATION_FIX_MODES, default=None,
                        help="layers whose 8-bit weights use 7 bits, so CPUs without VNNI compute them exactly "
                             "(default: the target's spec)")


def add_follow_symlinks(parser: argparse.ArgumentParser) -> None:
    """The option that lets an output path be a symbolic link (refused by default)."""
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="an output path that is a symbolic link writes the file it points to "
                             "(default: refuse it, since the new file would replace the link)")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    atomic_write_text(output, text, "the output")


def _audit(args: argparse.Namespace) -> int:
    # Lazy for start-up time (see the top of the module).
    from rewriter.api import audit, reverts_in_report, why
    from rewriter.report.plan_report import write_plan_json, write_plan_text
    from rewriter.report.why_report import why_json, why_text

    # Before any work: a refused -o costs nothing.
    outputs = check_outputs({"-o": args.output, "--html": args.html}, {"the input model": args.model},
                            args.follow_symlinks)
    output = outputs.get("-o")
    if args.diff_target or args.html:
        text = run_audit_extras(args, outputs.get("--html"))
        if text is not None:
            _write(text, output)
            return EXIT_OK
    reverted = reverts_in_report(args.report, args.target) if args.report else ()
    if args.why:
        plan, explained = why(args.model, args.why, target=args.target, rules=args.rules,
                              ignore_scope=args.ignore_scope, ignore_ops=args.ignore_op,
                              preset=args.preset or "performance", model_type=args.model_type, reverted=reverted)
        _write(why_json(plan, explained) if args.format == "json" else why_text(plan, explained), output)
        return EXIT_OK
    # An audit builds millions of small objects that all live until it ends (graph view, matches,
    # decisions, records) and makes no reference cycles worth collecting; the cyclic collector would rescan
    # the growing heap again and again (about 15% of a 100k-node audit). Back on afterwards, for callers
    # of main() that go on (the tests).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        plan = audit(args.model, target=args.target, rules=args.rules, ignore_scope=args.ignore_scope,
                     ignore_ops=args.ignore_op, preset=args.preset or "performance", model_type=args.model_type,
                     saturation_fix=args.saturation_fix, reverted=reverted)
        if args.format == "json":
            _write_streamed(lambda stream: write_plan_json(plan, stream), output)
        else:
            _write_streamed(lambda stream: write_plan_text(plan, stream, trails=not args.no_trails), output)
        if _kept_until_exit is not None:
            _kept_until_exit.append(plan)
            # Out of the cyclic collector's sight: once it is on again, a full collection would walk every
            # object of the plan kept (measured: the command's end took 1.5 s longer at a million nodes).
            gc.freeze()
        return EXIT_OK
    finally:
        if was_enabled:
            gc.enable()


def _write_streamed(write: Callable[[TextIO], None], output: Path | None) -> None:
    """``write`` to stdout or, atomically, to ``output``: an audit is written piece by piece, so a
    million-node plan's document is never one string in memory."""
    if output is None:
        write(sys.stdout)
        return

    def write_file(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="\n", write_through=False)
        write(text)
        text.flush()
        text.detach()  # the atomic writer closes the file itself

    atomic_write(output, write_file, "the output")


def _specs(args: argparse.Namespace) -> int:
    # Lazy for start-up time: the loader checks op types against onnx's registry.
    from rewriter.spec.builtin import BrokenInstallation
    from rewriter.spec.loader import builtin_specs_dir, list_targets, load_spec, resolve_target, spec_to_dict

    if args.specs_command == "list":
        targets = list_targets()
        if not targets and os.environ.get("REWRITER_SPECS_DIR"):
            raise UserError(f"REWRITER_SPECS_DIR={builtin_specs_dir()} holds no spec files (*.yaml)")
        if not targets:
            raise BrokenInstallation(f"no hardware specs in {builtin_specs_dir()}: "
                                     "the rewriter installation is broken; reinstall rewriter")
        for name, path, description in targets:
            print(f"{name:<6} {path.name:<10} {description}")
    elif args.specs_command == "show":
        spec = load_spec(resolve_target(args.name))
        if args.format == "table":
            from rewriter.spec.table import spec_table

            sys.stdout.write(spec_table(spec))
        else:
            print(json.dumps(spec_to_dict(spec), indent=2))
    else:
        failures = []
        for file in args.file:
            try:
                spec = load_spec(file)
                print(f"{file}: ok ({spec.name}, {len(spec.ops)} op types, {len(spec.configs)} configs)")
            except UserError as error:
                failures.append(error.render())
        if failures:
            raise UserError("\n".join(failures))
    return EXIT_OK


def _rules(args: argparse.Namespace) -> int:
    # Lazy for start-up time: the parser loads lark and builds the grammar.
    from rewriter.dsl.parser import load_rules

    failures = []
    for file in args.file:
        try:
            ruleset = load_rules(file)
            print(f"{file}: ok ({len(ruleset.patterns)} patterns, {len(ruleset.rules)} rules, "
                  f"{len(ruleset.files)} files)")
        except UserError as error:
            failures.append(error.render())
    if failures:
        raise UserError("\n".join(failures))
    return EXIT_OK


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: object = None, line: str | None = None) -> None:
    """``warning: MESSAGE`` on one line: where in rewriter's source it was raised is no news to the user."""
    print_warning(str(message))


class _StderrHandler(logging.Handler):
    """``level: MESSAGE`` on one line of the current ``sys.stderr`` (looked up per record, so that a caller
    that swaps stderr, as the tests do, gets the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{record.levelname.lower()}: {' '.join(self.format(record).split())}\n")
        except Exception:  # noqa: BLE001 - logging's own rule: a broken handler must not break the run
            self.handleError(record)


def _log_level(args: argparse.Namespace) -> int:
    """The level the command logs at: ``--log-level``, else WARNING lowered one step per ``-v``."""
    if getattr(args, "log_level", None):
        return int(getattr(logging, args.log_level))
    return {0: logging.WARNING, 1: logging.INFO}.get(getattr(args, "verbose", 0), logging.DEBUG)


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """The ``rewriter`` loggers write to stderr at ``level`` while the command runs; the logger's own
    settings are put back afterwards (main is also called in-process)."""
    logger = logging.getLogger("rewriter")
    handler = _StderrHandler()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # an embedding program's root handlers would print every line twice
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# What the command itself (``console_main``, not ``main`` called in-process) keeps until its process ends: the
# plans its audits wrote. A plan holds objects for every node and decision, and freeing a million-node plan
# takes about a second, right before the process exits and the system takes all of its memory back at once.
# None when ``main`` is called in-process (the tests, another program): then nothing is kept.
_kept_until_exit: list[object] | None = None


def console_main() -> NoReturn:
    """The ``rewriter`` command and ``python -m rewriter``: ``main``; after an audit, the process ends as soon
    as its output is written and flushed, without freeing the plan (other commands exit as usual)."""
    global _kept_until_exit
    _kept_until_exit = []
    code = main()
    if not _kept_until_exit:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe (`rewriter audit M | head`) is not an error here
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(), _logging_to_stderr(_log_level(args)):
        # catch_warnings restores the caller's handler (main is also called in-process).
        warnings.showwarning = _one_line_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    handlers = {"audit": _audit, "specs": _specs, "rules": _rules, "report": run_report}
    try:
        if args.command == "quantize":
            return run_quantize(args)
        return handlers[args.command](args)
    except UserError as error:
        print(f"error: {error.render()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeRefused as refused:
        # The output would not run where it is meant to: nothing is written (exit 1, not a usage error).
        print(f"error: {refused.render()}; the model was not written", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        # `rewriter audit ... | head` closed the pipe: not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns bugs into exit code 1
        if getattr(args, "debug", False) or os.environ.get("REWRITER_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(error).__name__}: {error}\n"
              "This is a bug in rewriter; rerun with --debug for the traceback and report it.", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    console_main()
