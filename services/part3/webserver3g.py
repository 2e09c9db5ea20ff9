r"""webserver3g.py: the SIGCHLD server whose handler reaps every exited child.

Shows:   grim_reaper calls waitpid(-1, WNOHANG) in a loop until no exited
         child is left, so a burst of children exiting at once leaves no
         zombie, however few SIGCHLDs got through; accept() is restarted.
Bug:     none left of the article's; its lesson is done.
Try it:  docker compose up part3-waitpid
         docker compose run --rm tests \
             python services/part3/client3.py --host part3-waitpid --max-clients 128 --burst
         then look for zombies: docker compose exec part3-waitpid ps -o pid,stat,args
         plain Python: python webserver3g.py
                       python client3.py --max-clients 128 --burst; ps -o pid,stat,args
Env:     PORT=8888  HOST='' (all interfaces)  REQUEST_QUEUE_SIZE=1024  SLEEP=0
         ACCEPT=libc (the real accept(2), as the article's Python 2 called it)
                or python (socket.accept(), which retries after EINTR)
"""

import ctypes
import errno
import os
import re
import select
import signal
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
REQUEST_QUEUE_SIZE = setting("REQUEST_QUEUE_SIZE", 1024, "a whole number")
SLEEP = setting("SLEEP", 0.0, "a number of seconds", r"\d*\.?\d+")
ACCEPT = setting("ACCEPT", "libc", "libc or python", r"libc|python")

# No Content-Length: the client learns where the body ends when we close.
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\n\r\nHello, World!\n"

libc = ctypes.CDLL(None, use_errno=True)
libc.accept.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def accept(listen_socket):
    """Accept one connection, the way the article's Python 2 did: once.

    Since Python 3.5 (PEP 475) socket.accept() calls accept(2) again by itself
    when a signal handler has run and returned, so the EINTR below never
    reaches our code: ACCEPT=python shows that. ACCEPT=libc calls the C
    library's accept(2) once, and the kernel's EINTR comes back to us.
    """
    if ACCEPT == "python":
        return listen_socket.accept()[0]
    fd = libc.accept(listen_socket.fileno(), None, None)
    if fd == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))  # errno 4 becomes InterruptedError
    return socket.socket(fileno=fd)


# CPython's socketserver.ForkingMixIn takes another road: no SIGCHLD handler
# at all. Its serve_forever() loop wakes up at least every 0.5 s and calls
# collect_children(), which polls waitpid(pid, WNOHANG) for each child it
# started. A zombie lives at most until the next poll, and no system call is
# ever interrupted by a handler.
def grim_reaper(signum, frame):
    while True:  # one SIGCHLD may stand for many exited children
        try:
            pid, status = os.waitpid(
                -1,  # wait for any child process
                os.WNOHANG,  # do not block, return (0, 0) if none has exited
            )
        except ChildProcessError:  # ECHILD: no child processes left at all
            return
        if pid == 0:  # children remain, but none has exited yet
            return
        # os.write, not print: a handler may run in the middle of another print
        os.write(1, f"Child {pid} terminated with status {status}\n".encode())


def handle_request(client_connection):
    request = client_connection.recv(1024)
    print(f"Child PID: {os.getpid()}. Parent PID {os.getppid()}", flush=True)
    print(request.decode(errors="replace"), flush=True)
    client_connection.sendall(HTTP_RESPONSE)
    time.sleep(SLEEP)  # 0 by default: the children of a burst exit together


def serve_forever():
    listen_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen_socket.bind(SERVER_ADDRESS)
    listen_socket.listen(REQUEST_QUEUE_SIZE)
    print(f"Serving HTTP on port {listen_socket.getsockname()[1]} ...", flush=True)
    print(f"Parent PID (PPID): {os.getpid()}", flush=True)

    signal.signal(signal.SIGCHLD, grim_reaper)
    # signal.signal() already installs the handler without SA_RESTART; we say
    # it out loud: a SIGCHLD makes a blocked accept(2) fail with EINTR.
    signal.siginterrupt(signal.SIGCHLD, True)

    while True:
        # Wait at most a second for a client before calling accept(2). A
        # SIGCHLD that lands after Python last checked for signals but before
        # accept(2) blocks would otherwise wait for the next client to be
        # handled: a window every handler-based reaper has. The timeout bounds
        # a zombie's life to about a second.
        if not select.select([listen_socket], [], [], 1.0)[0]:
            continue
        try:
            client_connection = accept(listen_socket)
        except OSError as error:
            if error.errno == errno.EINTR:  # a SIGCHLD interrupted accept(2):
                continue  # restart it
            raise
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
