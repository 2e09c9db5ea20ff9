"""grade: which lessons of the article has a server learned?

    docker compose run --rm tests grade part3-waitpid
    docker compose run --rm tests grade yours --only concurrent,eof,zombie
    docker compose run --rm tests grade --list

It runs copies of the target's image through the engine (instrument.copies),
a fresh one per stage, and puts each through one situation of the article
(stages.py): a silent client, a burst of 128, 300 held connections under
nofile 256, SIGTERM with a request in flight. It reads children, zombies
and descriptors from /proc in an observer sharing the copy's PID namespace,
so the target's image needs nothing installed. calibration.py holds the
verdicts the article's own servers must get.
"""
