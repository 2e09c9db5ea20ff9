"""The grader's Django application, settings and URLs in one module."""

from django.conf import settings

if not settings.configured:
    settings.configure(DEBUG=False, SECRET_KEY="lsbaws-grade-not-secret", ALLOWED_HOSTS=["*"],
                       ROOT_URLCONF=__name__, MIDDLEWARE=[], INSTALLED_APPS=[],
                       USE_TZ=True, DATABASES={})

import django  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return HttpResponse("Hello from the grader's Django app!\n", content_type="text/plain")


urlpatterns = [path("hello", hello)]

django.setup()
app = get_wsgi_application()
