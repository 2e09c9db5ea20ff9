"""webserver.py: your server. It starts as the article's part 2: an iterative
WSGI server, one connection at a time, in about a hundred lines.

Grade it:  docker compose run --rm tests grade yours
Run it:    docker compose up --build yours   then  curl http://127.0.0.1:8500/hello
           (or here: python webserver.py wsgiapp:app, with the app's module on PYTHONPATH)

The grader starts it red on purpose: it serves one client at a time
(`concurrent`, `slow-clients`, `burst`), hands the app only the part of the
body that came with the head (`body`), does not decode PATH_INFO (`parity`),
answers whatever it is sent (`bad-input`) and dies of SIGTERM (`sigterm`). Turn the stages green one lesson at a time; the files the
grader names in each failure show one way.
"""

import email.utils
import io
import socket
import sys


class WSGIServer:
    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    request_queue_size = 5

    def __init__(self, server_address):
        self.listen_socket = listen_socket = socket.socket(self.address_family, self.socket_type)
        listen_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listen_socket.bind(server_address)
        listen_socket.listen(self.request_queue_size)
        host, port = listen_socket.getsockname()[:2]
        self.server_name = socket.getfqdn(host)
        self.server_port = port
        self.application = None

    def set_app(self, application):
        self.application = application

    def serve_forever(self):
        while True:
            self.client_connection, client_address = self.listen_socket.accept()
            try:
                self.handle_one_request()
            except OSError as error:  # the client went away: serve the next one
                print(f"{client_address}: {error}", file=sys.stderr, flush=True)
            finally:
                self.client_connection.close()

    def handle_one_request(self):
        # Read until the empty line that ends the head. Whatever came with it
        # is the start of the body, and it is all the app will get.
        self.request_data = b""
        while b"\r\n\r\n" not in self.request_data:
            chunk = self.client_connection.recv(1024)
            if not chunk:
                return
            self.request_data += chunk
        head, _, self.body_start = self.request_data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        print(lines[0], flush=True)
        parts = lines[0].split()
        if len(parts) != 3:
            self.client_connection.sendall(b"HTTP/1.1 400 Bad Request\r\n"
                                           b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.request_method, target, self.request_version = parts
        self.path, _, self.query = target.partition("?")
        self.headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        result = self.application(self.get_environ(), self.start_response)
        try:
            self.finish_response(result)
        finally:
            if hasattr(result, "close"):
                result.close()

    def get_environ(self):
        env = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(self.body_start),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": self.request_method,
            "SCRIPT_NAME": "",
            "PATH_INFO": self.path,
            "QUERY_STRING": self.query,
            "SERVER_NAME": self.server_name,
            "SERVER_PORT": str(self.server_port),
            "SERVER_PROTOCOL": self.request_version,
        }
        for name, value in self.headers:
            key = name.strip().upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            env[key] = value.strip()
        return env

    def start_response(self, status, response_headers, exc_info=None):
        server_headers = [("Date", email.utils.formatdate(usegmt=True)),
                          ("Server", "yours 0.1"), ("Connection", "close")]
        self.headers_set = [status, response_headers + server_headers]
        return lambda data: None  # write(): not supported here

    def finish_response(self, result):
        body = b"".join(result)  # the app may call start_response as it yields
        status, response_headers = self.headers_set
        response = f"HTTP/1.1 {status}\r\n"
        for header in response_headers:
            response += "{}: {}\r\n".format(*header)
        response += "\r\n"
        self.client_connection.sendall(response.encode("latin-1") + body)


def make_server(server_address, application):
    server = WSGIServer(server_address)
    server.set_app(application)
    return server


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("Provide a WSGI application object as module:callable")
    module, application = sys.argv[1].split(":")
    application = getattr(__import__(module), application)
    httpd = make_server(("", 8888), application)
    print(f"WSGIServer: Serving HTTP on port {httpd.server_port} ...", flush=True)
    httpd.serve_forever()
