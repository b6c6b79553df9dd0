"""rewriter: declarative post-training quantization for ONNX models."""
from __future__ import annotations

__version__ = "0.1.0"


def audit(*args, **kwargs):  # noqa: D103 - re-exported lazily so `import rewriter` stays cheap
    from rewriter.api import audit as _audit

    return _audit(*args, **kwargs)


audit.__doc__ = "See rewriter.api.audit."


def quantize(*args, **kwargs):  # noqa: D103 - re-exported lazily, like audit
    from rewriter.api import quantize as _quantize

    return _quantize(*args, **kwargs)


quantize.__doc__ = "See rewriter.api.quantize."
