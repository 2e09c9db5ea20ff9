"""webserver2.py: the article's WSGI server, iterative: one connection at a time.

Shows:   any WSGI framework runs under the same server without a change:
         python webserver2.py pyramidapp:app   (or flaskapp:app, djangoapp:app,
         wsgiapp:app), then curl -v http://localhost:8888/hello
Bug:     none on purpose. The article's version reads one recv(1024) and
         trusts it; the HTTP and PEP 3333 work is done right in wsgicore.py
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
import signal
import sys
import time

import wsgicore

PROG = os.path.basename(__file__)


class WSGIServer(wsgicore.BaseWSGIServer):
    request_queue_size = 5
    multiprocess = False  # one process, one request at a time

    def serve_forever(self):
        self._busy = self._stopping = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        listen_socket = self.listen_socket
        while not self._stopping:
            try:
                # New client connection
                client_connection, client_address = listen_socket.accept()
            except OSError as err:
                if err.errno not in wsgicore.RESOURCE_ERRNOS and err.errno != errno.ECONNABORTED:
                    raise
                wsgicore.log(f"{PROG}: accept() failed: {err}; trying again in 0.1 s")
                time.sleep(0.1)
                continue
            self._busy = True
            # Handle one request and close the client connection. Then
            # loop over to wait for another client connection
            self.handle_one_request(client_connection, client_address)
            self._busy = False

    def _on_sigterm(self, signum, frame):
        """docker stop: finish the request in hand, then exit 0."""
        self._stopping = True
        if not self._busy:
            raise SystemExit(0)


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
