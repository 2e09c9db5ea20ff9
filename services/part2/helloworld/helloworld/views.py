"""The views of the helloworld project."""

from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe


@require_safe
def hello(request):
    return HttpResponse("Hello world from Django!\n", content_type="text/plain")


FORM_PAGE = """<!doctype html>
<title>Django form</title>
<form method="post" action="/form">
  <input type="hidden" name="csrfmiddlewaretoken" value="{token}">
  <input name="name" value="{name}">
  <button>Send</button>
</form>
"""


@require_http_methods(["GET", "HEAD", "POST"])
def form(request):
    """GET: a form with a CSRF token (and the csrftoken cookie). POST: echo it.

    CsrfViewMiddleware has already checked the POST: without the token and
    the cookie, Django answers 403 before this view runs.
    """
    if request.method == "POST":
        posted = {key: value for key, value in request.POST.items()
                  if key != "csrfmiddlewaretoken"}
        return JsonResponse({"posted": posted})
    token = get_token(request)  # also makes the middleware set the cookie
    return HttpResponse(FORM_PAGE.format(token=escape(token), name="world"))


@csrf_exempt
@require_POST
def upload(request):
    """A large urlencoded body: how many fields, how many bytes."""
    fields = list(request.POST.items())
    return JsonResponse({"fields": len(fields),
                         "bytes": sum(len(k) + len(v) for k, v in fields)})
