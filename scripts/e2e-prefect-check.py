#!/usr/bin/env python3
"""Reads herald's events back from a real Prefect server and checks them.

Used by scripts/e2e-prefect.sh; standard library only. Polls
POST {api}/events/filter (following next_page) until the phase's events are
visible or the timeout passes (Prefect makes events visible about 5 s after
it answered 204), then prints one `ok - ...` or `not ok - ...` line per check
and `# ...` diagnostics. Exit status: 0 if every check passed, 1 otherwise.

Phases:
  running  at least one herald.agent.started and two herald.agent.heartbeat
           events on the agent's resource, each naming its host as a related
           resource, started carrying version and config_digest, ids unique.
  stopped  a herald.agent.stopped event on the agent's resource, naming its
           host as a related resource; with --sent N, exactly N events with
           distinct ids from this agent (on its resource, or naming it as a
           related resource: what herald says it sent: every event arrived,
           none twice).

With --app-resource ID and --app-lines LINE..., the running phase also waits
for the e2e.app.line events of a tailed file mapped onto resource ID: one per
line, with the mapping's labels, the host as a related resource, and each
event's `follows` naming the event of the line before it.

With --state-sources, the running phase also waits for the state sources'
built-in events: herald.host.booted on the host's own resource (not related
to itself), herald.probe.up on herald.probe.<hostname>.<--probe> and
herald.process.started on herald.process.<hostname>.<--process-pid> with the
process's labels. Phase `exited` waits for that process's
herald.process.exited.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PAGE_MAX = 50  # the server caps `limit` at 50
# The server builds next_page from its own idea of its URL; going through a
# proxy or not, we talk to it directly.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with NO_PROXY.open(req, timeout=15) as resp:
        return json.loads(resp.read() or b"null")


def read_events(api: str, prefix: str) -> list[dict]:
    now = dt.datetime.now(dt.timezone.utc)
    flt = {
        "event": {"prefix": [prefix]},
        "occurred": {
            "since": (now - dt.timedelta(hours=1)).isoformat(),
            "until": (now + dt.timedelta(days=1)).isoformat(),
        },
        "order": "ASC",
    }
    page = request("POST", f"{api}/events/filter", {"filter": flt, "limit": PAGE_MAX})
    events = list(page.get("events", []))
    seen_pages = 0
    while page.get("next_page") and seen_pages < 100:
        seen_pages += 1
        query = urllib.parse.urlparse(page["next_page"]).query
        token = urllib.parse.parse_qs(query).get("page-token", [None])[0]
        url = (
            f"{api}/events/filter/next?page-token={urllib.parse.quote(token)}"
            if token
            else page["next_page"]
        )
        page = request("GET", url)
        events.extend(page.get("events", []))
    return events


def from_agent(event: dict, agent: str) -> bool:
    """Whether the agent sent it: its resource, or a related resource."""
    if (event.get("resource") or {}).get("prefect.resource.id") == agent:
        return True
    return any(r.get("prefect.resource.id") == agent for r in event.get("related") or [])


def check_app_lines(checks: "Checks", app: list[dict], lines: list[str], resource: str, host: str) -> None:
    """The mapped file lines: one event each, labels, host, follows chain."""
    by_line = {(e.get("payload") or {}).get("line"): e for e in app}
    found = [by_line.get(line) for line in lines]
    checks.check(
        all(found) and len(app) == len(lines),
        f"{len(lines)} e2e.app.line events read back on {resource} (got {len(app)})",
    )
    if not all(found):
        return
    checks.check(
        all((e.get("resource") or {}).get("e2e.file") == "app.log" for e in found),
        "the mapped events carry the mapping's labels (e2e.file = app.log)",
    )
    checks.check(all(has_host(e, host) for e in found), f"the mapped events name related host {host}")
    chain = [found[i].get("follows") == found[i - 1].get("id") for i in range(1, len(found))]
    checks.check(
        all(chain) and found[0].get("follows") is None,
        "each line's event follows the previous line's event"
        + ("" if all(chain) else f" (follows: {[e.get('follows') for e in found]})"),
    )


def check_state_sources(checks: "Checks", mine: list[dict], on, host: str, probe_id: str, process_id: str, args) -> None:
    """The host, probe and process sources' built-in events."""
    booted = on(mine, "herald.host.booted", host)
    checks.check(len(booted) == 1, f"one herald.host.booted read back on {host} (got {len(booted)})")
    if booted:
        e = booted[0]
        checks.check(
            bool((e.get("resource") or {}).get("herald.host.boot-id"))
            and not has_host(e, host)
            and (e.get("payload") or {}).get("boot_id") == (e.get("resource") or {}).get("herald.host.boot-id"),
            "herald.host.booted carries the boot id on the host's resource, which is not related to itself",
        )
    up = on(mine, "herald.probe.up", probe_id)
    checks.check(len(up) == 1, f"one herald.probe.up read back on {probe_id} (got {len(up)})")
    if up:
        e = up[0]
        checks.check(
            (e.get("resource") or {}).get("herald.probe.type") == "http"
            and isinstance((e.get("payload") or {}).get("latency_ms"), (int, float))
            and has_host(e, host),
            "herald.probe.up names the probe type, its latency and the host"
            f" (resource {json.dumps(e.get('resource'), sort_keys=True)})",
        )
    started = on(mine, "herald.process.started", process_id)
    checks.check(len(started) == 1, f"one herald.process.started read back on {process_id} (got {len(started)})")
    if started:
        r = started[0].get("resource") or {}
        checks.check(
            r.get("herald.process.pid") == str(args.process_pid)
            and r.get("herald.process.name") == args.process_name
            and r.get("prefect.resource.name") == args.process_name
            and bool(r.get("herald.process.start-time"))
            and has_host(started[0], host),
            "herald.process.started carries the process's labels and names the host"
            f" (resource {json.dumps(r, sort_keys=True)})",
        )


def alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, passed: bool, description: str) -> None:
        print(f"{'ok' if passed else 'not ok'} - {description}", flush=True)
        if not passed:
            self.failed += 1


def named(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e.get("event") == name]


def has_host(event: dict, host_id: str) -> bool:
    return any(
        r.get("prefect.resource.role") == "host" and r.get("prefect.resource.id") == host_id
        for r in event.get("related") or []
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--api", required=True, help="e.g. http://127.0.0.1:4201/api")
    p.add_argument("--phase", choices=["running", "exited", "stopped"], required=True)
    p.add_argument("--hostname", required=True, help="the agent's [agent] hostname")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--pid", type=int, help="stop polling early if this process is gone")
    p.add_argument("--sent", type=int, help="stopped phase: how many events herald sent")
    p.add_argument("--app-resource", help="running phase: the resource of the mapped file lines")
    p.add_argument("--app-lines", nargs="*", default=[], help="the lines written to the file")
    p.add_argument("--state-sources", action="store_true", help="check host, probe and process events")
    p.add_argument("--probe", help="the probe source's name")
    p.add_argument("--process-pid", type=int, help="the pid of the watched process")
    p.add_argument("--process-name", help="the watched process's name (comm)")
    args = p.parse_args()

    api = args.api.rstrip("/")
    agent = f"herald.agent.{args.hostname}"
    host = f"herald.host.{args.hostname}"

    def app_events() -> list[dict]:
        return [
            e
            for e in read_events(api, "e2e.app.")
            if (e.get("resource") or {}).get("prefect.resource.id") == args.app_resource
        ]

    app: list[dict] = []
    probe_id = f"herald.probe.{args.hostname}.{args.probe}"
    process_id = f"herald.process.{args.hostname}.{args.process_pid}"

    def on(mine: list[dict], name: str, resource: str) -> list[dict]:
        return [e for e in named(mine, name) if (e.get("resource") or {}).get("prefect.resource.id") == resource]

    def state_ready(mine: list[dict]) -> bool:
        return (
            not args.state_sources
            or bool(on(mine, "herald.host.booted", host))
            and bool(on(mine, "herald.probe.up", probe_id))
            and bool(on(mine, "herald.process.started", process_id))
        )

    def ready(mine: list[dict]) -> bool:
        if args.phase == "running":
            return (
                len(named(mine, "herald.agent.started")) >= 1
                and len(named(mine, "herald.agent.heartbeat")) >= 2
                and len(app) >= len(args.app_lines)
                and state_ready(mine)
            )
        if args.phase == "exited":
            return bool(on(mine, "herald.process.exited", process_id))
        return len(named(mine, "herald.agent.stopped")) >= 1 and (
            args.sent is None or len(mine) >= args.sent
        )

    deadline = time.monotonic() + args.timeout
    everything: list[dict] = []
    mine: list[dict] = []
    last_error = None
    while True:
        try:
            everything = read_events(api, "herald.")
            if args.app_resource:
                app = app_events()
                everything = everything + app
            last_error = None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = exc
        mine = [e for e in everything if from_agent(e, agent)]
        if ready(mine) or time.monotonic() >= deadline:
            break
        if args.phase == "running" and not alive(args.pid):
            print(f"# herald (pid {args.pid}) is gone; not waiting any longer", flush=True)
            # One last read: what it sent before dying may just be visible.
            time.sleep(6)
            try:
                everything = read_events(api, "herald.")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = exc
            mine = [e for e in everything if from_agent(e, agent)]
            break
        time.sleep(0.5)

    if last_error is not None:
        print(f"# last read of {api}/events/filter failed: {last_error}", flush=True)
    names: dict[str, int] = {}
    for e in everything:
        key = f"{e.get('event')} on {(e.get('resource') or {}).get('prefect.resource.id')}"
        names[key] = names.get(key, 0) + 1
    print(f"# read back {len(everything)} herald.* events: {json.dumps(names, sort_keys=True)}", flush=True)

    checks = Checks()
    if args.phase == "running":
        started = named(mine, "herald.agent.started")
        beats = named(mine, "herald.agent.heartbeat")
        checks.check(len(started) >= 1, f"herald.agent.started read back on {agent} (got {len(started)})")
        checks.check(len(beats) >= 2, f"at least 2 herald.agent.heartbeat read back on {agent} (got {len(beats)})")
        lifecycle = started + beats
        without = [e.get("id") for e in lifecycle if not has_host(e, host)]
        checks.check(
            bool(lifecycle) and not without,
            f"started and heartbeat events name related host {host}"
            + (f" (missing on {without})" if without else ""),
        )
        payloads = [e.get("payload") or {} for e in started]
        good = [pl for pl in payloads if pl.get("version") and pl.get("config_digest")]
        checks.check(
            bool(started) and len(good) == len(started),
            "herald.agent.started payload has version and config_digest"
            + ("" if good or not payloads else f" (payload {json.dumps(payloads[0])})"),
        )
        ids = [e.get("id") for e in everything]
        checks.check(bool(ids) and len(ids) == len(set(ids)), f"all {len(ids)} event ids are unique")
        if args.app_resource:
            check_app_lines(checks, app, args.app_lines, args.app_resource, host)
        if args.state_sources:
            check_state_sources(checks, mine, on, host, probe_id, process_id, args)
    elif args.phase == "exited":
        exited = on(mine, "herald.process.exited", process_id)
        checks.check(len(exited) == 1, f"one herald.process.exited read back on {process_id} (got {len(exited)})")
        if exited:
            payload = exited[0].get("payload") or {}
            checks.check(
                payload.get("pid") == args.process_pid and "exit_status_known" in payload,
                "herald.process.exited says which process and whether its exit status is known"
                f" (payload {json.dumps(payload, sort_keys=True)})",
            )
    else:
        stopped = named(mine, "herald.agent.stopped")
        checks.check(len(stopped) >= 1, f"herald.agent.stopped read back on {agent} (got {len(stopped)})")
        checks.check(
            bool(stopped) and all(has_host(e, host) for e in stopped),
            f"herald.agent.stopped names related host {host}",
        )
        if args.sent is not None:
            ids = {e.get("id") for e in mine}
            checks.check(
                len(mine) == args.sent and len(ids) == len(mine),
                f"every event herald sent is stored once: {args.sent} sent,"
                f" {len(mine)} read back on {agent} ({len(ids)} distinct ids)",
            )
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
