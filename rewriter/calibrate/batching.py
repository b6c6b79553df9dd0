"""The loop of a statistics pass: feeding samples to the sessions, batched when the model allows.

Batching: when every model input has a dynamic first axis and consecutive
samples have batch 1 and equal shapes, up to ``batch_size`` samples are
concatenated into one run. The default is 8, lowered so that one run's exposed
tensors stay under 256 MiB. Measured on a shared 2-core CPU over six small CNN
and MLP/transformer-like models with every tensor exposed and a quantile
reducer: batch 8 took 1.0x to 3.2x less time per sample than batch 1 (1.5x to
2x typical) and was within 30% of the best of 1, 2, 4, ..., 32; larger batches
mostly grow memory. The first batched run is checked against runs of its first
and last samples alone (shapes and values): a model that mixes samples along
its batch axis, or hard-codes batch 1 inside, falls back to one sample per
run, as does any batched run that onnxruntime rejects. Tensors without a batch axis
that the check finds equal for every sample (they depend on shapes only, like
a position embedding) do not prevent batching: their per-run statistic is
counted once per sample, as single runs would give it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rewriter.calibrate.collector import Collector
from rewriter.calibrate.in_graph import Layout, default_opset
from rewriter.calibrate.inputs import InputSpec, Sample, SampleChecker
from rewriter.calibrate.progress import Progress
from rewriter.calibrate.session import RunFailed, Session, Sessions
from rewriter.errors import UserError
from rewriter.ir.names import FreshNames, graph_names

__all__ = ["BATCH_MEMORY_BYTES", "DEFAULT_BATCH_SIZE", "BatchingLoop", "batch_key", "batch_rows_agree", "dynamic_batch"]

#: Samples per run when batching (see the module docstring for the measurement).
DEFAULT_BATCH_SIZE = 8
#: Cap on the exposed tensors' bytes in one run when the batch size is chosen automatically.
BATCH_MEMORY_BYTES = 256 * 2**20


class BatchingLoop:
    """Feeds samples to the sessions, batching when the model allows, and hands results on.

    Phases: the first run (the probe) goes to the raw session and decides the
    lean layout. If there is one, the raw session takes single samples only
    until every reducer with ``max_samples`` has its rows (few runs, and the
    least memory), then the lean session takes over; otherwise the raw
    session does it all, batched as before.
    """

    def __init__(self, sessions: Sessions, collector: Collector, batch_size: int | None, bar: Progress) -> None:
        self.sessions = sessions
        self.collector = collector
        self.checker = SampleChecker(sessions.inputs)
        self.requested = batch_size
        self.limit = 1
        self.can_batch = batch_size != 1 and dynamic_batch(sessions.inputs)
        self.verified = False
        self.lean_layout: Layout | None = None
        self.batch_size_used = 1
        self.bar = bar
        self.pending: list[Sample] = []
        self.pending_key: tuple[object, ...] | None = None

    def feed(self, raw: Mapping[str, np.ndarray], index: int) -> None:
        """Check one sample and run it, or queue it for a batch with the samples like it."""
        where = getattr(raw, "source", "") or f"sample {index}"
        sample = self.checker.check(raw, where)
        if not self.collector.probed:
            self._single(sample)  # the first run shows which tensors have a batch axis
            model = self.sessions.model
            self.lean_layout = self.collector.lean_layout(self.sessions.raw_layout,
                                                          FreshNames(graph_names(model.graph)), default_opset(model))
            if self.lean_layout is None:
                self.limit = self._limit(self.collector.bytes_per_run)
            self._maybe_go_lean()
            return
        key = batch_key(sample) if self.can_batch and self.limit > 1 else None
        if key is None or key != self.pending_key:
            self.flush()
        if key is None:
            self._single(sample)
            return
        self.pending.append(sample)
        self.pending_key = key
        if len(self.pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Run the queued samples: as one batch when they can be, else one by one."""
        batch, self.pending, self.pending_key = self.pending, [], None
        if len(batch) == 1 or (batch and not self.can_batch):
            for sample in batch:
                self._single(sample)
        elif batch:
            self._batched(batch)

    def _limit(self, bytes_per_run: int) -> int:
        automatic = max(1, min(DEFAULT_BATCH_SIZE, BATCH_MEMORY_BYTES // max(bytes_per_run, 1)))
        return self.requested or automatic

    def _maybe_go_lean(self) -> None:
        """Open the lean session once the raw runs have given every row only they can give."""
        if self.lean_layout is None or self.collector.wants_raw_rows():
            return
        layout, self.lean_layout = self.lean_layout, None
        if self.sessions.open_lean(layout):
            self.limit = self._limit(self.collector.lean_bytes_per_run(layout))
        else:
            self.limit = self._limit(self.collector.bytes_per_run)

    def _single(self, sample: Sample) -> None:
        try:
            result, session = self.sessions.run(sample)
        except RunFailed as e:
            shapes = ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in sample.items())
            raise UserError(f"{sample.source}: onnxruntime rejected the sample ({e}); inputs given: {shapes}") from None
        self.collector.add(result, [sample], batched=False, layout=session.layout)
        self.bar.update(1)
        self._maybe_go_lean()

    def _batched(self, batch: list[Sample]) -> None:
        feeds = {name: np.concatenate([s[name] for s in batch], axis=0) for name in batch[0]}
        try:
            result, session = self.sessions.run(feeds)
        except RunFailed:
            result = None  # e.g. a Reshape with batch 1 written into the model
        if result is not None and not self.verified:
            self.verified = True
            if not self._agrees(batch, result, session):
                result = None
        if result is None:
            self.can_batch = False
            for sample in batch:
                self._single(sample)
            return
        self.collector.add(result, batch, batched=True, layout=session.layout)
        self.batch_size_used = max(self.batch_size_used, len(batch))
        self.bar.update(len(batch))
        self._maybe_go_lean()

    def _agrees(self, batch: list[Sample], batched: dict[str, np.ndarray], session: Session) -> bool:
        """A batched run equals runs of its first and last samples alone (shapes and values).

        Rows 0 and N-1 of batch-axis tensors must match those runs; a tensor without
        a batch axis must equal both (it depends on the shapes only, like a position
        embedding) and is then counted once per sample. Comparing with two samples
        catches models that pick one sample out of the batch (``Gather(x, 0)``)
        as well as ones that mix samples (a reduction over the batch axis).
        """
        n = len(batch)
        try:
            refs = (session.run(batch[0]), session.run(batch[-1]))
        except RunFailed:
            return False
        for name, got in batched.items():
            axis = session.layout.batch_axis(name, self.collector.batch_axis)
            if axis == "skip":
                continue
            if axis == 0:
                expected = (n, *refs[0][name].shape[1:])
                rows = (got[:1], got[-1:])
            else:
                expected, rows = refs[0][name].shape, (got, got)
            if got.shape != expected or not all(batch_rows_agree(r, ref[name]) for r, ref in zip(rows, refs)):
                return False
        return True


def dynamic_batch(inputs: Sequence[InputSpec]) -> bool:
    """Whether every model input has a first axis of no fixed size."""
    return all(spec.rank >= 1 and not isinstance(spec.shape[0], int) for spec in inputs)


def batch_key(sample: Mapping[str, np.ndarray]) -> tuple[object, ...] | None:
    """Samples with equal keys can be concatenated; None: this one must run alone."""
    if any(arr.ndim == 0 or arr.shape[0] != 1 for arr in sample.values()):
        return None
    return tuple((name, arr.shape, arr.dtype.str) for name, arr in sample.items())


def batch_rows_agree(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` (rows of a batched run) equals ``b`` (the same sample run alone) up to rounding."""
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    # Batched kernels may block the sums differently: allow rounding, not other samples' data.
    scale = float(np.max(np.abs(b), initial=0.0, where=np.isfinite(b)))
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-5 * max(scale, 1.0), equal_nan=True))
