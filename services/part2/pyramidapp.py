"""pyramidapp.py: the article's Pyramid application, with a few more routes.

    GET  /hello          Hello world from Pyramid!   (text/plain)
    GET  /greet/{name}   Hello, {name}!               (a route with a matchdict)
    POST /form           JSON: {"fields": N, "bytes": total length of names and values}

Run it:  python webserver2.py pyramidapp:app
"""

from pyramid.config import Configurator
from pyramid.response import Response


def hello_world(request):
    return Response("Hello world from Pyramid!\n", content_type="text/plain")


def greet(request):
    return Response(f"Hello, {request.matchdict['name']}!\n", content_type="text/plain")


def form(request):
    fields = list(request.POST.items())
    return {"fields": len(fields), "bytes": sum(len(k) + len(v) for k, v in fields)}


config = Configurator()
config.add_route("hello", "/hello")
config.add_view(hello_world, route_name="hello")
config.add_route("greet", "/greet/{name}")
config.add_view(greet, route_name="greet")
config.add_route("form", "/form", request_method="POST")
config.add_view(form, route_name="form", renderer="json")
app = config.make_wsgi_app()
