"""webserver2.py: the article's WSGI server, iterative: one connection at a time.

Shows:   any WSGI framework runs under the same server without a change:
         python webserver2.py pyramidapp:app   (or flaskapp:app, djangoapp:app,
         wsgiapp:app), then curl -v http://localhost:8888/hello
Bug:     none on purpose. The article's version reads one recv(1024) and
         trusts it; the HTTP and PEP 3333 work is done right in wsgicore
         (read it for what it checks and what it does not do), so this file
         keeps the article's shape: make_server, set_app, serve_forever,
         handle_one_request; get_environ, start_response and finish_response
         live on wsgicore.WSGIConnection, one per request.
Try it:  docker compose up part2-flask, then curl -v http://127.0.0.1:8202/hello
Env:     PORT=8888 (0 picks a free port)  HOST='' (all interfaces)
         REQUEST_QUEUE_SIZE=5  REQUEST_TIMEOUT=10 (seconds for a request head)
         WSGI_VALIDATE=1 wraps the application in wsgiref.validate.validator
"""

import errno
import os
import select
import signal
import sys
import time

import wsgicore

PROG = os.path.basename(__file__)


class WSGIServer(wsgicore.BaseWSGIServer):
    request_queue_size = 5
    multiprocess = False  # one process, one request at a time

    def serve_forever(self):
        """Accept, serve, repeat. SIGTERM (docker stop) only sets a flag: the
        request in hand is always finished, then the loop ends and the
        server exits 0. signal.set_wakeup_fd() writes a byte into a pipe for
        the signal, so the wait for the next client (select on the listen
        socket and that pipe) ends at once, as in webserver3h."""
        self._stopping = False
        wakeup_r, wakeup_w = os.pipe()
        for fd in (wakeup_r, wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._request_stop)
        listen_socket = self.listen_socket
        listen_socket.setblocking(False)
        try:
            while not self._stopping:
                ready, _, _ = select.select([listen_socket, wakeup_r], [], [])
                if wakeup_r in ready:
                    os.read(wakeup_r, 512)
                    continue  # the loop condition sees a SIGTERM
                try:
                    # New client connection
                    client_connection, client_address = listen_socket.accept()
                except BlockingIOError:  # the client went away meanwhile
                    continue
                except OSError as err:
                    if (err.errno not in wsgicore.RESOURCE_ERRNOS
                            and err.errno != errno.ECONNABORTED):
                        raise
                    wsgicore.log(f"{PROG}: accept() failed: {err}; trying again in 0.1 s")
                    time.sleep(0.1)
                    continue
                # Handle one request and close the client connection. Then
                # loop over to wait for another client connection
                self.handle_one_request(client_connection, client_address)
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wakeup_r)
            os.close(wakeup_w)

    def _request_stop(self, signum, frame):
        self._stopping = True  # the wakeup pipe gets the loop out of select()


def make_server(server_address, application, request_queue_size=None, request_timeout=10.0):
    server = WSGIServer(server_address, request_queue_size, request_timeout)
    server.set_app(application)
    return server


def main(argv):
    httpd = wsgicore.server_from_command_line(PROG, argv, make_server,
                                              WSGIServer.request_queue_size)
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} ...\n", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
