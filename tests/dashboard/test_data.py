"""The dashboard's data layer against a real gradebook (lab 0 graded by nbgrader, see conftest).

Expected values come from an independent path: the round trip's scores, read
through nbgrader's own API (`nbgrader.api.Gradebook`), and its mutant list.
"""

import io
import sqlite3

import pandas as pd
import pytest

from dashboard import (Course, RiskRule, cell_errors, failing_tests, filter_scores, labs, load_scores,
                       mutant_table, question_summary, students, students_at_risk, submission_times, to_csv, totals)
from dashboard.failures import _error_of
from dashboard.plots import score_distributions, score_histogram
from dashboard.timing import RECORD_SOURCE

pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def test_scores_match_nbgraders_own_reading(graded, course):
    result, _ = graded
    scores = load_scores(course)
    assert len(scores) == len(result.scores) * len(result.max_points)
    for row in scores.itertuples():
        assert row.lab == result.lab
        assert row.score == result.scores[row.student][row.question], row
        assert row.max_score == result.max_points[row.question], row
    assert labs(course) == [result.lab]
    assert students(course) == sorted(result.scores)


def test_filter_and_csv_export_keep_exactly_the_chosen_rows(graded, course):
    result, _ = graded
    scores = load_scores(course)
    picked = filter_scores(scores, labs=[result.lab], students=["solution", "blank"])
    assert sorted(set(picked["student"])) == ["blank", "solution"]
    assert len(picked) == 2 * len(result.max_points)
    back = pd.read_csv(io.StringIO(to_csv(picked)))
    assert list(back.columns) == list(scores.columns)
    columns = ["student", "question", "score"]
    assert back[columns].values.tolist() == picked[columns].values.tolist()
    assert filter_scores(scores).equals(scores)  # no filter: everything
    with pytest.raises(ValueError, match="nobody"):
        filter_scores(scores, students=["nobody"])


def test_summary_and_totals_agree_with_the_round_trip(graded, course):
    result, _ = graded
    scores = load_scores(course)
    summary = question_summary(scores).set_index("question")
    for question, max_score in result.max_points.items():
        got = [result.scores[s][question] for s in result.scores]
        assert summary.loc[question, "mean_score"] == pytest.approx(sum(got) / len(got))
        full = sum(g >= max_score for g in got) / len(got)
        assert summary.loc[question, "full_marks_fraction"] == pytest.approx(full)
    per_student = totals(scores).set_index("student")
    for student in result.scores:
        assert per_student.loc[student, "score"] == pytest.approx(result.total(student))
        assert per_student.loc[student, "max_score"] == pytest.approx(result.max_total)


def test_failing_tests_count_the_lost_points_and_name_the_error(graded, course):
    result, _ = graded
    scores, errors = load_scores(course), cell_errors(course)
    table = failing_tests(scores, errors).set_index("question")
    for question, max_score in result.max_points.items():
        lost = [s for s in result.scores if result.scores[s][question] < max_score]
        assert table.loc[question, "num_failed"] == len(lost)
        assert 1 <= table.loc[question, "num_with_that_error"] <= len(lost)
    assert list(table["num_failed"]) == sorted(table["num_failed"], reverse=True)  # most failed first
    blank = errors[errors["student"] == "blank"].set_index("question")
    assert set(blank.index) == set(result.max_points)
    assert set(blank["error_type"]) == {"NotImplementedError"}
    for mutant in result.mutants:  # every test a mutant must lose shows the error that lost it
        mine = errors[errors["student"] == f"mutant-{mutant.name}"].set_index("question")
        for question in mutant.must_lose:
            assert mine.loc[question, "error_type"].endswith("Error"), (mutant.name, question)
    solution = errors[errors["student"] == "solution"]
    assert solution.empty, solution


def test_error_of_reads_error_outputs_and_printed_tracebacks():
    assert _error_of([{"output_type": "error", "ename": "AssertionError", "evalue": "too slow", "traceback": []}]) == (
        "AssertionError", "too slow")
    printed = "Traceback (most recent call last):\n  File \"x\", line 1\n\x1b[0;31mValueError\x1b[0m: bad rate\n"
    assert _error_of([{"output_type": "stream", "name": "stderr", "text": printed}]) == ("ValueError", "bad rate")
    assert _error_of([{"output_type": "stream", "name": "stdout", "text": "ValueError: not a traceback\n"}]) is None
    assert _error_of([]) is None


def test_students_at_risk_follow_the_stated_rule(graded, course_copy):
    result, _ = graded
    scores = load_scores(course_copy)
    rule = RiskRule(min_fraction=0.5)
    risk = students_at_risk(scores, labs(course_copy), students(course_copy), rule).set_index("student")
    expected = {s for s in result.scores if result.total(s) < 0.5 * result.max_total}
    assert set(risk.index) == expected and "blank" in expected
    assert "total 0% < 50%" in risk.loc["blank", "reason"]
    # A lab nobody submitted (added with nbgrader's own API) puts everyone at risk, the solution too.
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_copy.gradebook_path}", course_id="roundtrip") as gb:
        gb.add_assignment("lab9_unsubmitted")
    risk = students_at_risk(load_scores(course_copy), labs(course_copy), students(course_copy), rule)
    risk = risk.set_index("student")
    assert set(risk.index) == set(result.scores)
    assert risk.loc["solution", "missing_labs"] == "lab9_unsubmitted"
    assert risk.loc["solution", "reason"] == "1 lab(s) missing"
    assert "50%" in rule.describe()
    with pytest.raises(ValueError, match="min_fraction"):
        RiskRule(min_fraction=1.5)


