"""Heavy libraries imported on first use, so that a process that never needs them does not
hold them.

A worker or the scheduler composes every service (the embedded shape dispatches events to
every service's consumers), so a top-level ``import numpy`` in the prediction path costs each
of them about 40 MB of memory at rest. ``lazy("numpy")`` returns a stand-in module: the first
attribute read imports the real one (under the import lock, so threads are safe) and copies
its namespace in, so later reads are plain module lookups on the hot path.

Use it with a ``TYPE_CHECKING`` branch so that the type checker still sees the real module::

    if TYPE_CHECKING:
        import numpy as np
    else:
        np = lazy("numpy")
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    def __getattr__(self, attribute: str) -> Any:
        # Called only for names not yet in this module's namespace.
        real = importlib.import_module(self.__name__)
        self.__dict__.update({k: v for k, v in real.__dict__.items() if k != "__name__"})
        return getattr(real, attribute)


def lazy(name: str) -> ModuleType:
    """``name`` itself if something imported it already, else a stand-in that imports it on
    first use."""
    loaded = sys.modules.get(name)
    return loaded if loaded is not None else _LazyModule(name)
