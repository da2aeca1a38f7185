"""Nothing half-written: put a module tree back as it was when an in-place prune fails or is cancelled.

Rewrites never modify a tensor in place: they assign new parameters and buffers and change size
attributes. A shallow snapshot of every submodule's attribute dicts is therefore enough to undo
them, at no memory cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def restore_on_error(model: nn.Module) -> Iterator[None]:
    """On any exception (KeyboardInterrupt included) restore every submodule, then re-raise."""
    snapshot = [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers), dict(m._modules))
                for m in model.modules()]
    try:
        yield
    except BaseException:
        for m, attrs, params, buffers, modules in snapshot:
            m.__dict__.clear()
            m.__dict__.update(attrs)
            for live, saved in ((m._parameters, params), (m._buffers, buffers), (m._modules, modules)):
                live.clear()
                live.update(saved)
        raise
