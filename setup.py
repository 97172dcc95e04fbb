"""Build the compiled hot-path kernels; pyproject.toml holds everything else (metadata, dependencies).

Each kernel (tcpfsm/_kernels.py: KERNELS) is a Cython pure-Python-mode `.py` file. It is compiled, with
gcc -O3, into an extension named after it plus `_c` (tcpfsm/capture/_decode.py -> tcpfsm.capture._decode_c)
so that the `.py` module stays importable beside it (tcpfsm/_kernels.py explains the choice). The build
cythonizes a copy, build/cython/<package path>/<name>_c.py, stamped with the SHA-256 of the source
(`__source_sha256__`, checked at import: a stale extension is never used); the generated C stays under
build/, the source tree only gains the `.so` (editable installs, `build_ext --inplace`).

A kernel that cannot be built (no Cython, no C compiler, a compile error) is left uncompiled with one
warning line: the package still installs and runs the plain-Python kernels.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_tcpfsm_kernels", os.path.join(HERE, "tcpfsm", "_kernels.py"))
_kernels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_kernels)          # (stdlib only: importable before the dependencies are)

CYTHON_DIR = os.path.join("build", "cython")
COMPILE_ARGS = ["-O3"]


def _warn(msg: str) -> None:
    warnings.warn(f"tcpfsm: {msg}; the plain-Python kernels will run (slower)", stacklevel=1)


def _why(e: Exception) -> str:
    """An exception as a short clause (a compiler's message is its whole command line)."""
    text = str(e).strip().splitlines()[-1] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:120]}{'...' if len(text) > 120 else ''}"


def _stamped_copy(name: str) -> str:
    """build/cython/<pkg path>/<name>_c.py: the kernel's source plus its SHA-256 stamp; returns the path."""
    src = os.path.join(HERE, *name.split(".")) + ".py"
    with open(src, "rb") as f:
        text = f.read()
    dst = os.path.join(HERE, CYTHON_DIR, *name.split(".")) + "_c.py"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    stamp = f"\n__source_sha256__ = {hashlib.sha256(text).hexdigest()!r}\n".encode()
    new = text + stamp
    old = None
    if os.path.exists(dst):
        with open(dst, "rb") as f:
            old = f.read()
    if old != new:                     # (an unchanged copy keeps its mtime: cythonize skips it)
        with open(dst, "wb") as f:
            f.write(new)
    return os.path.relpath(dst, HERE)


class BuildKernels(build_ext):
    """build_ext that cythonizes the kernels first and never fails the install over them."""

    _failed: set = set()               # extension names that did not build

    def run(self) -> None:
        try:
            from Cython.Build import cythonize
        except ImportError:
            _warn("Cython is not installed, kernels not compiled")
            return
        try:
            for ext in self.extensions:    # (the same objects: setuptools has annotated them)
                ext.sources = [_stamped_copy(ext.name[:-2])]
                ext.extra_compile_args = COMPILE_ARGS
                (done,) = cythonize([Extension(ext.name, ext.sources)], quiet=True, language_level=3)
                ext.sources = done.sources
        except Exception as e:         # Cython's own compile errors are CompileError / generic exceptions
            _warn(f"cythonizing the kernels failed ({_why(e)})")
            self.extensions[:] = []
            return
        try:
            super().run()
        except Exception as e:         # no usable C compiler (DistutilsPlatformError, CompileError, OSError, ...)
            _warn(f"compiling the kernels failed ({_why(e)})")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self._failed = self._failed | {ext.name}
            _warn(f"compiling {ext.name} failed ({_why(e)})")

    def copy_extensions_to_source(self) -> None:   # (in-place / editable builds: only what was built)
        exts = self.extensions
        self.extensions = [e for e in exts if e.name not in self._failed]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = exts

    def get_outputs(self):             # (a kernel that failed has no output for the wheel to list)
        return [p for p in super().get_outputs() if os.path.exists(p)]


setup(
    ext_modules=[Extension(name + "_c", [os.path.join(*name.split(".")) + ".py"]) for name in _kernels.KERNELS],
    cmdclass={"build_ext": BuildKernels},
)
