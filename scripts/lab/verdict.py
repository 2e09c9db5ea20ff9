"""verdict: does what the lab saw agree with the article?

Each experiment names a rule (experiments.py, `rule`); the runner hands the
rule an observation (a plain dict of numbers and strings). A rule returns
whether it agrees and one plain-language sentence with the numbers, for
example

  part3-eintr after 128 concurrent clients: 89 zombie children (<defunct>);
  the server survived. The article expects zombies to come back because
  SIGCHLD signals are not queued: one handler call reaps one child.

Pure functions of their input: no engine, no rich. An observation with an
"error" key could not be measured, and never agrees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lab.experiments import BY_ID, Experiment


@dataclass(frozen=True)
class Verdict:
    experiment: str
    agrees: bool
    observed: str
    expects: str

    @property
    def label(self) -> str:
        return "agrees with the article" if self.agrees else "does NOT agree with the article"

    @property
    def sentence(self) -> str:
        return f"{self.observed} The article expects {self.expects}"


def _seconds(values) -> str:
    return ", ".join(f"{v:.2f} s" for v in values)


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-5]}children" if word.endswith("child") else f"{n} {word}s"


def _survival(obs: dict) -> str:
    if obs.get("survived"):
        return "the server survived"
    crash = obs.get("crash") or "no traceback in its log"
    return f"the server died ({crash})"


# ---------------------------------------------------------------- the rules

def serialised(obs: dict, rule: dict) -> tuple[bool, str]:
    """3b: the k-th client is answered about (k-1) sleeps after the first."""
    sleep, n = obs["sleep"], obs["clients"]
    answers = [a for a in obs["answers"] if a is not None]
    times = sorted(answers)
    slack = sleep * rule.get("tolerance", 0.1)
    gaps_ok = all(b - a >= sleep - slack for a, b in zip(times, times[1:], strict=False))
    connects = obs.get("connects") or [0.0]
    ok = (len(answers) == n and times[0] < sleep / 2 and gaps_ok and max(connects) < sleep / 2)
    text = (f"{obs['service']} (twin, SLEEP={sleep:g}) answered {len(answers)} of "
            f"{_plural(n, 'parallel client')} after {_seconds(times)}; every connect() "
            f"returned within {max(connects) * 1000:.0f} ms")
    if obs.get("backlog") is not None:
        text += (f"; up to {_plural(obs['backlog'], 'connection')} waited in the kernel's "
                 "listen backlog meanwhile")
    return ok, text + "."


def concurrent(obs: dict, rule: dict) -> tuple[bool, str]:
    """3c: all answered well within one sleep; one child of the server each."""
    sleep, n = obs["sleep"], obs["clients"]
    answers = [a for a in obs["answers"] if a is not None]
    slowest = max(answers) if answers else float("inf")
    kids = obs.get("children_of_server", 0)
    ok = len(answers) == n and slowest < sleep / 2 and kids == n
    text = (f"{obs['service']} answered {len(answers)} of {_plural(n, 'parallel client')}, "
            f"the slowest after {slowest:.2f} s, though each child sleeps {sleep:g} s after "
            f"its answer; {_plural(kids, 'child')} with the server's PID "
            f"({obs.get('server_pid')}) as PPID served them.")
    return ok, text


def hangs(obs: dict, rule: dict) -> tuple[bool, str]:
    """3d: curl prints the body, then times out waiting for the end (exit 28)."""
    body = (obs.get("curl_out") or "").strip()
    ok = body == "Hello, World!" and obs.get("curl_rc") == 28
    shown = body if len(body) < 60 else body[:57] + "..."
    how = ("timed out after" if obs.get("curl_rc") == 28
           else f"ended with exit status {obs.get('curl_rc')} after")
    text = (f"{obs['service']}: curl printed {shown!r} and {how} {obs.get('seconds', 0):.1f} s "
            "without the end of the response")
    if obs.get("fds") is not None:
        text += f"; the server holds {_plural(obs['fds'], 'open descriptor')}"
    return ok, text + "."


def dies_with(obs: dict, rule: dict) -> tuple[bool, str]:
    """3d floods: the server exits non-zero, the traceback names the error."""
    crash = obs.get("crash") or ""
    ok = (bool(obs.get("exited")) and obs.get("exit_code", 0) != 0 and rule["text"] in crash
          and not (rule.get("not") and rule["not"] in crash))
    load = f"{obs['service']} under {obs['clients']} clients"
    if obs.get("exited"):
        text = (f"{load} died after {obs.get('seconds', 0):.1f} s with exit code "
                f"{obs.get('exit_code')}: {crash or 'no traceback in its log'}")
    else:
        text = f"{load} was still running after {obs.get('seconds', 0):.0f} s"
    limit = f"; limit: {obs['limit']} {obs.get('peak_what', '')}".rstrip() if obs.get("limit") else ""
    if obs.get("held") is not None:  # the server's own count, from its log
        text += f" (it held {_plural(obs['held'], 'connection')} open{limit})"
    elif obs.get("peak") is not None:  # what the lab saw, polling
        text += f" (the lab saw up to {obs['peak']} {obs.get('peak_what', '')}{limit})"
    return ok, text + "."


def zombies_at_least(obs: dict, rule: dict) -> tuple[bool, str]:
    z = obs.get("zombies", 0)
    ok = z >= rule.get("min", 1) and bool(obs.get("survived"))
    n = obs.get("clients", 1)
    after = "one request" if n == 1 else f"{n} concurrent clients"
    text = f"{obs['service']} after {after}: {_plural(z, 'zombie child')} (<defunct>)"
    if z == 1 and obs.get("sample"):
        text = (f"{obs['service']} after {after}: its child {obs['sample']['pid']} is a zombie "
                f"(state {obs['sample']['state']}, {obs['sample']['args']}, PPID "
                f"{obs['sample']['ppid']} = the server)")
    return ok, f"{text}; {_survival(obs)}."


def no_zombies(obs: dict, rule: dict) -> tuple[bool, str]:
    z = obs.get("zombies", 0)
    n = obs.get("clients", 0)
    answered = obs.get("answered", 0)
    linger = rule.get("lingering_close")
    if linger:
        # a server that lingers on each close while the clients hold their
        # connections: every worker answers at least once, the rest wait
        answered_ok = rule["workers"] <= answered <= n
    else:
        answered_ok = answered == n
    ok = z == 0 and bool(obs.get("survived")) and answered_ok
    text = (f"{obs['service']} after {n} concurrent clients: {answered} answered, "
            f"{_plural(z, 'zombie')} left; {_survival(obs)}")
    if linger and answered < n:
        text += (f". The other {n - answered} were not answered within the hold: each of the "
                 f"{rule['workers']} workers lingered up to {linger:g} s on every close")
    if z and "reaped_by_next" in obs:
        reaped = obs["reaped_by_next"]
        text += (f". One more request reaped {reaped} of them: "
                 + ("the handler had not run since they exited. A SIGCHLD that arrives after "
                    "the interpreter's last check for signals but before accept(2) blocks is "
                    "handled only when accept returns, a race the article does not cover"
                    if reaped == z else "the reaper did not see them"))
    return ok, text + "."


def eintr(obs: dict, rule: dict) -> tuple[bool, str]:
    retry, crash = obs.get("retry", {}), obs.get("crash", {})
    retry_ok = (bool(retry.get("alive")) and retry.get("answered") == retry.get("requests")
                and not retry.get("interrupted"))
    line = crash.get("crash") or ""
    crash_ok = bool(crash.get("exited")) and rule["text"] in line
    ok = retry_ok and crash_ok
    if crash.get("exited"):
        died = (f"{obs['service']} died {crash.get('seconds', 0):.1f} s after one request: "
                f"{line or 'no traceback in its log'}")
        if crash.get("reaped"):
            died += f" (the handler reaped the child: {crash['reaped']!r})"
    else:
        died = f"{obs['service']} was still running {crash.get('seconds', 0):.0f} s after one request"
    twin = (f"the ACCEPT=python twin answered {retry.get('answered', 0)} of "
            f"{retry.get('requests', 0)} requests one at a time, reaped "
            f"{retry.get('reaped', 0)} children and "
            + ("is still alive" if retry.get("alive") else "died"))
    return ok, f"{died}; {twin}."


def not_held(obs: dict, rule: dict) -> tuple[bool, str]:
    """4b: slow clients held open cost the others (almost) nothing."""
    without, held = obs["without"], obs["with"]
    ratio = held["rate"] / without["rate"] if without["rate"] else 0.0
    p50 = held["p50"]
    ok = ratio >= rule["ratio"] and p50 is not None and p50 <= rule["p50"]
    median = f"{p50 * 1000:.1f} ms" if p50 is not None else "never"
    return ok, (f"{obs['service']} with {obs['slow']} slow clients held open: "
                f"{held['rate']:g} answers/s to the others ({ratio:.2f}x of "
                f"{without['rate']:g} without them), median answer {median}.")


def keep_alive_pays(obs: dict, rule: dict) -> tuple[bool, str]:
    """4b: many requests per connection beat a connection per request."""
    close, kept = obs["close"], obs["kept"]
    ratio = kept["rate"] / close["rate"] if close["rate"] else 0.0
    reused = kept["connections"] < kept["answers"]
    return ratio > 1.0 and reused, (
        f"{obs['service']}: {close['rate']:g} answers/s with a connection per request, "
        f"{kept['rate']:g} with up to {obs['per_connection']} per connection ({ratio:.2f}x; "
        f"{kept['answers']} answers over {kept['connections']} connections).")


RULES: dict[str, Callable[[dict, dict], tuple[bool, str]]] = {
    "not_held": not_held,
    "keep_alive_pays": keep_alive_pays,
    "serialised": serialised,
    "concurrent": concurrent,
    "hangs": hangs,
    "dies_with": dies_with,
    "zombies_at_least": zombies_at_least,
    "no_zombies": no_zombies,
    "eintr": eintr,
}


def judge(experiment: Experiment | str, obs: dict) -> Verdict:
    """The verdict on one observation of one experiment."""
    exp = BY_ID[experiment] if isinstance(experiment, str) else experiment
    if obs.get("error"):
        return Verdict(exp.id, False, f"{exp.service}: could not measure: {obs['error']}.",
                       exp.expects)
    try:
        agrees, observed = RULES[exp.rule["name"]](obs, exp.rule)
    except (KeyError, TypeError, ValueError) as error:
        return Verdict(exp.id, False, f"{exp.service}: incomplete observation ({error!r}).",
                       exp.expects)
    return Verdict(exp.id, agrees, observed, exp.expects)
