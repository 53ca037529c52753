"""Inside one sandbox: pid 1 of fresh namespaces; builds a minimal root, chroots, runs nbgrader.

`sandbox.py` starts this file as a script (`python -I -S jail.py SPEC`, standard library only)
under `unshare --mount --net --pid --ipc --uts --fork`, as root. In order it:
joins the sandbox's cgroups, brings up loopback (the kernel talks to nbgrader over ZeroMQ on
127.0.0.1; there is no other interface, so no network), mounts a tmpfs root holding read-only
binds of the system, the virtual environment and the wheel, a read-write bind of this sandbox's
folder only, fresh /dev, /proc and /tmp, chroots into it and runs plain `nbgrader autograde`
with the course config copied into the sandbox. When nbgrader exits this process exits and the
kernel kills every process left in the pid namespace: nothing a submission started outlives it.
"""

import json
import os
import subprocess
import sys

_DEVICES = ("null", "zero", "full", "random", "urandom")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _bind(src: str, root: str, *, read_only: bool) -> None:
    dst = root + src
    if os.path.islink(src):  # merged-/usr systems: /bin -> usr/bin
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink(os.readlink(src), dst)
        return
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _run("mount", "--rbind", src, dst)
    if read_only:
        _run("mount", "-o", "remount,bind,ro", dst)


def build_root(spec: dict) -> str:
    root = spec["root_dir"]
    _run("mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "sandbox-root", root)
    os.makedirs(root + "/dev", exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "sandbox-dev", root + "/dev")
    for path in ("/tmp", "/dev/shm"):  # first: the sandbox folder itself may live under /tmp
        os.makedirs(root + path, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"mode=1777,size={spec['tmp_size']}", "sandbox-tmp", root + path)
    for path in spec["binds_ro"]:
        if os.path.lexists(path):
            _bind(path, root, read_only=True)
    for path in spec["binds_rw"]:
        _bind(path, root, read_only=False)
    for name in _DEVICES:
        _bind("/dev/" + name, root, read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(root + "/proc", exist_ok=True)
    _run("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", root + "/proc")
    return root


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    for procs in spec["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write("0")  # "0": the writing process itself (its children follow)
    _run("ip", "link", "set", "lo", "up")
    root = build_root(spec)
    os.chroot(root)
    os.chdir(spec["cwd"])
    os.umask(0o022)
    print(f"jail: chroot ready; running {' '.join(spec['argv'])}", flush=True)
    done = subprocess.run(spec["argv"], env=spec["env"], cwd=spec["cwd"])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
