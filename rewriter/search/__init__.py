"""Accuracy-driven searches over whole quantize runs: a user's metric, AccuracyAwareQuantization, TPE.

They sit above the pipeline: each runs it (once, or once per trial), measures the output with the user's
metric and, through the plan, returns quantized nodes to float (``rewriter.tuning.accuracy_aware``).
"""
