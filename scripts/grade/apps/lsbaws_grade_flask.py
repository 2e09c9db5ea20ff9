"""The grader's Flask application (runs inside the graded server)."""

from flask import Flask, Response

flask_app = Flask("lsbaws_grade_flask")


@flask_app.route("/hello")
def hello():
    return Response("Hello from the grader's Flask app!\n", mimetype="text/plain")


app = flask_app.wsgi_app
