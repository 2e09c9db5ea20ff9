"""Parts 1 and 2 of the article: claims C1-C8, against the compose services."""

import pytest
from instrument import servers, wire

ARTICLE_BODIES = {
    "wsgi": b"Hello world from a simple WSGI application!",
    "flask": b"Hello world from Flask!",
    "pyramid": b"Hello world from Pyramid!",
    "django": b"Hello world from Django!",
}



def article_body(name: str) -> bytes:
    """What the article says each of its servers answers: the app's greeting
    for the WSGI servers (part2-APP, part3-wsgi-APP, gunicorn-APP), else
    Hello, World!"""
    if name.startswith(("part2-", "part3-wsgi-", "gunicorn-")):
        return ARTICLE_BODIES[name.rsplit("-", 1)[1]]
    return b"Hello, World!"


# every one of the article's servers in compose.yaml, and its body
HELLO = {s.name: article_body(s.name) for s in servers.article()}

# asking these once changes them (a sleep, a leaked descriptor, a crash):
# put them back afterwards
DISTURBED_BY_ONE_REQUEST = {"part3-iterative-sleep", "part3-sigchld"}


@pytest.mark.parametrize("name", sorted(HELLO))
def test_every_service_answers_hello_with_the_article_body(up, name):
    svc = up(name)
    try:
        got = wire.exchange(name, data=wire.get("/hello", name), timeout=10,
                            until=HELLO[name]).data
        assert got.startswith(b"HTTP/1."), got[:200]
        assert b" 200 " in got.split(b"\r\n", 1)[0] or got.split(b"\n", 1)[0].endswith(b"200 OK")
        assert HELLO[name] in got
    finally:
        if name in DISTURBED_BY_ONE_REQUEST:
            svc.restart()


def test_c1_curl_gets_hello_world_from_webserver1(up, curl):
    up("part1")
    result = curl("http://part1:8888/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello, World!"


def test_c1_a_browser_style_request_gets_hello_world(up):
    up("part1")
    browser = (b"GET /hello HTTP/1.1\r\nHost: part1:8888\r\n"
               b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
               b"Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n"
               b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
               b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n")
    reply = wire.exchange("part1", data=browser, timeout=5)
    assert reply.eof, reply.summary()
    head, _, body = reply.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body.strip() == b"Hello, World!"


@pytest.mark.parametrize("garbage", [
    b"this is not HTTP at all\r\n\r\n",
    b"\x00\x01\x02 binary junk\r\n\r\n",
    b"BREW /coffee HTCPCP/1.0\r\n\r\n",
])
def test_c2_webserver1_ignores_the_request_line(up, garbage):
    up("part1")
    reply = wire.exchange("part1", data=garbage, timeout=5).data
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert reply.rstrip().endswith(b"Hello, World!")


def test_c3_webserver2_without_an_argument_says_what_it_needs(up):
    svc = up("part2-wsgi")
    code, out = svc.query(["python", "webserver2.py"], prints_on_failure=True)
    assert code != 0
    assert "Provide a WSGI application object as module:callable" in out


@pytest.mark.parametrize("argument, words", [
    ("nosuchmodule:app", "nosuchmodule"),
    ("wsgiapp", "module:callable"),
    ("wsgiapp:missing", "missing"),
])
def test_c3_webserver2_bad_argument_is_one_clear_line_and_exit_2(up, argument, words):
    svc = up("part2-wsgi")
    code, out = svc.query(["env", "PORT=8899", "python", "webserver2.py", argument],
                          prints_on_failure=True)
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert words in lines[0]
    assert "Traceback" not in out


def test_c4_pyramid(up, curl):
    _curl_body_is(up, curl, "part2-pyramid", "Hello world from Pyramid!")


def test_c5_flask(up, curl):
    _curl_body_is(up, curl, "part2-flask", "Hello world from Flask!")


def test_c6_django(up, curl):
    _curl_body_is(up, curl, "part2-django", "Hello world from Django!")


def test_c7_bare_wsgi_app(up, curl):
    _curl_body_is(up, curl, "part2-wsgi", "Hello world from a simple WSGI application!")


def _curl_body_is(up, curl, name, body):
    up(name)
    result = curl(f"http://{name}:8888/hello")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == body


@pytest.mark.parametrize("app", sorted(ARTICLE_BODIES))
def test_c8_response_headers_app_sets_two_server_adds_date_and_server(up, curl, app):
    name = f"part2-{app}"
    up(name)
    result = curl("-D", "-", "-o", "/dev/null", f"http://{name}:8888/hello")
    assert result.returncode == 0, result.stderr
    status, *lines = result.stdout.strip().splitlines()
    assert status.startswith("HTTP/1.1 200")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    for field in ("content-type", "content-length", "date", "server"):
        assert field in headers, f"{field} missing from {headers}"
    assert int(headers["content-length"]) == len(ARTICLE_BODIES[app]) + 1  # the body ends in \n
    # Date is a real IMF-fixdate, e.g. "Fri, 27 Nov 2026 13:41:24 GMT"
    from email.utils import parsedate_to_datetime

    assert headers["date"].endswith(" GMT")
    assert parsedate_to_datetime(headers["date"]).year >= 2024
    assert "WSGIServer" in headers["server"]
