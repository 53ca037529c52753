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
