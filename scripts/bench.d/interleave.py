#!/usr/bin/env python3
"""Runs commands in turn, one run of each per round, as an unprivileged uid,
and prints each one's median wall time and its ratio to the last command.

Interleaving keeps a noisy machine's drift out of the comparison: every
command sees the same moments. Used by scripts/bench to compare two builds.

usage: interleave.py --runs N --uid UID --cwd DIR NAME=COMMAND... (the last
       command is the reference)
"""
import argparse
import shlex
import statistics
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--cwd", required=True)
    ap.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    args = ap.parse_args()
    as_user = ["setpriv", f"--reuid={args.uid}", f"--regid={args.uid}", "--clear-groups", "--"]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": args.cwd}
    cmds = []
    for spec in args.commands:
        name, sep, line = spec.partition("=")
        if not sep or not line:
            sys.exit(f"interleave.py: {spec!r} is not NAME=COMMAND")
        cmds.append((name, as_user + shlex.split(line)))
    times = {name: [] for name, _ in cmds}
    for i in range(args.warmup + args.runs):
        for name, argv in cmds:
            t = time.perf_counter()
            r = subprocess.run(argv, cwd=args.cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            elapsed = (time.perf_counter() - t) * 1000
            if r.returncode != 0:
                sys.exit(f"interleave.py: {name} failed ({r.returncode}): {r.stderr.decode()[-300:]}")
            if i >= args.warmup:
                times[name].append(elapsed)
    ref = statistics.median(times[cmds[-1][0]])
    for name, _ in cmds:
        m = statistics.median(times[name])
        print(f"  {name:34} median {m:7.2f} ms   ratio to {cmds[-1][0]}: {m / ref:.2f}")


if __name__ == "__main__":
    main()
