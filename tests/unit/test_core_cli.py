"""wsgicore.cli: the one settings helper every server reads its environment
with (webserver2, 3h, 4a, 4b): each variable checked, a bad one named."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "part2"))

from wsgicore.cli import (  # noqa: E402
    ACCESS_LOG_BUFFER,
    KEEP_ALIVE,
    WORKERS,
    UsageError,
    settings_from_env,
)


def test_the_defaults_and_the_options_asked_for():
    settings = settings_from_env(1024, (WORKERS, KEEP_ALIVE, ACCESS_LOG_BUFFER), environ={})
    assert (settings.host, settings.port, settings.request_queue_size) == ("", 8888, 1024)
    assert (settings.request_timeout, settings.validate) == (10.0, False)
    assert settings.more == {"workers": 2, "keep_alive": 5.0, "log_buffer": 16384}
    assert settings_from_env(5, environ={}).more == {}  # webserver2 asks for none


def test_values_are_read():
    environ = {"PORT": " 0 ", "WORKERS": "8", "KEEP_ALIVE": "0.5", "REQUEST_TIMEOUT": "2",
               "WSGI_VALIDATE": "yes", "HOST": "127.0.0.1"}
    settings = settings_from_env(5, (WORKERS, KEEP_ALIVE), environ=environ)
    assert (settings.port, settings.request_timeout, settings.validate) == (0, 2.0, True)
    assert settings.more == {"workers": 8, "keep_alive": 0.5}


@pytest.mark.parametrize("name, value", [
    ("WORKERS", "2.5"), ("WORKERS", "-1"), ("WORKERS", "0"), ("WORKERS", "65"),
    ("WORKERS", "1_0"), ("WORKERS", "²"), ("PORT", "http"), ("PORT", "70000"),
    ("KEEP_ALIVE", "nan"), ("KEEP_ALIVE", "0"), ("ACCESS_LOG_BUFFER", "-5"),
    ("REQUEST_QUEUE_SIZE", "0"), ("REQUEST_TIMEOUT", "inf"), ("WSGI_VALIDATE", "maybe"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value):
    with pytest.raises(UsageError) as err:
        settings_from_env(5, (WORKERS, KEEP_ALIVE, ACCESS_LOG_BUFFER), environ={name: value})
    assert str(err.value).startswith(f"{name} must be ") and repr(value) in str(err.value)
