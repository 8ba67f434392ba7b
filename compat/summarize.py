#!/usr/bin/env python3
"""Tabulates two pytest runs of the same redis-py test files: redis-server against ringcache.

    compat/summarize.py RUN_DIR [--list N]

RUN_DIR holds, for each target T in (redis, ringcache): T.xml (pytest --junit-xml), T.log (pytest's
output) and T.rc (its exit code), as compat/redis-py.sh leaves them. Prints Markdown: per-file counts
(passed / failed / skipped; "failed" = any failure or error, teardown included), the tests that pass on
redis-server but not on ringcache, the commands ringcache answered "unknown command" to, and those
tests grouped by reason (at most N names per reason; all of them go to RUN_DIR/regressions.md).
A run that did not start (pytest stopped before the first test, e.g. in conftest's
pytest_sessionstart) is reported with the place and the exception where it stopped.
"""

import collections
import os
import re
import sys
import xml.etree.ElementTree as ET

TARGETS = [("redis", "redis-server"), ("ringcache", "ringcache")]
UNKNOWN_CMD = re.compile(r"unknown command '([^']*)'", re.I)
UNKNOWN_SUB = re.compile(r"unknown subcommand '([^']*)'(?:\. Try ([A-Za-z|]+) HELP)?", re.I)


def file_of(classname):
    for part in classname.split("."):
        if part.startswith("test_"):
            return part + ".py"
    return classname


class Case:
    def __init__(self, key):
        self.key = key
        self.skipped = None
        self.problems = []  # (phase, message, text)

    @property
    def outcome(self):
        if self.problems:
            return "failed"
        if self.skipped is not None:
            return "skipped"
        return "passed"

    @property
    def teardown_only(self):
        return bool(self.problems) and all(p[0] == "teardown" for p in self.problems)


def load(path):
    cases = collections.OrderedDict()
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return cases
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return cases
    for tc in root.iter("testcase"):
        key = (file_of(tc.get("classname", "")), tc.get("classname", "").split(".")[-1], tc.get("name", ""))
        c = cases.setdefault(key, Case(key))
        for child in tc:
            msg = child.get("message", "") or ""
            text = child.text or ""
            if child.tag == "skipped":
                c.skipped = msg
            elif child.tag == "failure":
                c.problems.append(("call", msg, text))
            elif child.tag == "error":
                phase = "teardown" if msg.startswith("failed on teardown") else (
                    "setup" if msg.startswith("failed on setup") else "call")
                c.problems.append((phase, msg, text))
    return cases


def stop_point(log_path):
    """Where a pytest run that executed no test stopped: (location, exception) from its log."""
    if not os.path.exists(log_path):
        return None, "no log"
    lines = open(log_path, errors="replace").read().splitlines()
    where, what = None, None
    for i, line in enumerate(lines):
        m = re.search(r'File "([^"]*tests/conftest\.py)", line (\d+), in (\w+)', line)
        if m:
            src = lines[i + 1].replace("INTERNALERROR>", "").strip() if i + 1 < len(lines) else ""
            where = f"tests/conftest.py:{m.group(2)} in {m.group(3)}: `{src}`"
    for line in reversed(lines):
        s = line.replace("INTERNALERROR>", "").strip()
        if re.match(r"^(E\s+)?[\w.]+(Error|Exception|Interrupt)\b", s):
            what = re.sub(r"^E\s+", "", s)
            break
    if what is None:
        tail = [x for x in lines if x.strip()][-1:] or ["(empty log)"]
        what = tail[0].strip()
    return where, what


def reason_of(case):
    """One line saying why a test did not pass, preferring the test body over its teardown."""
    body = [p for p in case.problems if p[0] != "teardown"]
    probs = body or case.problems
    phase, msg, text = probs[0]
    blob = msg + "\n" + text
    m = UNKNOWN_CMD.search(blob)
    if m:
        r = f"unknown command {m.group(1).upper()}"
    else:
        m = UNKNOWN_SUB.search(blob)
        if m:
            r = f"unknown subcommand {(m.group(2) or '?').upper()} {m.group(1).upper()}"
        else:
            r = msg.replace("failed on setup with ", "").replace("failed on teardown with ", "").strip('"')
            r = re.sub(r"\s+", " ", r)
            r = re.sub(r"0x[0-9a-f]+", "0x…", r)
            if r.startswith("AssertionError") or r.startswith("assert "):
                r = "assertion: " + r[:90]
            else:
                r = r[:110]
    return ("teardown: " if not body else ("setup: " if phase == "setup" else "")) + r


def commands_named(case, phases):
    names = set()
    for phase, msg, text in case.problems:
        if phase in phases:
            names.update(n.upper() for n in UNKNOWN_CMD.findall(msg + "\n" + text))
    return names


