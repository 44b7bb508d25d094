"""Results frames for the report: one builder, the latest record of each cell, orders and slices.

Every report path builds its frame with :func:`frame_from_runs` (run files) or :func:`frame_from_records`
(the run command's in-memory records); both are ``bench.store.results_frame``, so the report sees the
frame ``load_results`` returns. :func:`prepare` then keeps the latest record of each cell and adds the
helper columns the tables and figures sort by.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report.formatting import opt_int
from bench.result import KEY_FIELDS, Status, key_of_row

if TYPE_CHECKING:
    import pandas as pd

    from bench.spec import Suite

#: the fields that identify one cell (``bench.spec.CellKey``; ``bench.result.KEY_FIELDS``)
KEY = KEY_FIELDS

DEVICE_ORDER = {"cpu": 0, "cuda": 1}
#: reference family of suites this process does not know (old files, suites from elsewhere): vision, sequence
_FALLBACK_REFERENCE = ("resnet", "lstm")


def frame_from_runs(runs: Iterable[tuple[Path | str | None, Mapping[str, Any]]]) -> pd.DataFrame:
    """Validated run documents (with their paths) as one ``load_results``-shaped frame, one row per record.

    ``host`` is the host that measured each cell: its record's ``host_env`` (a Ray run), else its run's.
    """
    from bench.store import results_frame

    runs = list(runs)
    frame = results_frame(runs)
    if "host" in frame and any(isinstance(r.get("host_env"), Mapping) for _, d in runs for r in d["records"]):
        frame["host"] = [_record_host(r, d) for _, d in runs for r in d["records"]]  # rows follow record order
    return frame


def _record_host(rec: Mapping[str, Any], doc: Mapping[str, Any]) -> str | None:
    from bench.env import measured_on

    host = measured_on(rec, doc).get("host")
    return host if isinstance(host, str) and host else None


def hosts_of(frame: pd.DataFrame) -> list[str]:
    """The hosts that measured the frame's cells, in order of appearance (one for any run without Ray)."""
    if "host" not in frame or frame.empty:
        return []
    return [str(h) for h in dict.fromkeys(frame["host"]) if isinstance(h, str) and h]


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A ``load_results``-shaped frame from in-memory records (the run command's summary)."""
    doc = {"run_id": "", "profile": "", "suite_hash": "", "env": {}, "records": list(records)}
    return frame_from_runs([(None, doc)])


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest record of each cell, in a deterministic order, with helper columns.

    Run ids start with the run's UTC start time, so sorting by them puts later runs last; when
    several runs measured the same cell (a rerun, an overlapping shard) the latest one is shown.
    Adds ``_cell`` (the cell id, ``CellKey.id``), ``_T`` (seq_len as int or None), ``_tier_rank`` and ``_family_rank``
    (order of first appearance, i.e. the suite's order).
    """
    import pandas as pd

    df = frame.copy()
    if df.empty:
        for c in ("_cell", "_T", "_tier_rank", "_family_rank"):
            df[c] = pd.Series(dtype=object)
        return df
    df["run_id"] = df["run_id"].fillna("").astype(str) if "run_id" in df else ""
    df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    df["_T"] = pd.Series([opt_int(v) for v in df["seq_len"]], index=df.index, dtype=object)
    df["_cell"] = [key_of_row(dict(zip(KEY, k, strict=True))).id for k in zip(*(df[c] for c in KEY), strict=True)]
    df = df.drop_duplicates("_cell", keep="last").reset_index(drop=True)
    tier_rank: dict[tuple[str, str], int] = {}
    fam_rank: dict[tuple[str, str], int] = {}
    for s, t, f in zip(df.suite, df.tier, df.family, strict=True):
        tier_rank.setdefault((s, t), len(tier_rank))
        fam_rank.setdefault((s, f), len(fam_rank))
    df["_tier_rank"] = [tier_rank[(s, t)] for s, t in zip(df.suite, df.tier, strict=True)]
    df["_family_rank"] = [fam_rank[(s, f)] for s, f in zip(df.suite, df.family, strict=True)]
    return df


def is_seq(frame: pd.DataFrame) -> bool:
    """Whether the frame holds sequence-suite cells (a sequence length in the key)."""
    return bool(len(frame)) and any(opt_int(v) is not None for v in frame["seq_len"])


def declared_suite(name: str) -> Suite | None:
    """The suite registered under ``name`` in this process (``bench.registry``), or None for an unknown name."""
    from bench.registry import SUITES, get_suite

    return get_suite(name) if name in SUITES else None


def default_reference(frame: pd.DataFrame) -> str | None:
    """The family one suite's ratio columns compare against, when it is present in ``frame``.

    The suite's ``Suite.reference_family`` when the suite is registered here; for an ad-hoc run
    (``run --model A --model B``) the first model's family, as the run set it; for another suite this
    process does not know, resnet in vision suites and lstm in sequence suites.
    """
    from bench.adhoc import ADHOC_SUITE

    suite = declared_suite(str(frame["suite"].iloc[0])) if len(frame) else None
    if suite is not None:
        name = suite.reference_family
    elif str(frame["suite"].iloc[0]) == ADHOC_SUITE:  # built per run, never registered: its first model, as run sets
        name = str(frame["family"].iloc[0])
    else:
        name = _FALLBACK_REFERENCE[1] if is_seq(frame) else _FALLBACK_REFERENCE[0]
    return name if name in set(frame["family"]) else None


def devices_of(frame: pd.DataFrame) -> list[str]:
    """Devices in display order: cpu, cuda, then any other alphabetically."""
    return sorted(set(frame["device"]), key=lambda d: (DEVICE_ORDER.get(d, 9), d))


def scaling_slice(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells a scaling fit uses: ok, inference (if any), eager (if any), the first dtype, the smallest batch."""
    df = frame[frame["status"] == Status.OK.value]
    if df.empty:
        return df
    if (df["mode"] == "infer").any():
        df = df[df["mode"] == "infer"]
    if "execution" in df:  # one execution: eager when measured (bench.execution.one_execution)
        ex = "eager" if (df["execution"] == "eager").any() else df["execution"].iloc[0]
        df = df[df["execution"] == ex]
    dtype = "fp32" if (df["dtype"] == "fp32").any() else df["dtype"].iloc[0]
    df = df[df["dtype"] == dtype]
    return df[df["batch_size"] == df["batch_size"].min()]
