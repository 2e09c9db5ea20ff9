"""djangoapp.py: the article's bridge from the server to the Django project.

It puts the `helloworld` project (made by `django-admin startproject
helloworld`, trimmed) on sys.path and exposes its WSGI application. The
article inserts './helloworld', which works only from this directory; the
path here comes from __file__, so any working directory will do.

    GET  /hello    Hello world from Django!   (text/plain)
    GET  /form     an HTML form with a CSRF token; sets the csrftoken cookie
    POST /form     with token and cookie: 200, JSON of the posted fields;
                   without them: 403 (Django's CSRF protection)
    POST /upload   JSON: {"fields": N, "bytes": ...} for a big urlencoded body
                   (DATA_UPLOAD_MAX_MEMORY_SIZE is raised to 10 MiB)

Run it:  python webserver2.py djangoapp:app
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "helloworld"))

from helloworld import wsgi  # noqa: E402  (needs the path above)

app = wsgi.application
