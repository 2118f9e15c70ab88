"""`maillage node run` refuses timings its parts cannot run with in one line, before it opens
anything (a suspicion longer than the mark-out grace used to end in a ValueError traceback)."""

from __future__ import annotations

import pytest

from maillage.cli.main import main


@pytest.mark.parametrize(("flags", "says"), [
    (("--suspect-after", "400"), "--down-after (300 s) must be at least --suspect-after (400 s)"),
    (("--suspect-after", "10", "--down-after", "5"), "--down-after (5 s) must be at least --suspect-after"),
    (("--heartbeat-interval", "0"), "--heartbeat-interval must be positive, not 0"),
    (("--repair-interval", "-1"), "--repair-interval must be positive, not -1"),
    (("--gc-interval", "nan"), "--gc-interval must be positive, not nan"),
    (("--upload-budget", "0"), "--upload-budget must be positive, not 0"),
    (("--lifecycle-interval", "0"), "--lifecycle-interval must be positive, not 0"),
    (("--grpc-idle-timeout", "-2"), "--grpc-idle-timeout must be positive, not -2"),
])
def test_a_timing_the_node_cannot_run_with_is_one_line_and_nothing_is_made(tmp_path, capsys, flags, says):
    base = ["node", "run", "--id", "n1", "--data-dir", str(tmp_path / "data"), "--trust-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main([*base, *flags])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()
