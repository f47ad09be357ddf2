#!/usr/bin/env python3
"""Prints one stage of a Dockerfile as a replay plan, for tests/docker/test_cpu_image_recipe.sh.

    dockerfile_stage.py DOCKERFILE [--stage NAME]      (default: the last stage)

One instruction per output line, as shell words (shlex-quoted, safe to `eval` into an array):

    FROM <image>                      the stage's base, ARGs substituted
    ARG <name> <value>                build args in scope (global ARGs used by FROM, stage ARGs)
    RUN <shell command>               shell form only
    COPY <from-stage or -> <chmod or -> <dest> <src>...
    ENV <key> <value>                 one line per variable
    USER <user> | WORKDIR <dir> | VOLUME <dir>... | EXPOSE <port>...
    HEALTHCHECK <arg>...              the CMD, exec form only (its options are dropped)
    ENTRYPOINT <arg>... | CMD <arg>...   exec (JSON) form only

Only the subset of Dockerfile syntax that docker/Dockerfile.cpu uses is understood; anything
else is an error (exit 2), so a change to the Dockerfile that the replay cannot follow breaks
the test instead of being skipped silently.
"""
import json
import re
import shlex
import sys

VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def fail(msg):
    print(f"dockerfile_stage: {msg}", file=sys.stderr)
    sys.exit(2)


def logical_lines(text):
    """Joins continuation lines and drops comments and blank lines, like the Dockerfile parser."""
    out, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if s.startswith("#"):
            continue  # comments (and parser directives) are dropped, even inside continuations
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        fail("the file ends in a line continuation")
    return out


def substitute(value, scope):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in scope:
            fail(f"${name} is not defined by an ARG or ENV before its use")
        return scope[name]

    return VAR_RE.sub(repl, value)


def exec_form(rest, what):
    try:
        args = json.loads(rest)
    except json.JSONDecodeError:
        fail(f"{what} must be in exec (JSON array) form: {rest}")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        fail(f"{what} must be a JSON array of strings: {rest}")
    return args


def parse_flags(words, allowed):
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        if key not in allowed:
            fail(f"flag --{key} is not supported by the replay")
        flags[key] = value
    return flags


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--stage"):
        fail("usage: dockerfile_stage.py DOCKERFILE [--stage NAME]")
    path, want = argv[1], (argv[3] if len(argv) == 4 else None)
    with open(path, encoding="utf-8") as f:
        lines = logical_lines(f.read())

    global_args = {}
    stages = []  # (name, [plan lines])
    scope = None
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            words = rest.split()
            if len(words) == 3 and words[1].upper() == "AS":
                name = words[2]
            elif len(words) == 1:
                name = str(len(stages))
            else:
                fail(f"FROM: expected 'IMAGE [AS NAME]': {rest}")
            image = substitute(words[0], global_args)
            scope = {}
            stages.append((name, [["FROM", image]]))
            continue
        if scope is None:
            if instr != "ARG":
                fail(f"{instr} before the first FROM")
            k, _, v = rest.partition("=")
            global_args[k] = v.strip('"')
            continue
        plan = stages[-1][1]
        if instr == "ARG":
            k, eq, v = rest.partition("=")
            if eq:
                scope[k] = v.strip('"')
            elif k in global_args:
                scope[k] = global_args[k]
            else:
                fail(f"ARG {k} has no value")
            plan.append(["ARG", k, scope[k]])
        elif instr == "ENV":
            words = shlex.split(rest)
            if not words or not all("=" in w for w in words):
                fail(f"ENV: expected KEY=VALUE pairs: {rest}")
            for w in words:
                k, _, v = w.partition("=")
                v = substitute(v, scope)
                scope[k] = v
                plan.append(["ENV", k, v])
        elif instr == "RUN":
            if rest.startswith("["):
                fail("RUN must be in shell form")
            if rest.startswith("--"):
                fail(f"RUN flags are not supported by the replay: {rest}")
            plan.append(["RUN", rest])
        elif instr == "COPY":
            if rest.startswith("["):
                words = exec_form(rest, "COPY")
            else:
                words = shlex.split(rest)
            flags = parse_flags(words, {"from", "chmod"})
            if len(words) < 2:
                fail(f"COPY: expected SRC... DEST: {rest}")
            words = [substitute(w, scope) for w in words]
            plan.append(["COPY", flags.get("from") or "-", flags.get("chmod") or "-",
                         words[-1]] + words[:-1])
        elif instr in ("USER", "WORKDIR"):
            plan.append([instr, substitute(rest, scope)])
        elif instr == "VOLUME":
            dirs = exec_form(rest, "VOLUME") if rest.startswith("[") else rest.split()
            plan.append(["VOLUME"] + [substitute(d, scope) for d in dirs])
        elif instr == "EXPOSE":
            plan.append(["EXPOSE"] + rest.split())
        elif instr == "HEALTHCHECK":
            words = rest.split()
            while words and words[0].startswith("--"):
                words.pop(0)  # --interval= --timeout= --start-period= --retries=
            if not words or words[0].upper() != "CMD":
                fail(f"HEALTHCHECK: expected [options] CMD [...]: {rest}")
            cmd = rest[rest.upper().index("CMD") + 3:].strip()
            plan.append(["HEALTHCHECK"] + exec_form(cmd, "HEALTHCHECK CMD"))
        elif instr in ("ENTRYPOINT", "CMD"):
            plan.append([instr] + exec_form(rest, instr))
        else:
            fail(f"instruction {instr} is not supported by the replay")

    if not stages:
        fail("no FROM")
    if want is None:
        name, plan = stages[-1]
    else:
        found = [s for s in stages if s[0] == want]
        if not found:
            fail(f"no stage named {want}")
        name, plan = found[0]
    known = {s[0] for s in stages}
    for step in plan:
        if step[0] == "COPY" and step[1] != "-" and step[1] not in known:
            fail(f"COPY --from={step[1]}: not a stage of this Dockerfile")
    for step in plan:
        print(" ".join(shlex.quote(w) for w in step))


if __name__ == "__main__":
    main(sys.argv)
