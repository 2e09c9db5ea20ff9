"""The grader's bare WSGI application (it runs inside the graded server).

    GET  /hello              text/plain greeting (the wsgi-apps stage)
    GET  /environ            JSON: {"problems": [...], "keys": {KEY: type}}: PEP 3333 checked here
    POST /echo               JSON: {"length": N, "sha256": ...} of wsgi.input, read to CONTENT_LENGTH
    GET  /slow?seconds=S     sleeps S seconds (at most 5), then answers (the sigterm stage)
    ANY  /parity/...         JSON of what the request looked like to the app (the parity stage)
    GET  /status/NNN         that status, a short text body
    GET  /type/MAJOR/MINOR   a body of that content type
    GET  /stream             three pieces, no Content-Length: the server frames it (the framing stage)

Standard library only: the graded image needs nothing but a WSGI server.
"""

import hashlib
import json
import time

GREETING = b"Hello from the grader's bare WSGI app!\n"
STATUS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
          400: "Bad Request", 403: "Forbidden", 404: "Not Found", 418: "I'm a teapot",
          500: "Internal Server Error", 503: "Service Unavailable"}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    if path == "/environ":
        return _json(start_response, {"problems": environ_problems(environ),
                                      "keys": {k: type(v).__name__ for k, v in environ.items()}})
    if path == "/echo":
        data = _read_body(environ)
        return _json(start_response, {"length": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()})
    if path == "/slow":
        seconds = min(5.0, float(_query(environ).get("seconds", "1") or 1))
        time.sleep(seconds)
        return _text(start_response, "200 OK", f"slept {seconds:g} s\n".encode())
    if path.startswith("/parity"):
        data = _read_body(environ)
        return _json(start_response, {
            "method": method, "path": path, "query": environ.get("QUERY_STRING", ""),
            "script_name": environ.get("SCRIPT_NAME", ""),
            "content_type": environ.get("CONTENT_TYPE", ""),
            "body_length": len(data), "body_sha256": hashlib.sha256(data).hexdigest(),
            "x_grade": environ.get("HTTP_X_GRADE", ""),
            "accept": environ.get("HTTP_ACCEPT", ""),
        })
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1]) if path.rsplit("/", 1)[1].isdigit() else 400
        code = code if code in STATUS else 400
        body = b"" if code == 204 else f"status {code}\n".encode()
        return _text(start_response, f"{code} {STATUS[code]}", body)
    if path.startswith("/type/"):
        ctype = path[len("/type/"):] or "text/plain"
        return _text(start_response, "200 OK", f"a body of type {ctype}\n".encode(), ctype)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"piece 1\n", b"piece 2\n", b"piece 3\n"])
    if method not in ("GET", "HEAD", "POST"):
        return _text(start_response, "405 Method Not Allowed", b"method not allowed\n")
    return _text(start_response, "200 OK", GREETING)


def _query(environ):
    pairs = (p.partition("=") for p in environ.get("QUERY_STRING", "").split("&") if p)
    return {k: v for k, _, v in pairs}


def _read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream, chunks, left = environ["wsgi.input"], [], length
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _text(start_response, status, body, ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, data):
    body = json.dumps(data, sort_keys=True).encode() + b"\n"
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


REQUIRED_STR = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL")


def environ_problems(environ):
    """What PEP 3333 asks of the environ that this one does not give."""
    problems = []
    for key in REQUIRED_STR:
        if key not in environ:
            problems.append(f"{key} missing")
        elif type(environ[key]) is not str:
            problems.append(f"{key} is {type(environ[key]).__name__}, not str")
    for key, value in environ.items():
        if type(key) is not str:
            problems.append(f"key {key!r} is not a str")
        elif (key.isupper() or key.startswith("HTTP_")) and type(value) is not str:
            problems.append(f"{key} is {type(value).__name__}, not str")
    if environ.get("wsgi.version") != (1, 0):
        problems.append(f"wsgi.version is {environ.get('wsgi.version')!r}, not (1, 0)")
    if environ.get("wsgi.url_scheme") not in ("http", "https"):
        problems.append(f"wsgi.url_scheme is {environ.get('wsgi.url_scheme')!r}")
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        if type(environ.get(key)) is not bool:
            problems.append(f"{key} is {type(environ.get(key)).__name__}, not bool")
    stream = environ.get("wsgi.input")
    for name in ("read", "readline", "readlines", "__iter__"):
        if not hasattr(stream, name):
            problems.append(f"wsgi.input has no {name}()")
    errors = environ.get("wsgi.errors")
    for name in ("write", "writelines", "flush"):
        if not hasattr(errors, name):
            problems.append(f"wsgi.errors has no {name}()")
    expect = {"REQUEST_METHOD": "GET", "PATH_INFO": "/environ", "QUERY_STRING": "probe=1&x=%41",
              "SERVER_PORT": "8888", "HTTP_X_GRADE": "42", "HTTP_HOST": "grade.test:8888",
              "SCRIPT_NAME": ""}
    for key, value in expect.items():
        if key in environ and environ[key] != value:
            problems.append(f"{key} is {environ[key]!r}, expected {value!r}")
        elif key not in environ and key.startswith("HTTP_"):
            problems.append(f"{key} missing (the request's header is not in the environ)")
    if not str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1."):
        problems.append(f"SERVER_PROTOCOL is {environ.get('SERVER_PROTOCOL')!r}")
    if "CONTENT_LENGTH" in environ and environ["CONTENT_LENGTH"] not in ("", "0"):
        problems.append(f"CONTENT_LENGTH is {environ['CONTENT_LENGTH']!r} for a GET without body")
    return problems