def test_grading_time_per_submission_from_nbgrader_and_from_a_record(graded, course, course_copy):
    result, wall_s = graded
    times = submission_times(course).set_index("student")
    assert sorted(times.index) == sorted(result.scores)
    assert (times["grading_s"] > 0).all() and (times["num_cells_run"] > 0).all()
    assert times["grading_s"].sum() < wall_s  # the cells ran inside the round trip
    record = course_copy.gradebook_path.parent / "grading_record.csv"
    pd.DataFrame({"student": ["solution", "blank"], "lab": [result.lab] * 2, "wall_s": [12.5, 3.0],
                  "reason": ["", "timeout after 600 s"]}).to_csv(record, index=False)
    with_record = submission_times(Course(course_copy.gradebook_path)).set_index("student")
    assert with_record.loc["blank", "grading_s"] == 3.0
    assert with_record.loc["blank", "failure_reason"] == "timeout after 600 s"
    assert with_record.loc["blank", "source"] == RECORD_SOURCE
    assert with_record.loc[f"mutant-{result.mutants[0].name}", "source"] != RECORD_SOURCE  # not in the record
    record.write_text("who,when\nx,1\n")
    with pytest.raises(ValueError, match="no student column"):
        submission_times(Course(course_copy.gradebook_path))


def test_grading_time_from_the_inferlab_grade_record(graded, course_copy):
    """`inferlab grade` writes grade_runs.json beside the gradebook ({lab: {student: run}}): it wins."""
    import json

    result, _ = graded
    runs = {result.lab: {"solution": {"student": "solution", "wall_s": 41.5, "status": "ok", "reason": ""},
                         "blank": {"student": "blank", "wall_s": 7.0, "status": "timeout",
                                   "reason": "ran over 240 s"}}}
    (course_copy.gradebook_path.parent / "grade_runs.json").write_text(json.dumps(runs))
    times = submission_times(Course(course_copy.gradebook_path)).set_index("student")
    assert times.loc["solution", "grading_s"] == 41.5 and times.loc["solution", "source"] == RECORD_SOURCE
    assert times.loc["blank", "failure_reason"] == "ran over 240 s"
    assert times.loc[f"mutant-{result.mutants[0].name}", "source"] != RECORD_SOURCE


def test_mutant_table_lists_each_change_and_the_tests_it_lost(graded, course):
    result, _ = graded
    table = mutant_table(course.mutants_dir, load_scores(course), labs=[result.lab])
    assert list(table["mutant"]) == [m.name for m in result.mutants]
    for mutant, row in zip(result.mutants, table.itertuples()):
        assert (row.cell, row.old, row.new) == (mutant.cell, mutant.old, mutant.new)
        lost = set(row.lost_in_gradebook.split(", "))
        assert set(mutant.must_lose) <= lost, (mutant.name, lost)
        assert lost == {q for q, v in result.scores[f"mutant-{mutant.name}"].items() if v < result.max_points[q]}
    other = mutant_table(course.mutants_dir, load_scores(course))
    assert set(other["lab"]) > {result.lab}  # every lab with mutants, ungraded ones without results
    assert set(other.loc[other["lab"] != result.lab, "lost_in_gradebook"]) == {""}


def test_histograms_count_every_submission(graded, course):
    result, _ = graded
    scores = load_scores(course)
    for question, max_score in result.max_points.items():
        got = scores.loc[scores["question"] == question, "score"]
        counts, edges = score_histogram(got, max_score)
        assert counts.sum() == len(result.scores)
        assert counts[-1] == sum(result.scores[s][question] >= max_score for s in result.scores)
    fig = score_distributions(scores)
    assert sum(ax.axison for ax in fig.axes) == len(result.max_points)


def test_bad_course_paths_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="gradebook not found"):
        Course(tmp_path / "missing.db")
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(ValueError, match="not an SQLite gradebook"):
        Course(tmp_path / "notes.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValueError, match="not an nbgrader gradebook"):
        load_scores(Course(tmp_path / "other.db"))


def test_the_page_redraws_on_a_filter(graded, course):
    from dashboard.app import build

    result, _ = graded
    page = build(course)
    lab_pick, student_pick = page.children[1].children
    table = page.children[-1].children[1]
    assert table.value.count("<tr") == 1 + len(result.scores) * len(result.max_points)
    student_pick.value = ("solution",)
    assert table.value.count("<tr") == 1 + len(result.max_points)
    download = page.children[3].value
    assert f"({len(result.max_points)} rows)" in download
