"""The dashboard's page: ipywidgets laid out over the data layer's tables.

`build(course)` returns one widget; `dashboard.ipynb` displays it and Voila serves
the notebook (`make dashboard`). A filter by lab and by student redraws every
section; the CSV download link always holds exactly the filtered scores.
Tables carry HTML ids (`scores-table`, `failing-table`, ...) so a browser test
can find them.
"""

from __future__ import annotations

import base64
import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd

from . import plots
from .analysis import RiskRule, question_summary, students_at_risk
from .course import Course
from .failures import cell_errors, failing_tests
from .gradebook import filter_scores, labs, load_scores, students, to_csv
from .mutants import mutant_table
from .timing import submission_times


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _table(df: pd.DataFrame, table_id: str, float_format: str = "{:.3g}") -> str:
    if df.empty:
        return f'<p id="{table_id}" class="dash-empty">(nothing for this filter)</p>'
    return df.to_html(table_id=table_id, index=False, na_rep="", float_format=float_format.format, border=0,
                      classes="dash-table")


def download_link(scores: pd.DataFrame, name: str = "scores.csv") -> str:
    """An HTML link that downloads `scores` as CSV (a data: URL, so no server round trip)."""
    payload = base64.b64encode(to_csv(scores).encode()).decode()
    return (f'<a class="dash-download jupyter-button" download="{html.escape(name)}" '
            f'href="data:text/csv;base64,{payload}">Download CSV ({len(scores)} rows)</a>')


def build(course: Course, rule: RiskRule = RiskRule()) -> widgets.VBox:
    """The whole page for `course`, wired to its filter."""
    all_scores = load_scores(course)
    all_labs, all_students = labs(course), students(course)
    errors = cell_errors(course)
    times = submission_times(course)
    lab_pick = widgets.SelectMultiple(options=all_labs, description="Labs", rows=min(6, max(2, len(all_labs))))
    student_pick = widgets.SelectMultiple(options=all_students, description="Students",
                                          rows=min(8, max(2, len(all_students))))
    lab_pick.add_class("dash-lab-filter")
    student_pick.add_class("dash-student-filter")
    status = widgets.HTML()
    download = widgets.HTML()
    scores_html, failing_html, risk_html, times_html, mutants_html = (widgets.HTML() for _ in range(5))
    dist_img = widgets.Image(format="png")
    times_img = widgets.Image(format="png")
    dist_img.add_class("dash-distributions")
    times_img.add_class("dash-times")
    errors_note = ("" if course.autograded_dir.is_dir()
                   else f"<p>No autograded notebooks at {html.escape(str(course.autograded_dir))}: errors unknown.</p>")

    def redraw(_change=None) -> None:
        chosen_labs, chosen_students = list(lab_pick.value), list(student_pick.value)
        scores = filter_scores(all_scores, chosen_labs, chosen_students)
        in_view = scores[["student", "lab"]].drop_duplicates()
        status.value = (f'<p id="dash-status">{len(scores)} score rows: labs '
                        f"{html.escape(', '.join(chosen_labs) or 'all')}; students "
                        f"{html.escape(', '.join(chosen_students) or 'all')}</p>")
        download.value = download_link(scores, "scores_" + "_".join(chosen_labs or ["all"]) + ".csv")
        scores_html.value = _table(scores, "scores-table")
        dist_img.value = _png(plots.score_distributions(scores))
        summary = question_summary(scores).merge(failing_tests(scores, errors), how="left",
                                                 on=["lab", "question", "max_score", "num_submissions"])
        failing_html.value = errors_note + _table(
            summary.sort_values(["num_failed", "lab", "question"], ascending=[False, True, True]), "failing-table")
        risk = students_at_risk(scores, chosen_labs or all_labs, chosen_students or all_students, rule)
        risk_html.value = f"<p>{html.escape(rule.describe())}</p>" + _table(risk, "risk-table")
        shown = times.merge(in_view, on=["student", "lab"]) if len(in_view) else times.iloc[0:0]
        sources = ", ".join(sorted(set(shown["source"]))) or "none"
        times_html.value = (f"<p>Source: {html.escape(sources)}. From nbgrader alone this is the time the "
                            "notebook's cells ran (kernel start-up excluded); the submission time is the "
                            "gradebook's, empty where no timestamp.txt was submitted.</p>"
                            + _table(shown, "times-table"))
        times_img.value = _png(plots.grading_times(shown))
        mutant_labs = chosen_labs or None
        mutants_html.value = ("<p>Each mutant replaces <code>old</code> with <code>new</code> in a solution cell; "
                              "the tests in <code>must_lose</code> must then lose points "
                              "(grading/roundtrip.py).</p>"
                              + _table(mutant_table(course.mutants_dir, all_scores, mutant_labs), "mutants-table"))

    lab_pick.observe(redraw, names="value")
    student_pick.observe(redraw, names="value")
    redraw()

    def section(title: str, *body: widgets.Widget) -> widgets.VBox:
        return widgets.VBox([widgets.HTML(f"<h3>{html.escape(title)}</h3>"), *body])

    header = widgets.HTML(f"<p>Gradebook: <code>{html.escape(str(course.gradebook_path))}"
                          f"</code> ({len(all_students)} students, {len(all_labs)} labs). "
                          "Select labs and/or students to filter every section (none selected: all).</p>")
    return widgets.VBox([
        header,
        widgets.HBox([lab_pick, student_pick]),
        status,
        download,
        section("Score distributions per question", dist_img),
        section("Tests that fail most, with their most common error", failing_html),
        section("Students at risk", risk_html),
        section("Time per submission", times_html, times_img),
        section("What wrong answers look like (mutants)", mutants_html),
        section("Scores", scores_html),
    ])
