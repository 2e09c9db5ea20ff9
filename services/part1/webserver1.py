r"""webserver1.py: the simplest web server of part 1.

Shows:   it reads what the client sends, prints it, and answers with the same
         `Hello, World!` page whatever the request says: it never parses the
         request line, so even garbage gets `HTTP/1.1 200 OK`.
Try it:  docker compose up part1       then  curl http://127.0.0.1:8001/hello
         python webserver1.py          then  curl http://localhost:8888/hello
         garbage in, hello out:        printf 'junk\r\n\r\n' | nc localhost 8888
Env:     PORT=8888  HOST='' (all interfaces)  REQUEST_QUEUE_SIZE=1
"""

import os
import re
import socket
import sys

PROG = os.path.basename(__file__)


def setting(name, default, meaning, pattern=r"\d+"):
    """Read a setting from the environment; a bad value: one line on stderr, exit 2."""
    text = os.environ.get(name, str(default)).strip()
    if re.fullmatch(pattern, text):
        return type(default)(text)
    sys.stderr.write(f"{PROG}: {name} must be {meaning}, got {text!r}\n")
    sys.exit(2)


HOST = os.environ.get("HOST", "")
PORT = setting("PORT", 8888, "a port number")
SERVER_ADDRESS = (HOST, PORT)
REQUEST_QUEUE_SIZE = setting("REQUEST_QUEUE_SIZE", 1, "a whole number")

# No Content-Length: the client learns where the body ends when we close.
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"


def handle_request(client_connection):
    request = client_connection.recv(1024)
    print(request.decode(errors="replace"), flush=True)
    client_connection.sendall(HTTP_RESPONSE)  # the same answer, whatever was asked


def serve_forever():
    listen_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen_socket.bind(SERVER_ADDRESS)
    listen_socket.listen(REQUEST_QUEUE_SIZE)
    print(f"Serving HTTP on port {listen_socket.getsockname()[1]} ...", flush=True)

    while True:
        client_connection, client_address = listen_socket.accept()
        try:
            handle_request(client_connection)
        except OSError as error:  # a client that hung up early must not stop us
            print(f"{client_address}: {error}", file=sys.stderr, flush=True)
        client_connection.close()


if __name__ == "__main__":
    try:
        serve_forever()
    except KeyboardInterrupt:
        print(f"\n{PROG}: stopped", file=sys.stderr)
        sys.exit(130)
