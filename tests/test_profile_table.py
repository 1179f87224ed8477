"""Profile tables: atomic round trip with settings, validation and alignment to a task table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bots_cli.errors import UserError
from bots_cli.references.table import (
    align_pass_rates,
    pass_rate_summary,
    profile_path,
    read_profile,
    write_profile,
)


def frame(ids: list[str], successes: list[float], n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"task_id": ids, "model": "weak", "n": n, "successes": successes,
                         "pass_rate": np.asarray(successes, dtype=float) / n})


def test_round_trip_keeps_rows_and_settings(tmp_path: Path) -> None:
    path = profile_path(tmp_path, "arith", "tiny-weak")
    assert path == tmp_path / "arith" / "tiny-weak.parquet"
    settings = {"temperature": 1.0, "n": 4, "seed": 0}
    write_profile(path, frame(["a", "b"], [1, 4]), settings)
    got, got_settings = read_profile(path)
    assert got["task_id"].tolist() == ["a", "b"] and got["pass_rate"].tolist() == [0.25, 1.0]
    assert got_settings == settings
    assert [p.name for p in path.parent.iterdir()] == ["tiny-weak.parquet"]  # no temp left


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("not parquet"), "not a readable parquet file"),
        (lambda p: frame(["a"], [1]).drop(columns="n").to_parquet(p), "lacks the columns n"),
        (lambda p: frame(["a"], [5]).to_parquet(p), r"outside \[0, 1\]"),
        (lambda p: frame(["a", "a"], [1, 2]).to_parquet(p), "lists a task twice"),
        # pass_rate looks fine, but the counts are impossible
        (lambda p: frame(["a", "b"], [1, 2]).assign(successes=[1, 6]).to_parquet(p),
         r"task 'b' has 6 successes out of n = 4 rollouts; every row needs 0 ≤ successes ≤ n "
         r"and n ≥ 1 \(1 rows do not\)"),
        (lambda p: frame(["a"], [1]).assign(successes=[-1.5]).to_parquet(p),
         "has -1.5 successes out of n = 4"),
        (lambda p: frame(["a"], [0]).assign(n=[0]).to_parquet(p), "out of n = 0 rollouts"),
    ],
)
def test_bad_profiles_give_one_line(tmp_path: Path, setup, match) -> None:
    path = tmp_path / "p.parquet"
    setup(path)
    with pytest.raises(UserError, match=match) as info:
        read_profile(path)
    assert "\n" not in str(info.value)


def test_alignment_follows_the_task_table_order() -> None:
    rates = align_pass_rates(pd.Series(["c", "a"]), frame(["a", "b", "c"], [1, 2, 3]),
                             "profile", "bots profile-refs domain=arith")
    np.testing.assert_allclose(rates, [0.75, 0.25])


def test_alignment_names_how_many_tasks_are_missing() -> None:
    with pytest.raises(UserError, match=r"covers 1 of 3 tasks: 2 tasks are missing \(e.g. 'x'\); "
                                        r"run `bots profile-refs domain=arith`"):
        align_pass_rates(pd.Series(["a", "x", "y"]), frame(["a"], [1]), "profile",
                         "bots profile-refs domain=arith")


def test_summary_of_the_pass_rate_distribution() -> None:
    summary = pass_rate_summary(np.array([0.0, 0.5, 1.0, 0.25]), levels=np.array([1, 1, 2, 2]))
    assert summary["share_zero"] == 0.25 and summary["share_between"] == 0.5
    assert summary["share_one"] == 0.25
    assert summary["mean_by_level"] == {1: 0.25, 2: 0.625}


def test_reference_pass_rates_from_columns_or_profiles(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from bots_cli.references.pass_rates import reference_pass_rates

    refs = OmegaConf.create({"weak": {"name": "w"}, "strong": {"name": "s"}})
    tasks = pd.DataFrame({"task_id": ["a", "b"]})
    with pytest.raises(UserError, match=r"the weak reference has no profile for domain arith .*"
                                        r"run `bots profile-refs domain=arith` first"):
        reference_pass_rates(tasks, "arith", refs, tmp_path)
    write_profile(profile_path(tmp_path, "arith", "w"), frame(["b", "a", "z"], [1, 2, 3]), {})
    write_profile(profile_path(tmp_path, "arith", "s"), frame(["a"], [4]), {})
    with pytest.raises(UserError, match=r"the strong profile .* covers 1 of 2 tasks: 1 tasks are "
                                        "missing"):
        reference_pass_rates(tasks, "arith", refs, tmp_path)
    write_profile(profile_path(tmp_path, "arith", "s"), frame(["a", "b"], [4, 3]), {})
    weak, strong = reference_pass_rates(tasks, "arith", refs, tmp_path)
    np.testing.assert_allclose(weak, [0.5, 0.25])
    np.testing.assert_allclose(strong, [1.0, 0.75])
    with_columns = tasks.assign(weak_pass_rate=[0.1, 0.2], strong_pass_rate=[0.3, 0.4])
    weak, strong = reference_pass_rates(with_columns, "arith", refs, tmp_path / "none")
    np.testing.assert_allclose(weak, [0.1, 0.2])
