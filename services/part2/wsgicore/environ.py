"""wsgicore.environ: a parsed Request -> the WSGI environ (PEP 3333).

No I/O: wsgi.input is whatever stream the caller hands in.
"""


def request_environ(request, base_environ, wsgi_input, content_length, client_address):
    """The request's part of the environ (PEP 3333), on a copy of the
    server's base_environ: the CGI keys, HTTP_* for each field, wsgi.input.

    CONTENT_LENGTH is the body's length whenever the request has a body
    (a chunked one is decoded by then). For a chunked request
    HTTP_TRANSFER_ENCODING stays, as sent, and wsgi.input_terminated says
    that wsgi.input ends where the body does: without it Werkzeug ignores
    CONTENT_LENGTH when the field says chunked, and a Flask app reads an
    empty body. It is left out otherwise: an application that sees it may
    call read() without a size, which PEP 3333 (and wsgiref's validator)
    does not allow. A field whose name holds '_' is left out: X_Forwarded
    would pose as X-Forwarded. Repeated fields are joined with ", " (a
    Cookie with "; "); an absolute-form target's authority wins over Host.
    """
    environ = base_environ.copy()
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = request.path
    environ["QUERY_STRING"] = request.query
    environ["SERVER_PROTOCOL"] = request.version
    environ["REMOTE_ADDR"] = str(client_address[0])
    environ["REMOTE_PORT"] = str(client_address[1])
    environ["wsgi.input"] = wsgi_input
    if request.chunked:
        environ["wsgi.input_terminated"] = True
    if request.content_length is not None or request.chunked:
        environ["CONTENT_LENGTH"] = str(content_length)
    for name, value in request.headers:
        if "_" in name:
            continue  # X_Forwarded would pose as X-Forwarded: leave it out
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":  # several are refused unless all the same
            environ["CONTENT_TYPE"] = value
            continue
        if key == "CONTENT_LENGTH":
            continue  # set above, from the body
        key = "HTTP_" + key
        if key in environ:
            joiner = "; " if key == "HTTP_COOKIE" else ", "
            environ[key] = environ[key] + joiner + value
        else:
            environ[key] = value
    if request.authority is not None:  # absolute-form target wins over Host
        environ["HTTP_HOST"] = request.authority
    return environ
