"""Measuring the output against the float model, and searching which quantizers to return to float.

``fidelity`` compares the outputs of two models sample by sample (SQNR, top-1
agreement, cosine); ``revert_search`` is the loop that ranks revertible units
by their measured effect on a score and reverts the most harmful, re-measuring
(a score function in, reverts out); ``guard`` is the fidelity guard built on
both: the score is the worst output SQNR, each measurement a re-plan and
re-emit through the plan.
"""
