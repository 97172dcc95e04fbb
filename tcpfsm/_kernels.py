"""Which hot-path kernels run compiled: the one place that chooses between a kernel's compiled extension
and its plain-Python source.

Each kernel is a Cython pure-Python-mode module (`tcpfsm/capture/_decode.py`, ...). setup.py compiles it
into an extension of a *different* name, the source name plus `_c` (`tcpfsm.capture._decode_c`), so the
two never shadow each other: the `.py` stays importable by its own name (the readable reference, and what
the equivalence tests load beside the extension in one process), and which one runs is decided here,
not by the import system's preference for extension modules. `load` returns the extension unless

* TCPFSM_PURE=1 (or any value but "" and "0") is set when tcpfsm is imported: tests run both ways;
* the extension is missing (no compiler at install time, a failed compile, a plain source checkout);
* the extension was built from other source than the `.py` beside it (an editable install whose kernel
  was edited since the build): setup.py stamps the source's SHA-256 into the extension as
  `__source_sha256__`. Running stale compiled code silently is the one outcome worse than running slowly,
  so a stale extension is not used and a warning says how to rebuild.

Must not: import numpy or any kernel at module import time beyond what `load` is asked for.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import warnings
from types import ModuleType

# Every kernel module (by its source name), in the order `compiled()` reports them.
KERNELS = ("tcpfsm.capture._decode", "tcpfsm.fsm.machine", "tcpfsm.track._runs",
           "tcpfsm.path._seqan", "tcpfsm.render._emit", "tcpfsm.detect._piles", "tcpfsm.detect._tally")

_loaded: dict[str, bool] = {}    # source name -> the compiled extension is in use


def pure_forced() -> bool:
    return os.environ.get("TCPFSM_PURE", "") not in ("", "0")


def _source_sha256(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return None
    with open(spec.origin, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load(name: str) -> ModuleType:
    """The kernel module `name` (its source name, e.g. "tcpfsm.capture._decode"): the compiled extension
    `name + "_c"` when it may be used (see the module doc), else the plain-Python module."""
    if not pure_forced():
        try:
            ext = importlib.import_module(name + "_c")
        except ImportError:
            ext = None
        if ext is not None:
            if getattr(ext, "__source_sha256__", None) == _source_sha256(name):
                _loaded[name] = True
                return ext
            warnings.warn(f"{name}_c was compiled from another version of {name.replace('.', '/')}.py; "
                          "using the uncompiled module (rebuild: pip install -e . or make venv)", stacklevel=2)
    _loaded[name] = False
    return importlib.import_module(name)


def compiled() -> dict[str, bool]:
    """Kernel source name -> whether its compiled extension is the one in use (importing the kernels)."""
    for name in KERNELS:
        if name not in _loaded:
            load(name)
    return {name: _loaded[name] for name in KERNELS}


def describe() -> str:
    """One line for `tcpfsm --version`: which kernels are compiled, and why not when they are not."""
    state = compiled()
    short = [n.rsplit(".", 1)[-1].lstrip("_") for n in state]
    if all(state.values()):
        return f"compiled kernels: {', '.join(short)}"
    why = " (TCPFSM_PURE set)" if pure_forced() else ""
    done = [s for s, (_, c) in zip(short, state.items()) if c]
    return (f"compiled kernels: {', '.join(done) or 'none'}; uncompiled: "
            f"{', '.join(s for s, (_, c) in zip(short, state.items()) if not c)}{why}")
