"""instrument: the one layer through which the tests, the lab, the bench and
the grader look at the stack.

- waiting   wait_for (a deadline, never a fixed sleep), TimedOut, poll
- servers   the server services, read from compose.yaml (the one list)
- engine    Engine, Service (a compose service's container: state, exec,
            look, logs since start, restart/ensure_up by LISTEN in
            /proc/net/tcp), Twin (the same server again, on another port)
- procs     parsing ps, /proc/net/tcp, limits, fd lists; Proc; this
            machine's /proc (local_table)
- wire      the one raw HTTP client: connect, exchange, parse_response, parallel, burst
- clients   slow_clients, hold_silent, answer_rate, open_many (on wire)
- client3   run / start / stop the article's load client
- local     LocalServer: a lesson server as a subprocess on 127.0.0.1

Only engine needs the docker SDK (imported when an Engine is made) and only
servers needs PyYAML; the rest is the standard library.
"""
