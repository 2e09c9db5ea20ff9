"""The grader's Pyramid application (runs inside the graded server)."""

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    return Response("Hello from the grader's Pyramid app!\n", content_type="text/plain")


with Configurator() as config:
    config.add_route("hello", "/hello")
    config.add_view(hello, route_name="hello")
    app = config.make_wsgi_app()