def main():
    run_dir = sys.argv[1]
    limit = int(sys.argv[sys.argv.index("--list") + 1]) if "--list" in sys.argv else 8
    runs, notes, status = {}, {}, {}
    for t, label in TARGETS:
        runs[t] = load(os.path.join(run_dir, f"{t}.xml"))
        rc_path = os.path.join(run_dir, f"{t}.rc")
        rc = open(rc_path).read().strip() if os.path.exists(rc_path) else "?"
        status[t] = "not run" if rc == "?" else "did not start"
        if not runs[t] and rc == "?":
            notes[t] = f"{label}: not run (not in TARGETS)"
        elif not runs[t]:
            where, what = stop_point(os.path.join(run_dir, f"{t}.log"))
            notes[t] = f"**{label}: the suite did not start** (pytest exit {rc}): stopped at {where or '?'} with `{what}`"
    files = []
    for t, _ in TARGETS:
        for key in runs[t]:
            if key[0] not in files:
                files.append(key[0])

    def counts(t, f):
        c = collections.Counter(x.outcome for k, x in runs[t].items() if k[0] == f)
        if not runs[t]:
            return status[t]
        return f"{c['passed']} / {c['failed']} / {c['skipped']}"

    red, ring = runs["redis"], runs["ringcache"]
    regress = {k: ring.get(k) for k, c in red.items() if c.outcome == "passed" and ring.get(k) is not None
               and ring[k].outcome == "failed"}
    skipped_only = [k for k, c in red.items() if c.outcome == "passed" and ring.get(k) is not None
                    and ring[k].outcome == "skipped"]

    print("| file | redis-server passed / failed / skipped | ringcache passed / failed / skipped | "
          "pass on redis-server, fail on ringcache | of those, failing only in teardown |")
    print("|---|---:|---:|---:|---:|")
    for f in files + ["total"]:
        sel = (lambda k: True) if f == "total" else (lambda k, f=f: k[0] == f)
        if f == "total":
            def tot(t):
                if not runs[t]:
                    return status[t]
                c = collections.Counter(x.outcome for x in runs[t].values())
                return f"{c['passed']} / {c['failed']} / {c['skipped']}"
            a, b = tot("redis"), tot("ringcache")
        else:
            a, b = counts("redis", f), counts("ringcache", f)
        rk = [k for k in regress if sel(k)]
        td = [k for k in rk if regress[k].teardown_only]
        name = f"**{f}**" if f == "total" else f
        print(f"| {name} | {a} | {b} | {len(rk) if ring else '—'} | {len(td) if ring else '—'} |")
    print()
    for t, _ in TARGETS:
        if t in notes:
            print(notes[t])
            print()
    if not red or not ring:
        return
    if skipped_only:
        print(f"Pass on redis-server but skipped on ringcache: {len(skipped_only)} "
              f"({', '.join(sorted(set(ring[k].skipped[:60] for k in skipped_only)))[:300]}).")
        print()

    body_cmds, teardown_cmds = collections.Counter(), collections.Counter()
    for k, c in regress.items():
        body_cmds.update(commands_named(c, {"call", "setup"}))
        teardown_cmds.update(commands_named(c, {"teardown"}))
    print("Commands ringcache answered `unknown command` to, by how many of those tests "
          "(test body / fixture teardown):")
    print()
    print("| command | tests (body) | tests (teardown) |")
    print("|---|---:|---:|")
    for cmd in sorted(set(body_cmds) | set(teardown_cmds), key=lambda x: (-(body_cmds[x] + teardown_cmds[x]), x)):
        print(f"| {cmd} | {body_cmds[cmd]} | {teardown_cmds[cmd]} |")
    print()

    groups = collections.defaultdict(list)
    for k, c in regress.items():
        groups[reason_of(c)].append(k)
    order = sorted(groups, key=lambda r: (-len(groups[r]), r))
    print(f"Pass on redis-server, fail on ringcache, by first reason ({len(regress)} tests, "
          f"{len(groups)} reasons; at most {limit} names each):")
    print()
    for r in order:
        names = [f"{k[0]}::{k[2]}" for k in groups[r]]
        more = f", … (+{len(names) - limit})" if len(names) > limit else ""
        print(f"- {r} — {len(names)}: " + ", ".join(f"`{n}`" for n in names[:limit]) + more)
    with open(os.path.join(run_dir, "regressions.md"), "w") as out:
        for r in order:
            out.write(f"## {r} ({len(groups[r])})\n\n")
            for k in groups[r]:
                out.write(f"- {k[0]}::{k[1]}::{k[2]}\n")
            out.write("\n")


if __name__ == "__main__":
    main()
