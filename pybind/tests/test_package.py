"""The package surface: exports, version, build info, lazy ASGI import, typing marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import shmtel
from shmtel import _native


def test_all_names_exist() -> None:
    expected = {
        "Observability",
        "MetricConfig",
        "TracingConfig",
        "LoggingConfig",
        "LogLevel",
        "Span",
        "Counter",
        "Gauge",
        "Histogram",
        "Summary",
        "setup_observability",
        "__version__",
        "build_info",
        "start_span",
        "current_span",
        "set_correlation_id",
        "set_trace_context",
    }
    assert expected <= set(shmtel.__all__)
    for name in shmtel.__all__:
        assert getattr(shmtel, name) is not None, name


def test_version_and_build_info() -> None:
    assert shmtel.__version__ == _native.__version__
    assert isinstance(shmtel.__version__, str) and shmtel.__version__
    info = shmtel.build_info()
    assert isinstance(info, dict)
    assert info["version"] == shmtel.__version__
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in info.items())


def test_native_objects_are_reexported() -> None:
    assert shmtel.Span is _native.Span
    assert shmtel.Counter is _native.Counter
    assert shmtel.start_span is _native.start_span
    assert shmtel.current_span is _native.current_span


def test_setup_observability_is_lazy() -> None:
    code = (
        "import sys, shmtel\n"
        "assert 'shmtel.asgi' not in sys.modules\n"
        "assert 'starlette' not in sys.modules\n"
        "f = shmtel.setup_observability\n"
        "import shmtel.asgi\n"
        "assert f is shmtel.asgi.setup_observability\n"
        "assert 'starlette' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = shmtel.nope


def test_py_typed_and_stub_ship() -> None:
    package = Path(shmtel.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_native.pyi").exists()


def test_region_dir_follows_the_environment() -> None:
    import os

    shmtel.Observability()
    assert Path(_native.region_dir()) == Path(os.environ["SHMTEL_DIR"])


def _in_fresh_process(code: str, **env: str) -> None:
    import os

    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ, **env})


def test_service_name_from_config(tmp_path: Path) -> None:
    code = (
        "import shmtel\n"
        "from shmtel import _native\n"
        "obs = shmtel.Observability(tracing_config=shmtel.TracingConfig(service_name='svc-x'))\n"
        "assert obs.writer_configured\n"
        "assert _native.service_name() == 'svc-x', _native.service_name()\n"
        "again = shmtel.Observability(tracing_config=shmtel.TracingConfig(service_name='svc-y'))\n"
        "assert not again.writer_configured\n"
        "assert _native.service_name() == 'svc-x'\n"
    )
    _in_fresh_process(code, SHMTEL_DIR=str(tmp_path), SHMTEL_SERVICE="from-env")


def test_service_name_from_env_when_config_is_default(tmp_path: Path) -> None:
    code = (
        "import shmtel\n"
        "from shmtel import _native\n"
        "shmtel.Observability()\n"
        "assert _native.service_name() == 'from-env', _native.service_name()\n"
    )
    _in_fresh_process(code, SHMTEL_DIR=str(tmp_path), SHMTEL_SERVICE="from-env")
    code = "import shmtel\nfrom shmtel import _native\nshmtel.Observability()\nassert _native.service_name() == 'covet-service'\n"
    env = {"SHMTEL_DIR": str(tmp_path)}
    import os

    clean = {k: v for k, v in os.environ.items() if k != "SHMTEL_SERVICE"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**clean, **env})
