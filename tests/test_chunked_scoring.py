"""The resumable chunk loop that `bots evaluate` and `bots profile-refs` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots_cli.errors import UserError
from bots_cli.evaluation.scoring import resume_table, score_in_chunks
from bots_cli.seeds import derive_seed


def test_chunks_are_fixed_slices_with_their_own_seed(capsys, tmp_path: Path) -> None:
    calls: list[tuple[list[int], int]] = []
    saved: list[object] = []
    pending = [False, False, True, True, False, True, False]  # chunk 0 done, then 2 3 and 5 pending
    score_in_chunks("t", pending, 2, 7, lambda idx, seed: calls.append((idx, seed)) or idx,
                    saved.append, tmp_path / "x.parquet")
    assert calls == [([2, 3], derive_seed(7, 1)), ([5], derive_seed(7, 2))]
    assert saved == [[2, 3], [5]]  # every chunk is saved before the next one is scored
    err = capsys.readouterr().err
    assert "t: resuming " in err and "4 of 7 tasks already done" in err


def test_an_interruption_says_what_is_saved(capsys, tmp_path: Path) -> None:
    def score(idx: list[int], seed: int) -> list[int]:
        if idx[0] >= 4:
            raise KeyboardInterrupt
        return idx

    with pytest.raises(KeyboardInterrupt):
        score_in_chunks("t", [True] * 6, 2, 0, score, lambda rows: None, tmp_path / "x")
    err = capsys.readouterr().err
    assert "interrupted; 4 of 6 tasks are saved in" in err and "run the same command" in err


def test_resume_table_refuses_other_settings_unless_overwriting(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_text("x")
    read = lambda p: (["row"], {"n": 2, "seed": 0})  # noqa: E731
    assert resume_table(path, {"n": 2, "seed": 0}, read, [], "k.overwrite", False) == ["row"]
    assert resume_table(path, {"n": 4, "seed": 0}, read, [], "k.overwrite", True) == []
    with pytest.raises(UserError, match=r"was made with other settings \(n: 2 there, 4 now\); "
                                        r"set k.overwrite=true"):
        resume_table(path, {"n": 4, "seed": 0}, read, [], "k.overwrite", False)
    assert resume_table(tmp_path / "none", {"n": 4}, read, [], "k.overwrite", False) == []
