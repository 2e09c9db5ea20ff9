"""What is compared with what, and the goals (ratios of req/s in the same
run: reported, never asserted by a timed test; the bar, never lowered here)."""

from __future__ import annotations

from dataclasses import dataclass

SLOW_CLIENTS = 10


@dataclass(frozen=True)
class Comparison:
    key: str
    ours: str  # service
    theirs: str  # service (the same one with slow clients: its own rate without them)
    load: str  # "close" or "keep-alive"
    goal: float  # ours/theirs req/s must be at least this
    what: str
    slow_clients: int = 0  # held open against `ours` while it is measured


# `bench` (no --peers): ours against gunicorn, pair by pair (issue 15's six).
COMPARISONS = [
    Comparison("4a-bare", "part4-prefork-wsgi", "gunicorn-wsgi", "close", 2.0,
               "webserver4a vs gunicorn sync, both 2 workers, bare app"),
    Comparison("4a-flask", "part4-prefork-flask", "gunicorn-flask", "close", 1.5,
               "webserver4a vs gunicorn sync, Flask"),
    Comparison("4b-bare", "part4-evloop-wsgi", "gunicorn-gthread-wsgi", "keep-alive", 2.0,
               "webserver4b vs gunicorn gthread, both 2 workers, bare app"),
    Comparison("4b-flask", "part4-evloop-flask", "gunicorn-gthread-flask", "keep-alive", 1.5,
               "webserver4b vs gunicorn gthread, Flask"),
    Comparison("3h-bare", "part3-wsgi-wsgi", "gunicorn-wsgi", "close", 0.3,
               "webserver3h (fork per connection) vs gunicorn sync, bare app"),
    Comparison("4b-slow", "part4-evloop-wsgi", "part4-evloop-wsgi", "keep-alive", 0.8,
               f"webserver4b with {SLOW_CLIENTS} slow clients held open vs without",
               slow_clients=SLOW_CLIENTS),
]

# `bench --peers`: every server x {close, keep-alive} x {bare, Flask}.
# (label, service stem): the services are STEM-wsgi and STEM-flask.
PEER_SERVERS = [
    ("webserver3h", "part3-wsgi"), ("webserver4a", "part4-prefork"),
    ("webserver4b", "part4-evloop"), ("gunicorn 27 sync", "gunicorn"),
    ("gunicorn 27 gthread", "gunicorn-gthread"), ("granian", "granian"), ("uWSGI", "uwsgi"),
    ("waitress", "waitress"), ("cheroot", "cheroot"),
]
PEER_APPS = ("wsgi", "flask")
PEER_LOADS = ("close", "keep-alive")
FLASK_SHARE = 0.75  # with Flask, each goal at 75% of its bare value


@dataclass(frozen=True)
class PeerGoal:
    ours: str    # service stem
    theirs: str  # service stem
    load: str
    goal: float  # bare; Flask: goal * FLASK_SHARE
    why: str


# Issue 17's goals: 4b with keep-alive level with Rust and twice C; 4a per
# connection level with both; the guards against the pure-Python servers.
PEER_GOALS = [
    PeerGoal("part4-evloop", "granian", "keep-alive", 1.0, "pure Python level with Rust"),
    PeerGoal("part4-evloop", "uwsgi", "keep-alive", 2.0, "twice C"),
    PeerGoal("part4-evloop", "gunicorn-gthread", "keep-alive", 3.0, "guard"),
    PeerGoal("part4-evloop", "waitress", "keep-alive", 5.0, "guard"),
    PeerGoal("part4-evloop", "cheroot", "keep-alive", 5.0, "guard"),
    PeerGoal("part4-prefork", "uwsgi", "close", 1.0, "level with C per connection"),
    PeerGoal("part4-prefork", "granian", "close", 1.0, "level with Rust per connection"),
    PeerGoal("part4-prefork", "gunicorn", "close", 2.5, "guard"),
]
# reported with no goal: webserver3h forks per connection by design (its
# old 0.3x goal is retired); the table gives its ratio and its fork cost
PEER_REPORTED = [PeerGoal("part3-wsgi", "gunicorn", "close", 0.0, "forks per connection")]


def peer_services(stems=None) -> list[str]:
    stems = stems or [stem for _, stem in PEER_SERVERS]
    return [f"{stem}-{app}" for stem in stems for app in PEER_APPS]
