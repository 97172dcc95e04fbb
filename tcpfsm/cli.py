"""Command line: the `tcpfsm` group, `main()` and how a run ends. The commands live in
`tcpfsm.cli_commands` (and `live` in `tcpfsm.live.cli`) and are imported only when one of them runs or
--help lists them, so `tcpfsm --version` costs an interpreter and click, not numpy and networkx.

Errors a user can fix (missing file, not a capture, bad option value, output that cannot be written:
disk full, I/O error) print one line on stderr and exit 2; a truncated capture is analysed as far as it
goes with a warning (exit 0). A reader that stops early (`tcpfsm analyze X --format jsonl | head -1`)
ends the run quietly with exit 0, as `ls | head` does. No traceback reaches the user unless
TCPFSM_DEBUG=1 is set.
"""
from __future__ import annotations

import gc
import os
import sys

# One process, one analysis thread: OpenBLAS's worker threads (started when numpy loads) would only spin after
# numpy's few BLAS calls, taking a core from the analysis on a small machine. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from . import __version__


class UserError(ValueError):
    """A bad value from the user: one line, exit 2."""


def pairs(values, what: str) -> dict[str, float]:
    """NAME=NUMBER options (--timer, --threshold) as a dict; the numbers' ranges are checked by the owners."""
    out = {}
    for v in values:
        name, sep, num = v.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(num)
        except ValueError:
            raise UserError(f"bad {what} {v!r}: expected NAME=NUMBER") from None
    return out


NOTES: list[str] = []       # stderr lines printed once a command has succeeded

# command name -> module that defines it (a click command of that name)
COMMANDS = {
    "analyze": "tcpfsm.cli_commands",
    "timeline": "tcpfsm.cli_commands",
    "netstat": "tcpfsm.cli_commands",
    "states": "tcpfsm.cli_commands",
    "report": "tcpfsm.cli_commands",
    "graph": "tcpfsm.cli_commands",
    "live": "tcpfsm.live.cli",
    "segments": "tcpfsm.cli_path", "paths": "tcpfsm.cli_path",      # path health (issue 8)
}


class ReaderGone(Exception):
    """stdout's reader left (EPIPE). Not an OSError, so that click does not turn it into its own exit 1."""


class _LazyGroup(click.Group):
    """A group whose commands are imported when asked for (click's documented lazy-loading pattern)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ReaderGone from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        import importlib
        return getattr(importlib.import_module(module), name)


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from . import _kernels
        click.echo(f"tcpfsm, version {__version__}\n{_kernels.describe()}")
        ctx.exit()


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and which hot-path kernels are compiled, and exit.")
def cli() -> None:
    """Reconstruct both endpoints' TCP state machines from a capture and say what went wrong."""


def _fail(msg: str, code: int = 2) -> None:
    click.echo(f"tcpfsm: error: {msg}", err=True)
    sys.exit(code)


def _reader_gone() -> None:
    """stdout's reader left (EPIPE): nothing more can be said there. Point fd 1 at /dev/null so the
    interpreter's own flush at exit cannot complain, and end quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    gc.disable()        # a short-lived process full of long-lived acyclic objects: see api.gc_paused
    from .render.output import OutputError
    try:
        NOTES.clear()
        cli.main(args=argv, prog_name="tcpfsm", standalone_mode=False)
        for note in NOTES:
            click.echo(note, err=True)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as e:
        _fail(e.format_message().splitlines()[-1] if e.format_message() else str(e))
    except click.ClickException as e:
        _fail(e.format_message())
    except (BrokenPipeError, ReaderGone):
        _reader_gone()
    except OutputError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:
        if _user_error(e):
            _fail(str(e))
        if os.environ.get("TCPFSM_DEBUG"):  # a bug: one line, details on request
            import traceback
            traceback.print_exc()
        _fail(f"internal error: {type(e).__name__}: {e} (set TCPFSM_DEBUG=1 for details)", 1)
    try:
        sys.stdout.flush()                   # what went through sys.stdout (click.echo) is checked too
    except BrokenPipeError:
        _reader_gone()
    except OSError as e:
        _fail(f"cannot write stdout: {e.strerror}")


def run() -> None:
    """The console script: `main()`, then, once it succeeded with nothing left running, the process ends
    without tearing the analysis down object by object: freeing millions of flows, endpoints and transitions
    one at a time costs ~0.5 s of the bench capture's 6 and helps nobody. What needs the interpreter's orderly
    exit -- a thread still running, multiprocessing or Dask (their atexit clean-up) -- gets it."""
    main()
    import threading
    if threading.active_count() == 1 and not any(m in sys.modules for m in ("multiprocessing", "distributed")):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            return
        os._exit(0)


def _user_error(e: Exception) -> bool:
    if isinstance(e, (UserError, ValueError)):
        return True
    cap = sys.modules.get("tcpfsm.capture.batch")      # loaded whenever a capture was opened
    return cap is not None and isinstance(e, cap.CaptureError)


if __name__ == "__main__":          # python -m tcpfsm.cli: run the importable module, not a second copy
    from tcpfsm.cli import run as _run
    _run()
