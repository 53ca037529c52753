"""nbgrader configuration of the kit: sources in solutions/, releases in labs/.

Used by `make release` and the instructor's nbgrader commands, run from the
repository root or from grading/ (`nbgrader ... --config grading/nbgrader_config.py`).
What autograding needs (the isolated executor, per-lab timeouts, ungraded demos skipped,
feedback without hidden tests) comes from `course.configure_grading`, shared with roundtrip.py.
"""

import os
import sys

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "mod-526"
c.CourseDirectory.root = _root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = os.path.join("grading", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("grading", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("grading", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_root, "grading", "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "build", "*.db"]

LABS = [
    "lab0_baseline", "lab1_parallelism", "lab2_frameworks", "lab3_batching",
    "lab4_routing", "lab5_autoscaling", "lab6_observability", "capstone",
]

from course import configure_grading  # noqa: E402 (grading/ is on sys.path from here on)

configure_grading(c)

# --- Exchange (release -> fetch -> submit -> collect -> return feedback) ---------------------------
# nbgrader's default exchange, /srv/nbgrader/exchange, does not exist on a laptop or in CI, so
# formgrader greys out Release and Collect. The kit's exchange is a folder of the course,
# build/exchange, created here (world-writable with the sticky bit, as nbgrader's docs ask for a
# shared exchange). On a JupyterHub, point INFERLAB_EXCHANGE at the shared path instead (students'
# configs need the same `c.Exchange.root` and `c.CourseDirectory.course_id`).
EXCHANGE_ROOT = os.environ.get("INFERLAB_EXCHANGE") or os.path.join(_root, "build", "exchange")
if not os.path.isdir(EXCHANGE_ROOT):
    os.makedirs(EXCHANGE_ROOT, exist_ok=True)
    os.chmod(EXCHANGE_ROOT, 0o1777)
c.Exchange.root = EXCHANGE_ROOT
