from __future__ import annotations

from pref_assets.clients.runner import _Progress


def test_before_the_first_answer_the_line_says_it_waits_instead_of_an_infinite_eta() -> None:
    progress = _Progress(16, None, 15.0, 60.0)
    assert progress.line().startswith("0/16 calls done, waiting ") and "inf" not in progress.line()
    progress.done = 4
    assert "4/16 calls done" in progress.line() and "ETA" in progress.line()
