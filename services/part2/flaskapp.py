"""flaskapp.py: the article's Flask application, with a few more routes.

    GET  /hello      Hello world from Flask!   (text/plain; POST gives 405)
    GET|POST /api/echo   JSON: {"method", "args" (query, lists), "json" (the body, or null)}
    POST /form       JSON: {"fields": N, "bytes": total length of names and values}
                     for an urlencoded form (works past 64 KiB: Flask's limit is 500 kB)

Run it:  python webserver2.py flaskapp:app
"""

from flask import Flask, Response, jsonify, request

flask_app = Flask("flaskapp")


@flask_app.route("/hello", methods=["GET"])
def hello_world():
    return Response("Hello world from Flask!\n", mimetype="text/plain")


@flask_app.route("/api/echo", methods=["GET", "POST"])
def api_echo():
    return jsonify(method=request.method,
                   args=request.args.to_dict(flat=False),
                   json=request.get_json(silent=True))


@flask_app.route("/form", methods=["POST"])
def form():
    fields = list(request.form.items(multi=True))
    return jsonify(fields=len(fields), bytes=sum(len(k) + len(v) for k, v in fields))


app = flask_app.wsgi_app
