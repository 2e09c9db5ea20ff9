"""webserver3c.py: a concurrent server, one forked child per connection.

Shows:   many clients are answered at once: each connection is served by a
         child whose parent PID is the server's PID, and the child's sleep
         (SLEEP after the response) no longer delays anyone else.
Bug:     the parent never waits for its children: each one stays a zombie
         once it exits (see webserver3d and webserver3e).
Try it:  docker compose up part3-fork, then several curls at once:
           curl http://127.0.0.1:8303/hello   (each prints at once, ends after 60 s)
         plain Python: python webserver3c.py, the same curls on port 8888
Env:     PORT=8888  HOST='' (all interfaces)  REQUEST_QUEUE_SIZE=5  SLEEP=60
"""

import os
import re
import socket
import sys
import time

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
SLEEP = setting("SLEEP", 60.0, "a number of seconds", r"\d*\.?\d+")

# No Content-Length: the client learns where the body ends when we close.
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"


def handle_request(client_connection):
    request = client_connection.recv(1024)
    print(f"Child PID: {os.getpid()}. Parent PID {os.getppid()}", flush=True)
    print(request.decode(errors="replace"), flush=True)
    client_connection.sendall(HTTP_RESPONSE)
    time.sleep(SLEEP)  # only this child sleeps; the parent is accepting again


def serve_forever():
    listen_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen_socket.bind(SERVER_ADDRESS)
    listen_socket.listen(REQUEST_QUEUE_SIZE)
    print(f"Serving HTTP on port {listen_socket.getsockname()[1]} ...", flush=True)
    print(f"Parent PID (PPID): {os.getpid()}", flush=True)

    while True:
        client_connection, client_address = listen_socket.accept()
        pid = os.fork()
        if pid == 0:  # child
            try:
                listen_socket.close()  # close child copy
                handle_request(client_connection)
                client_connection.close()
            except Exception as error:  # report it; never return into the loop
                print(f"Child {os.getpid()}: {error}", file=sys.stderr, flush=True)
            finally:
                os._exit(0)  # child exits here
        else:  # parent
            client_connection.close()  # close parent copy and loop over


if __name__ == "__main__":
    try:
        serve_forever()
    except KeyboardInterrupt:
        print(f"\n{PROG}: stopped", file=sys.stderr)
        sys.exit(130)
