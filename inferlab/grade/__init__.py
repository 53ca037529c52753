"""Isolated, parallel autograding of a class (`inferlab grade LAB`).

Flow: `batch.py` builds a wheel of the package once, makes a template gradebook for
the lab, then for each submission `sandbox.py` prepares a private course folder and
starts `jail.py` as pid 1 of fresh mount/pid/net/ipc/uts namespaces, inside cgroups
(memory, pids, cpu time). `jail.py` chroots into a root holding only the system, the
virtual environment, the wheel and that submission, and runs plain `nbgrader autograde`
with the course config; the kernel itself runs as an unprivileged uid (`kernel.py`).
`gradebook.py` merges only that student's autograde scores for the known grade cells
into the course gradebook and records time and failure reasons beside it.
"""
