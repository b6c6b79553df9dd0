"""`rewriter quantize`: placeholder until the numeric core lands (issue 3)."""
from __future__ import annotations

import argparse
from typing import Callable

from rewriter.errors import UserError


def add_quantize_parser(sub: argparse._SubParsersAction, plan_arguments: Callable) -> None:
    quantize = sub.add_parser("quantize", help="quantize a model (numeric core: in progress)")
    quantize.add_argument("model")
    plan_arguments(quantize)


def run_quantize(args: argparse.Namespace) -> int:
    raise UserError("`rewriter quantize` is not available yet; use `rewriter audit` to see the plan")
