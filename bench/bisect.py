"""``aigc-bench bisect GOOD BAD --cell ID``: the first commit between two refs at which a cell got slower.

asv's ``find``: the cell is measured at GOOD and at BAD (each in a git worktree of the user's repository,
after the user's install command), and the first bad commit is found by binary search over the commits on
the ancestry path from GOOD to BAD (``git rev-list --ancestry-path``, oldest first). A commit is *bad* when
its value lies on BAD's side of the geometric midpoint of GOOD's and BAD's values (a step, not a trend, is
what is sought; for a metric where higher is better the sides swap by themselves). So GOOD and BAD must
differ clearly (``MIN_CHANGE``), and a noisy metric should be measured with ``--repeat`` or as
``instructions``. A commit where the cell cannot be measured (the install failed, the cell failed) is
skipped, as ``git bisect skip`` does; when skipped commits sit just before the answer, the result says the
first bad commit is one of them or it.

The search itself (``bisect_commits``) takes any ``measure(commit) -> value | None``; ``RunMeasure`` is the
real one: worktree, install, ``aigc-bench run`` of the cell's selection with the worktree first on
``PYTHONPATH`` (so the user's modules -- or aigc-bench's own, when bisecting it -- are that commit's).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import UsageError

#: GOOD and BAD must differ by at least this much (relative) for a step to be sought
MIN_CHANGE = 0.05
#: seconds one commit's install or run may take
STEP_TIMEOUT_S = 3600.0

Measure = Callable[[str], "float | None"]


@dataclass(frozen=True)
class Probe:
    """One commit measured: its value, or None with the reason it could not be."""

    commit: str
    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class BisectResult:
    """The first bad commit, the commits searched (oldest first, BAD last) and every probe in the order taken."""

    first_bad: str
    commits: tuple[str, ...]
    probes: tuple[Probe, ...]
    good: float
    bad: float
    unsure: tuple[str, ...] = field(default=())  # skipped commits right before ``first_bad``: one may be the culprit

    @property
    def change_pct(self) -> float:
        return (self.bad / self.good - 1.0) * 100.0


# --------------------------------------------------------------------------- git


def git(repo: str | Path, *args: str) -> str:
    """``git -C repo args``' output (stripped); a failure is a ``UsageError`` with git's own line."""
    try:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UsageError("git not found: bisect needs git on PATH") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {' '.join(args[:2])}: {msg}")
    return r.stdout.strip()


def repo_root(repo: str | Path) -> Path:
    """The top folder of the git repository at ``repo``; not a repository is a ``UsageError``."""
    if not Path(repo).is_dir():
        raise UsageError(f"{repo}: no such folder")
    try:
        return Path(git(repo, "rev-parse", "--show-toplevel"))
    except UsageError:
        raise UsageError(f"{repo}: not a git repository") from None


def resolve_ref(repo: str | Path, ref: str) -> str:
    """The full commit id of ``ref``; an unknown ref is a ``UsageError``."""
    if not ref or ref.startswith("-"):
        raise UsageError(f"bad ref {ref!r}")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(f"unknown ref {ref!r} in {repo}") from None


def commits_between(repo: str | Path, good: str, bad: str) -> list[str]:
    """The commits after ``good`` up to ``bad`` on the ancestry path, oldest first (``bad`` last)."""
    try:
        git(repo, "merge-base", "--is-ancestor", good, bad)
    except UsageError:
        raise UsageError(f"{good[:12]} is not an ancestor of {bad[:12]}: give GOOD (older) first, then BAD") from None
    out = git(repo, "rev-list", "--ancestry-path", "--reverse", f"{good}..{bad}").split()
    if not out:
        raise UsageError("GOOD and BAD are the same commit: nothing to bisect")
    return out


# --------------------------------------------------------------------------- the search (pure but for measure)


def bisect_commits(good: str, commits: Sequence[str], measure: Measure, *, min_change: float = MIN_CHANGE,
                   on_probe: Callable[[Probe], None] | None = None) -> BisectResult:  # fmt: skip
    """Binary search for the first bad commit among ``commits`` (oldest first, the known bad one last)."""
    probes: list[Probe] = []

    def probe(commit: str) -> float | None:
        try:
            value = measure(commit)
            p = Probe(commit, value, None if value is not None else "not measured")
        except MeasureError as e:
            p = Probe(commit, None, str(e))
        probes.append(p)
        if on_probe is not None:
            on_probe(p)
        return p.value

    g, b = probe(good), probe(commits[-1])
    if g is None or b is None:
        which, p = ("GOOD", probes[0]) if g is None else ("BAD", probes[1])
        raise UsageError(f"the cell could not be measured at {which} ({p.commit[:12]}): {p.error}")
    if not (g > 0 and b > 0) or abs(math.log(b / g)) < math.log1p(min_change):
        raise UsageError(f"GOOD and BAD differ by {(b / g - 1) * 100 if g else math.inf:+.1f}% (less than "
                         f"{min_change:.0%}): no step to find; measure more (--repeat) or check the refs")  # fmt: skip
    mid_log = (math.log(g) + math.log(b)) / 2

    def is_bad(v: float) -> bool:
        return (math.log(v) - mid_log) * (math.log(b) - math.log(g)) > 0

    candidates = list(range(len(commits) - 1))  # indices still unknown, between the last good and first bad
    lo, hi = -1, len(commits) - 1  # commits[lo] good (-1: GOOD itself), commits[hi] bad
    skipped: set[int] = set()
    while True:
        open_ = [i for i in candidates if lo < i < hi and i not in skipped]
        if not open_:
            break
        mid = open_[len(open_) // 2]
        v = probe(commits[mid])
        if v is None:
            skipped.add(mid)
        elif is_bad(v):
            hi = mid
        else:
            lo = mid
    unsure = tuple(commits[i] for i in sorted(skipped) if lo < i < hi)
    return BisectResult(commits[hi], tuple(commits), tuple(probes), g, b, unsure)


class MeasureError(Exception):
    """A commit whose cell could not be measured (install or run failed): skipped by the search."""


# --------------------------------------------------------------------------- measuring one commit


def parse_cell(cell: str) -> dict[str, str]:
    """The run selection of a cell id (``CellKey.id``: suite/tier/family/model/device/dtype/bN/shape[/Tn]/mode[/exec])."""
    parts = cell.split("/")
    if len(parts) < 9 or not parts[6].startswith("b") or not parts[6][1:].isdigit():
        raise UsageError(f"--cell {cell!r}: expected a cell id as compare and the reports print it, "
                         "e.g. cv-backbones/tiny/resnet/resnet10t/cpu/fp32/b1/3x224x224/infer")  # fmt: skip
    rest = parts[8:]
    if rest and rest[0].startswith("T") and rest[0][1:].isdigit():
        rest = rest[1:]
    execution = rest[1] if len(rest) > 1 else "eager"
    return {"suite": parts[0], "tier": parts[1], "family": parts[2], "device": parts[4], "dtype": parts[5],
            "batch": parts[6][1:], "execution": execution}  # fmt: skip


@dataclass
class RunMeasure:
    """Measure a cell at a commit: a detached worktree, the install command, ``aigc-bench run``, the value read back."""

    repo: Path
    cell: str
    metric: str = "latency_p50_ms"
    suite: str | None = (
        None  # what ``run`` is given (a suite name or a suite file in the repository); default: the id's
    )
    profile: str | None = None
    install: str | None = None
    repeat: int = 1
    work_dir: Path | None = None
    log: Callable[[str], None] | None = None

    def __call__(self, commit: str) -> float:
        base = Path(tempfile.mkdtemp(prefix="aigc-bisect-", dir=self.work_dir))
        tree = base / "tree"
        try:
            git(self.repo, "worktree", "add", "--detach", "--force", str(tree), commit)
            if self.install:
                self._step(["sh", "-c", self.install], tree, "install")
            return self._run(tree, base / "results")
        finally:
            subprocess.run(["git", "-C", str(self.repo), "worktree", "remove", "--force", str(tree)],
                           capture_output=True, timeout=120)  # fmt: skip
            shutil.rmtree(base, ignore_errors=True)

    def _step(self, cmd: list[str], cwd: Path, what: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "AIGC_BENCH_SUITE_FILES"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)
        try:
            r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise MeasureError(f"{what} took over {STEP_TIMEOUT_S:.0f} s") from None
        if self.log is not None:
            self.log(f"{what}: exit {r.returncode}")
        if r.returncode not in (0, 3):  # 3: the run finished with failed cells (the cell's record says)
            tail = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise MeasureError(f"{what} exited {r.returncode}: {tail[0][:300]}")

    def _run(self, tree: Path, out: Path) -> float:
        from bench.numbers import finite
        from bench.result import cell_id
        from bench.store import load_runs

        sel = parse_cell(self.cell)
        cmd = [sys.executable, "-m", "bench.cli", "run", self.suite or sel["suite"], "--device", sel["device"],
               "--dtype", sel["dtype"], "--batch-size", sel["batch"], "--tier", sel["tier"], "--family",
               sel["family"], "--execution", sel["execution"], "--out", str(out), "--no-report", "--peak-budget", "0"]  # fmt: skip
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.repeat > 1:
            cmd += ["--repeat", str(self.repeat)]
        if self.metric == "instructions":
            cmd += ["--metric", "instructions"]
        self._step(cmd, tree, "run")
        records = [r for _, doc in load_runs(out) for r in doc["records"] if cell_id(r) == self.cell]
        if not records:
            raise MeasureError(f"the run has no cell {self.cell}")
        rec = records[0]
        value = finite((rec.get("metrics") or {}).get(self.metric)) if rec["status"] == "ok" else None
        if value is None:
            raise MeasureError(f"cell {rec['status']}: {rec.get('error') or f'no {self.metric}'}")
        return value


def subject(repo: str | Path, commit: str) -> str:
    """A commit's short id and subject line."""
    return git(repo, "log", "-1", "--format=%h %s", commit)
