"""wsgiapp.py: the article's bare WSGI application, with two extra routes.

    GET  /hello (and every other path)  Hello world from a simple WSGI application!
    GET  /environ   application/json: every environ key the server passed,
                    as {"KEY": {"type": "str", "value": "..."}} (str values as
                    they are, the others as repr()): claim C9 made visible.
                    Any method, and any path below /environ/, does the same;
                    wsgi.input's entry also has "read": the body the
                    application read from it (latin-1), so the HTTP
                    conformance run (scripts/conformance) sees both.
    POST /echo      application/json: {"length": N, "sha256": "..."} of the
                    request body, read in 64 KiB pieces from wsgi.input

Run it:  python webserver2.py wsgiapp:app
"""

import hashlib
import json


def app(environ, start_response):
    """A barebones WSGI application.

    This is a starting point for your own Web framework :)
    """
    path = environ.get("PATH_INFO", "")
    if path == "/environ" or path.startswith("/environ/"):
        body = environ["wsgi.input"].read(1024 * 1024)
        data = {key: {"type": type(value).__name__,
                      "value": value if type(value) is str else repr(value)}
                for key, value in environ.items()}
        data["wsgi.input"]["read"] = body.decode("latin-1")
        return _json(start_response, data)
    if path == "/echo" and environ["REQUEST_METHOD"] == "POST":
        digest, length = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while data := stream.read(65536):
            digest.update(data)
            length += len(data)
        return _json(start_response, {"length": length, "sha256": digest.hexdigest()})
    body = b"Hello world from a simple WSGI application!\n"
    status = "200 OK"
    # The article sets Content-Type only; with Content-Length as well the
    # application sets both headers that claim C8 says it sets.
    response_headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    start_response(status, response_headers)
    return [body]


def _json(start_response, data):
    body = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
