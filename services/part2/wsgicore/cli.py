"""wsgicore.cli: the command line every server shares: `module:callable`
and the settings in the environment, each read and checked in one place.

A bad value is one line on stderr naming the variable, and exit status 2
(a usage error): `webserver4a.py: WORKERS must be a whole number 1-64, got '2.5'`.
"""

import importlib
import os
import re
import sys
from dataclasses import dataclass, field

_WHOLE = re.compile(r"[0-9]+")


class UsageError(Exception):
    """A bad command line or environment setting: one line, exit status 2."""


@dataclass(frozen=True)
class Option:
    """One environment variable: its name, default, range and meaning.
    `keyword` is the make_server() argument it becomes (None: a common one)."""

    name: str
    default: object
    kind: type  # int (digits only) or float
    low: float
    high: float
    meaning: str
    keyword: str | None = None

    def read(self, environ=os.environ):
        text = environ.get(self.name, "").strip()
        if not text:
            return self.default
        value = None
        if self.kind is int:
            if _WHOLE.fullmatch(text):
                value = int(text)
        else:
            try:
                value = float(text)
            except ValueError:
                pass
        if value is None or not self.low <= value <= self.high:
            raise UsageError(f"{self.name} must be {self.meaning}, got {text!r}")
        return value


PORT = Option("PORT", 8888, int, 0, 65535, "a port number 0-65535")
REQUEST_TIMEOUT = Option("REQUEST_TIMEOUT", 10.0, float, 0.01, 86400.0,
                         "a number of seconds (0.01-86400)")
# the pre-fork servers' (services/part4)
WORKERS = Option("WORKERS", 2, int, 1, 64, "a whole number 1-64", "workers")
KEEP_ALIVE = Option("KEEP_ALIVE", 5.0, float, 0.1, 3600.0, "a number of seconds (0.1-3600)",
                    "keep_alive")
ACCESS_LOG_BUFFER = Option("ACCESS_LOG_BUFFER", 16384, int, 0, 1 << 24,
                           "a number of bytes 0-16777216", "log_buffer")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str
    port: int
    request_queue_size: int
    request_timeout: float
    validate: bool
    more: dict = field(default_factory=dict)  # keyword -> value, for the options asked for


def settings_from_env(request_queue_size, options=(), environ=os.environ):
    """HOST, PORT, REQUEST_QUEUE_SIZE, REQUEST_TIMEOUT, WSGI_VALIDATE, and
    the server's own options (WORKERS, ...). UsageError for a bad value."""
    validate = environ.get("WSGI_VALIDATE", "").strip().lower()
    if validate not in ("", "0", "1", "false", "true", "no", "yes"):
        raise UsageError(f"WSGI_VALIDATE must be 0 or 1, got {validate!r}")
    queue = Option("REQUEST_QUEUE_SIZE", request_queue_size, int, 1, 65535,
                   "a whole number 1-65535")
    return Settings(
        host=environ.get("HOST", ""),
        port=PORT.read(environ),
        request_queue_size=queue.read(environ),
        request_timeout=REQUEST_TIMEOUT.read(environ),
        validate=validate in ("1", "true", "yes"),
        more={option.keyword: option.read(environ) for option in options},
    )


def load_application(spec, validate=False):
    """'module:callable' -> the application (wrapped in wsgiref's validator
    if asked). A bad spec, a missing module or attribute: UsageError. An
    error inside the module's own code propagates with its traceback."""
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise UsageError(f"{spec!r} is not of the form module:callable")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise UsageError(f"no module named {module_name!r} (looked in {sys.path[0]!r} "
                             "and the rest of sys.path)") from None
        raise
    try:
        application = getattr(module, name)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {name!r}") from None
    if not callable(application):
        raise UsageError(f"{spec} is not callable")
    if validate:
        from wsgiref.validate import validator  # once, at start-up

        application = validator(application)
    return application


def server_from_command_line(prog, argv, make_server, request_queue_size, options=()):
    """`module:callable` and the settings in the environment -> the listening
    server, made by make_server((host, port), application, queue size,
    timeout, **the options' values). A usage error or a port that cannot be
    had is one line on stderr and exit 2."""
    if not argv:
        sys.exit("Provide a WSGI application object as module:callable")
    try:
        settings = settings_from_env(request_queue_size, options)
        application = load_application(argv[0], validate=settings.validate)
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        return make_server((settings.host, settings.port), application,
                           settings.request_queue_size, settings.request_timeout,
                           **settings.more)
    except OSError as err:
        print(f"{prog}: cannot listen on {settings.host or '*'}:{settings.port}: {err.strerror}",
              file=sys.stderr)
        sys.exit(2)
