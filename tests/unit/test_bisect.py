"""``aigc-bench bisect`` (``bench.bisect``): the first bad commit between two refs of a synthetic repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import bisect as bis
from bench.cli import main
from bench.errors import UsageError

TOY_MODEL = '''import time

import torch

SLOW = {slow}


class Toy(torch.nn.Module):
    """A tiny model whose forward spins SLOW x 2 ms: commit by commit, the test makes it 3x slower."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        until = time.perf_counter() + 0.002 * SLOW
        y = self.lin(x)
        while time.perf_counter() < until:
            pass
        return y


def build():
    return Toy()
'''

TOY_SUITE = """from bench.registry import register_suite
from bench.spec import Profile, Suite, Tier, VariantSpec


@register_suite("bisect-toy")
def toy():
    prof = Profile(name="quick", batch_sizes=(1,), metrics=("latency",), warmup_s=0.05, min_run_time_s=0.2)
    tier = Tier(name="t", target_params=36, tolerance=1.0, input_shape=(8,),
                variants=(VariantSpec(family="toy", builder="toymodel:build", name="toy"),))
    return Suite(name="bisect-toy", description="bisect test", input_kind="image", tiers=(tier,), profiles=(prof,),
                 default_profile="quick")
"""
CELL = "bisect-toy/t/toy/toy/cpu/fp32/b1/8/infer"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, slow: list[int]) -> list[str]:
    """A repository with one commit per entry of ``slow`` (the model's SLOW at that commit); the commit ids."""
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "t@example.com")
    _git(root, "config", "user.name", "t")
    (root / "bench_suite.py").write_text(TOY_SUITE)
    shas = []
    for i, s in enumerate(slow):
        (root / "toymodel.py").write_text(TOY_MODEL.format(slow=s))
        (root / "cost.txt").write_text(f"{10.0 * s + 0.01 * i}\n")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"commit {i}")
        shas.append(_git(root, "rev-parse", "HEAD"))
    return shas


@pytest.mark.parametrize("bad_at", [1, 4, 9])
def test_binary_search_names_the_first_bad_commit(tmp_path: Path, bad_at: int) -> None:
    slow = [1] * bad_at + [3] * (10 - bad_at)
    shas = make_repo(tmp_path / "repo", slow)
    repo = tmp_path / "repo"
    seen: list[str] = []

    def measure(commit: str) -> float:
        seen.append(commit)
        return float(_git(repo, "show", f"{commit}:cost.txt"))

    commits = bis.commits_between(repo, shas[0], shas[-1])
    assert commits == shas[1:]
    result = bis.bisect_commits(shas[0], commits, measure)
    assert result.first_bad == shas[bad_at] and result.change_pct == pytest.approx(200, abs=1)
    assert len(seen) <= 2 + 4  # GOOD, BAD and log2(9) probes


def test_a_commit_that_cannot_be_measured_is_skipped(tmp_path: Path) -> None:
    shas = make_repo(tmp_path / "repo", [1, 1, 1, 3, 3, 3])
    values = dict(zip(shas, [10, 10, 10, 30, 30, 30], strict=True))

    def measure(commit: str) -> float:
        if commit == shas[2]:
            raise bis.MeasureError("install failed")
        return values[commit]

    result = bis.bisect_commits(shas[0], shas[1:], measure)
    assert result.first_bad == shas[3]
    assert any(p.error == "install failed" for p in result.probes)


def test_worktrees_and_the_install_command_see_each_commit(tmp_path: Path, monkeypatch) -> None:
    """RunMeasure checks each commit out in its own worktree and runs --install there; removed after."""
    shas = make_repo(tmp_path / "repo", [1, 1, 3])
    repo = tmp_path / "repo"

    def read_cost(self, tree: Path, out: Path) -> float:
        assert (tree / "installed").read_text().strip() == "yes"
        return float((tree / "cost.txt").read_text())

    monkeypatch.setattr(bis.RunMeasure, "_run", read_cost)
    m = bis.RunMeasure(repo, CELL, install="echo yes > installed", work_dir=tmp_path)
    result = bis.bisect_commits(shas[0], shas[1:], m)
    assert result.first_bad == shas[2]
    assert "installed" not in _git(repo, "status", "--porcelain")  # the user's checkout is untouched
    assert _git(repo, "worktree", "list").count("\n") == 0  # every worktree removed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bisect", "HEAD~1", "HEAD", "--cell", CELL, "--repo", "NOTGIT"], "not a git repository"),
        (["bisect", "nope", "HEAD", "--cell", CELL, "--repo", "REPO"], "unknown ref 'nope'"),
        (["bisect", "HEAD", "HEAD~1", "--cell", CELL, "--repo", "REPO"], "is not an ancestor of"),
        (["bisect", "HEAD~1", "HEAD", "--cell", "resnet", "--repo", "REPO"], "expected a cell id"),
        (["bisect", "HEAD~1", "HEAD", "--cell", CELL, "--repo", "MISSING"], "no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    make_repo(tmp_path / "repo", [1, 3])
    (tmp_path / "plain").mkdir()
    where = {"REPO": str(tmp_path / "repo"), "NOTGIT": str(tmp_path / "plain"), "MISSING": str(tmp_path / "x")}
    assert main([where.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_good_and_bad_alike_is_refused() -> None:
    with pytest.raises(UsageError, match="no step to find"):
        bis.bisect_commits("g", ["a", "b"], lambda c: 10.0)


@pytest.mark.slow
def test_bisect_runs_the_cell_at_each_commit_and_names_the_3x_slower_one(tmp_path: Path, capsys) -> None:
    """End to end: a suite file in the repository, ``aigc-bench run`` in each worktree, 3x slower from commit 3."""
    from bench import registry

    if not hasattr(registry, "load_suite_file"):
        pytest.skip("this aigc-bench cannot run a suite file (aigc-bench run path/to/suite.py)")
    shas = make_repo(tmp_path / "repo", [1] * 3 + [3] * 2)
    code = main(["bisect", shas[0], shas[-1], "--cell", CELL, "--repo", str(tmp_path / "repo"),
                 "--suite", "bench_suite.py"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"full id: {shas[3]}" in out and "commit 3" in out
