"""Remediation backlog schema, templates, and the incident snapshots' reference diagnosis."""

import pytest

from inferlab.observe import incident, snapshots as incidents


def test_the_template_backlog_is_valid_and_problems_are_named():
    assert incident.validate_backlog(incident.template("backlog")) == []
    bad = "- item: x\n  owner_role: boss\n  priority: P9\n  linked: Foo\n  due: '2027-02-30'\n  extra: 1\n"
    problems = "\n".join(incident.validate_backlog(bad))
    for part in ("[0].item", "[0].owner_role", "[0].priority", "[0].linked", "'extra' was unexpected",
                 "[0].due: '2027-02-30' is not a calendar date"):
        assert part in problems, (part, problems)
    assert incident.validate_backlog("[]") == ["the backlog: [] should be non-empty"]
    assert incident.validate_backlog("a: [")[0].startswith("not valid YAML")
    for name in ("playbook", "postmortem"):
        assert "Incident commander" in incident.template(name) or "Root cause" in incident.template(name)


@pytest.mark.parametrize("fault", incidents.FAULTS)
def test_reference_diagnosis_finds_each_fault(fault):
    for seed in range(3):
        replica = None if fault == "burst" else seed % 3
        start = 20.0 + 50 * seed
        d = incidents.reference_diagnose(incidents.synthesize(fault, replica, start, seed=seed))
        assert (d.fault, d.replica) == (fault, replica) and abs(d.start_s - start) <= 10, (seed, d)


def test_bad_incident_arguments():
    with pytest.raises(ValueError, match="unknown fault"):
        incidents.synthesize("meteor", 0, 10.0)
    with pytest.raises(ValueError, match="a burst hits every replica"):
        incidents.synthesize("burst", 1, 10.0)
    with pytest.raises(ValueError, match="replica must be in"):
        incidents.synthesize("paused", 5, 10.0)
