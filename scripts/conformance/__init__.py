"""conformance: our WSGI servers, gunicorn and the peers against one HTTP/1.1 request set.

    python -m conformance                 # inside the compose network (the tests image:
                                          # `docker compose run --rm tests conformance`)
    python -m conformance --local         # from the host, through the published ports
    python -m conformance --only part2-wsgi,gunicorn-wsgi

cases.py holds the set (written from RFC 9110 and RFC 9112); run.py sends
each case to every server that serves wsgiapp (the `*-wsgi` services of
compose.yaml: webserver2, webserver3h, the part 4 servers, gunicorn,
waitress, cheroot, granian, uWSGI) side by side, judges the answers and
writes reports/conformance.md and conformance.json (a verdict per case:
pass, warn for a wrong SHOULD or MAY, fail for a wrong MUST). build.py holds
Case and the request builders, smuggling.py the request-smuggling category.
"""
