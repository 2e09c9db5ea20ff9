"""wsgicore.server: the listen socket and what every request's environ shares."""

import socket
import sys

from .connection import WSGIConnection
from .log import AccessLog
from .response import SERVER_SOFTWARE


class BaseWSGIServer:
    """Listen socket and WSGI plumbing; the lesson servers add serve_forever().

    access_log: the AccessLog the connections write to (one write a line
    unless the server was given a buffered one).
    """

    request_queue_size = 5
    multiprocess = False

    def __init__(self, server_address, request_queue_size=None, request_timeout=10.0,
                 access_log=None):
        host = server_address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listen_socket = listen_socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Allow to reuse the same address right after a restart
            listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listen_socket.bind(server_address)
            listen_socket.listen(request_queue_size or self.request_queue_size)
        except BaseException:
            listen_socket.close()
            raise
        host, port = listen_socket.getsockname()[:2]
        # The article calls socket.getfqdn(host), which may wait for DNS.
        self.server_name = socket.gethostname() if host in ("0.0.0.0", "::") else host
        self.server_port = port
        self.request_timeout = request_timeout
        self.log = access_log if access_log is not None else AccessLog()
        self.application = None
        self.base_environ = {  # the same for every request: copied per request
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SCRIPT_NAME": "",
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(port),
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": self.multiprocess,
            "wsgi.run_once": False,
        }

    def set_app(self, application):
        self.application = application

    def handle_one_request(self, client_connection, client_address):
        """Serve one request on the connection, then close it. Never raises."""
        WSGIConnection(self, client_connection, client_address).run(self.application)

    def server_close(self):
        self.listen_socket.close()
