r"""webserver3d.py: the leaky concurrent server: nobody closes the duplicates.

Shows:   curl prints `Hello, World!` but does not terminate: the child closed
         its copy of the connection, the parent still holds one, so no FIN is
         sent. Each served child stays a zombie (`ps` shows Z, <defunct>).
Bug:     the parent keeps every client_connection and never waits. Out of
         descriptors, accept() fails with EMFILE; out of processes, fork()
         fails with EAGAIN. Neither is caught: the server dies with a traceback.
Try it:  docker compose up part3-fork-leaky          (ulimit -n 256)
         docker compose run --rm tests \
             python services/part3/client3.py --host part3-fork-leaky --max-clients=300
         docker compose up part3-fork-leaky-nproc    (400 processes, ulimit -n 500)
         docker compose run --rm tests \
             python services/part3/client3.py --host part3-fork-leaky-nproc --max-clients=500
         plain Python: ulimit -n 256; python webserver3d.py
                       python client3.py --max-clients=300
Env:     PORT=8888  HOST='' (all interfaces)  REQUEST_QUEUE_SIZE=5
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
REQUEST_QUEUE_SIZE = setting("REQUEST_QUEUE_SIZE", 5, "a whole number")

# No Content-Length: the client learns where the body ends when we close.
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"


def handle_request(client_connection):
    request = client_connection.recv(1024)
    print(f"Child PID: {os.getpid()}. Parent PID {os.getppid()}", flush=True)
    print(request.decode(errors="replace"), flush=True)
    client_connection.sendall(HTTP_RESPONSE)


def serve_forever():
    listen_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen_socket.bind(SERVER_ADDRESS)
    listen_socket.listen(REQUEST_QUEUE_SIZE)
    print(f"Serving HTTP on port {listen_socket.getsockname()[1]} ...", flush=True)
    print(f"Parent PID (PPID): {os.getpid()}", flush=True)

    clients = []  # a reference to every connection: none is ever closed
    while True:
        # Not caught on purpose: EMFILE here and EAGAIN from fork() kill the server.
        client_connection, client_address = listen_socket.accept()
        clients.append(client_connection)
        pid = os.fork()
        if pid == 0:  # child
            try:
                # listen_socket.close() is missing: the child keeps a copy too
                handle_request(client_connection)
                client_connection.close()
            except Exception as error:  # report it; never return into the loop
                print(f"Child {os.getpid()}: {error}", file=sys.stderr, flush=True)
            finally:
                os._exit(0)  # child exits here
        else:  # parent
            # client_connection.close() is missing: the parent's copy stays open
            print(f"Connections held open by the parent: {len(clients)}", flush=True)


if __name__ == "__main__":
    try:
        serve_forever()
    except KeyboardInterrupt:
        print(f"\n{PROG}: stopped", file=sys.stderr)
        sys.exit(130)
