"""edgekit.errors: one class per failure class, one exit code each."""

from __future__ import annotations

import pytest

from edgekit.errors import (
    BadInput,
    EdgekitError,
    GateFailed,
    InternalError,
    MissingDependency,
    MissingHardware,
    Unavailable,
    Unreachable,
    error_for_exit_code,
)
from edgekit.transport import TransportError


def test_exit_codes_per_class() -> None:
    assert GateFailed.exit_code == 1 and BadInput.exit_code == 2 and InternalError.exit_code == 4
    for cls in (MissingDependency, Unreachable, MissingHardware, TransportError):
        assert issubclass(cls, Unavailable) and cls.exit_code == 3


def test_missing_hardware_is_not_an_unreachable_device() -> None:
    """ "No CUDA GPU here" is exit 3 like a missing extra, but no device failed: callers that retry or
    report devices (`except Unreachable`) must not take it for one."""
    error = MissingHardware(
        "no CUDA GPU is visible on this machine; build the engine on the device (build.sh)"
    )
    assert error.exit_code == 3 and not isinstance(error, Unreachable | MissingDependency)
    from edgekit.backends.trt.cuda import NoCudaDevice  # what the TensorRT backend raises without a GPU

    assert issubclass(NoCudaDevice, MissingHardware) and not issubclass(NoCudaDevice, Unreachable)


def test_missing_dependency_names_the_extra() -> None:
    error = MissingDependency("openvino", "openvino", "the openvino backend")
    assert "pip install 'edgekit[openvino]'" in str(error) and error.extra == "openvino"


@pytest.mark.parametrize(
    ("code", "cls"), [(1, GateFailed), (2, BadInput), (3, Unavailable), (4, InternalError)]
)
def test_error_for_exit_code(code: int, cls: type[EdgekitError]) -> None:
    error = error_for_exit_code(code, "summary")
    assert type(error) is cls and error.exit_code == code and str(error) == "summary"
    assert error_for_exit_code(99, "x").exit_code == 4
