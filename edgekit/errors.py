"""One exception class per failure class; the CLI maps each to its exit code (DESIGN.md)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType


class EdgekitError(Exception):
    """Base class. `exit_code` is what the CLI returns; the message is one line."""

    exit_code = 4


class GateFailed(EdgekitError):
    """A fidelity, latency or regression gate failed."""

    exit_code = 1


class BadInput(EdgekitError):
    """Bad usage or bad input: missing file, malformed model/TOML, mismatched data."""

    exit_code = 2


class NotApplicable(BadInput):
    """The request cannot change this model (weight-only quantization of a model without MatMul/Gemm
    weights): still exit 2 on the command line; the demo and releases record the row as skipped."""


class Unavailable(EdgekitError):
    """Something this run needs is not here (exit 3): an optional package, a device, hardware.

    Use a subclass: MissingDependency (a pip extra), Unreachable (a device), MissingHardware (this
    machine lacks a GPU or driver). The input itself was fine: the same command works where that
    thing is present."""

    exit_code = 3


class MissingDependency(Unavailable):
    """An optional dependency (a backend's pip extra) is not installed."""

    def __init__(self, module: str, extra: str, what: str = "") -> None:
        self.module = module
        self.extra = extra
        purpose = f" for {what}" if what else ""
        super().__init__(
            f"'{module}' is not installed{purpose}; install it with: pip install 'edgekit[{extra}]'"
        )


class Unreachable(Unavailable):
    """A device could not be reached or refused us (network, auth, host key, a dead agent)."""


class MissingHardware(Unavailable):
    """This machine lacks hardware or a driver the step needs, e.g. no CUDA GPU to build a TensorRT
    engine here. Not a device problem: say where the step can run instead (on the device, build.sh)."""


class NotVerifiedHere(MissingHardware):
    """This host cannot run the artifact as its device does (an FP16 TensorRT engine without TensorRT
    and a GPU here, an engine that does not load): nothing was verified, which is never a pass.
    Verify it on the device (`edgekit verify DIR --device NAME --val SET`)."""


class InternalError(EdgekitError):
    """A bug in edgekit or a library misbehaving: not the user's input (exit 4)."""

    exit_code = 4


EXIT_CLASSES: dict[int, type[EdgekitError]] = {1: GateFailed, 2: BadInput, 3: Unavailable, 4: InternalError}


def error_for_exit_code(code: int, message: str) -> EdgekitError:
    """An error of the class that exits with `code` (1-4), for summaries over several failures such as
    the demo's rows, which keep each failure's exit code rather than the exception."""
    return EXIT_CLASSES.get(code, InternalError)(message)


def suggest(name: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the closest valid choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def require(module: str, extra: str, what: str = "") -> ModuleType:
    """Import an optional module, or raise MissingDependency (exit 3) naming the pip extra that
    installs it. An installed module that fails to import for another reason re-raises as is."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is None or exc.name in (module, top):
            raise MissingDependency(module, extra, what) from exc
        raise
