"""dip: restore a damaged photograph with a Deep Image Prior.

``import dip`` stays light (the CLI's ``--help`` and ``--version`` go through here); the library's heavy parts
load on first use: ``dip.restore``, ``dip.fit``, ...
"""

from __future__ import annotations

import os

# On a small CPU, OpenMP threads that spin while waiting steal the core the other thread needs; a busy
# 2-core machine ran a training step about 8x faster with PASSIVE. Only effective before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {"restore": "api", "Restoration": "api", "NetConfig": "config", "FitConfig": "config", "Task": "config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dip' has no attribute {name!r}")
