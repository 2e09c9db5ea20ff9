"""webserver4a.py: beyond the article: a pre-fork WSGI server (gunicorn's sync model).

Shows:   the fork cost is paid once per worker, not once per request. The
         arbiter (arbiter.py, shared with webserver4b) opens the listening
         socket, loads the application, and forks WORKERS workers; each
         worker, this file, accepts and serves one connection after the
         other with webserver2's handle_one_request, in a loop, for ever.
         The arbiter only watches: grim_reaper's waitpid(-1, WNOHANG) loop
         reaps a worker that died and forks a new one in its place; SIGTERM
         (docker stop) is passed to the workers, which finish the request
         in hand and exit 0.
Bug:     a slow client holds a worker. With WORKERS clients that send one
         header byte a second, nobody else is answered until they finish or
         REQUEST_TIMEOUT (10 s) ends them (claim P3). webserver4b fixes it.
Try it:  cd services/part4 && python webserver4a.py flaskapp:app
         (the applications and wsgicore live in ../part2), then
         curl http://localhost:8888/hello, and `ps -o pid,ppid,args`: the
         same two worker PIDs answer every request; kill -9 one of them and
         a new one takes its place.
         docker compose up part4-prefork-flask; curl http://127.0.0.1:8402/hello
Env:     PORT=8888 (0 picks a free port)  HOST='' (all interfaces)
         WORKERS=2  REQUEST_QUEUE_SIZE=1024  REQUEST_TIMEOUT=10 (seconds)
         ACCESS_LOG_BUFFER=16384 bytes of access lines per write, written
         at once whenever no client waits (0: one write per line)
         WSGI_VALIDATE=1 wraps the application in wsgiref.validate.validator
"""

import os
import select
import signal
import sys
import time

import arbiter  # the pre-fork arbiter; it puts ../part2 (wsgicore) on sys.path


class _Stop(Exception):
    """Raised by a worker's SIGTERM handler while it waits in accept()."""


class WSGIServer(arbiter.PreforkServer):
    prog = os.path.basename(__file__)
    _busy = False

    def become_worker(self):
        signal.signal(signal.SIGTERM, self._worker_stop)

    def serve_worker(self):
        """Accept a connection, serve it, repeat: the same worker for ever."""
        listen_socket = self.listen_socket
        handle = self.handle_one_request
        try:
            while not self._stopping:
                try:
                    client_connection, client_address = listen_socket.accept()
                except BlockingIOError:  # no one waiting: the moment to write the log
                    self.log.flush()
                    select.select([listen_socket], [], [])
                    continue
                except OSError as err:
                    time.sleep(self.accept_failed(err))  # out of descriptors: back off
                    continue
                self.backoff = arbiter.BACKOFF_FIRST
                self._busy = True
                handle(client_connection, client_address)  # never raises
                self._busy = False
        except _Stop:  # SIGTERM while idle
            pass

    def _worker_stop(self, signum, frame):
        """SIGTERM in a worker: finish the request in hand, then exit."""
        self._stopping = True
        if not self._busy:
            raise _Stop  # out of accept(); PEP 475 would restart it otherwise


if __name__ == "__main__":
    sys.exit(arbiter.main(WSGIServer, sys.argv[1:], (), "workers"))
