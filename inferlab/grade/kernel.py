"""The sandbox's kernel launcher: drop to an unprivileged uid, set limits, exec ipykernel.

`kernel.py --run PROGRAM ARGS...` does the same for any program: the sandbox points the course
config's isolated test runner (`IsolatedExecute.python`) at a wrapper using it, so that a fresh
interpreter nbgrader starts to run the learner's code does not run as root either.

Inside a sandbox, nbgrader runs as root (it owns the sandbox's gradebook, in a 0700 folder)
and starts kernels through the kernelspec `sandbox.py` writes, whose argv is this script.
Standard library only. It copies the connection file where the kernel's uid can read it,
hands the working folder (the autograded copy of the submission) to that uid, sets per-process
limits (processes, file size, no core dumps), drops every privilege and execs ipykernel. From
then on submitted code cannot read or write the gradebook, nbgrader's runtime folder or anything
root-owned it is not meant to see.
"""

import json
import os
import resource
import sys


def _chown_tree(path: str, uid: int, gid: int) -> None:
    for folder, dirs, files in os.walk(path):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _drop_privileges(uid: int) -> None:
    _chown_tree(os.getcwd(), uid, uid)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    max_procs = int(os.environ["INFERLAB_SANDBOX_MAX_PROCS"])
    resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))
    max_file = int(os.environ["INFERLAB_SANDBOX_MAX_FILE_BYTES"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file, max_file))
    max_cpu = int(float(os.environ["INFERLAB_SANDBOX_MAX_CPU_S"]))  # per process; the cgroup sums them
    resource.setrlimit(resource.RLIMIT_CPU, (max_cpu, max_cpu))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("kernel.py: could not drop privileges")


def main(argv: list[str]) -> int:
    uid = int(os.environ["INFERLAB_SANDBOX_UID"])
    if argv[:1] == ["--run"] and len(argv) > 1:
        _drop_privileges(uid)
        os.execv(argv[1], argv[1:])
    if len(argv) < 2 or argv[0] != "-f":
        print("usage: kernel.py -f CONNECTION_FILE [ipykernel options]", file=sys.stderr)
        return 2
    extra = argv[2:]  # e.g. nbgrader's --HistoryManager.hist_file=:memory:
    home = os.environ["HOME"]
    with open(argv[1]) as f:
        connection = json.load(f)
    private = os.path.join(home, ".kernel-" + os.path.basename(argv[1]))
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(connection, f)
    os.chown(private, uid, uid)
    _drop_privileges(uid)
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", private, *extra])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
