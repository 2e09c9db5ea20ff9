"""wsgicore.log: the access log (one line per request) and the error log.

A server is given an AccessLog; its buffering is a constructor parameter.
A write(2) per line into the container's log pipe costs a worker about a
third of its time under load (py-spy, webserver4a), so a pre-fork server
keeps the lines and writes them `buffer` bytes at a time, as nginx's
`access_log ... buffer=` does. The owner calls flush() before it waits for
work (nothing sits in the buffer while the server is idle) and before a
worker exits. buffer=0 (the default): a write per line.
"""

import re
import sys
import time

_UNPRINTABLE = re.compile(r'[^\x20-\x21\x23-\x7e]')  # escaped in the access log (and ")


def log(message):
    """A message to stderr at once (stderr is line-buffered: one write a line)."""
    sys.stderr.write(message + "\n")


class AccessLog:
    """Access lines to stderr, `buffer` bytes at a time (0: one write a line)."""

    __slots__ = ("buffer", "_lines", "_size")

    def __init__(self, buffer=0):
        if buffer < 0:
            raise ValueError("buffer must be 0 or more bytes")
        self.buffer = buffer
        self._lines = []
        self._size = 0

    def access(self, line):
        if not self.buffer:
            sys.stderr.write(line + "\n")
            return
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.buffer:
            self.flush()

    def message(self, text):
        """Anything but an access line: after the lines before it, at once."""
        self.flush()
        log(text)

    def flush(self):
        if self._lines:
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            self._size = 0
            sys.stderr.write(text)


def access_line(client_address, request_line, status, size, note=""):
    """Common Log Format, the way http.server writes it."""
    host = client_address[0] if client_address else "-"
    when = time.strftime("%d/%b/%Y %H:%M:%S")
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", request_line)
    if len(text) > 200:
        text = text[:200] + "..."
    line = f'{host} - - [{when}] "{text}" {status} {size}'
    return f"{line} ({note})" if note else line
