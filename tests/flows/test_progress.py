"""The progress line a long run logs every 30 s: disks done and failed, jobs running and the oldest's age,
and an estimate of the end in the plan's timezone (tasks/progress.py)."""

from __future__ import annotations

import re

from tests.factories import disk
from vbs_backup.backup.submit import DiskOutcome
from vbs_backup.ledger import DiskBackupStatus
from vbs_backup.tasks import progress as progress_module
from vbs_backup.tasks.progress import RunProgress


def test_the_line_says_what_is_done_what_runs_since_when_and_when_it_should_end(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    progress = RunProgress(total=4, key="nightly-backup-progress", timezone="Europe/Paris")
    disks = [disk("db-01", f"/dev/vd{c}", f"vol-{c}") for c in "abcd"]
    assert progress.line() == "0 of 4 disks done"

    progress.submitted(disks[0])
    clock[0] += 60
    progress.submitted(disks[1])
    progress.submitted(disks[2])
    clock[0] += 120  # 3 minutes in: the first job has run 3 min
    progress.finished(DiskOutcome(disks[1], "b", DiskBackupStatus.succeeded))
    progress.finished(DiskOutcome(disks[2], "c", DiskBackupStatus.failed, error_code="VolumeBackup.0064"))

    line = progress.line()
    assert line.startswith("2 of 4 disks done, 1 failed; 1 job running, oldest 3 min; estimated end ")
    # two disks in 3 minutes: two more take about 3 more minutes
    assert re.search(r"estimated end \d\d:\d\d CES?T \(in 3 min\)$", line), line
    assert (progress.percent, progress.headline()) == (50.0, "2 of 4 disks done, 1 failed")
