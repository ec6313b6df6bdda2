"""Run records: what produced a committed figure or number.

A study writes `figures/<study>/<profile>/run_record.json` with its metrics per method and seed, the
profile, the device, the git commit, the wall time of each step, the package versions and the
figures made from it. The summary notebook and the README table read these files, never typed numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from .storage import atomic_write_json, read_json_or_none, repo_root, reuse_codes, reuse_counts, reuse_mark

PACKAGES = ["torch", "transformers", "trl", "datasets", "accelerate", "peft", "numpy", "matplotlib",
            "vaderSentiment", "papermill"]


def package_versions() -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    except Exception:  # noqa: BLE001 - a record must still be written without torch
        pass
    cpu = platform.processor() or platform.machine()
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = None
    parts = [f"cpu: {cpu}", *processor_details(), *([f"{n} cores"] if n else [])]
    return ", ".join(parts)


BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the flags env.cpu_has_bf16 reads (tests/test_records.py checks the copy)


def processor_details(cpuinfo: str | None = None) -> list[str]:
    """The processor's name and whether it multiplies bfloat16 natively, from /proc/cpuinfo (Linux; else nothing).

    Two "2-core x86_64" machines are not alike: the same data notebook took 20 minutes on one and 43 on another,
    and the `cpu` profile samples and trains in bfloat16 only where the processor has bf16 units (`env.cpu_has_bf16`),
    which changes the numbers in their last digits. A record names both, so its times and digits can be placed."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                 if line.lower().startswith("model name") and ":" in line), "")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.lower().startswith("flags") and ":" in line), []))
    units = [f for f in BF16_FLAGS if f in flags]
    bf16 = f"bf16 units: {' and '.join(units)}" if units else "no bf16 units"
    return ([name] if name else []) + ([bf16] if flags else [])


def git_commit(root: Path | None = None) -> dict[str, str | bool | None]:
    """HEAD and whether the code the results depend on differs from it.

    A copy of the tree without .git (a remote GPU machine) can pass both in $APO_GIT_COMMIT and
    $APO_GIT_DIRTY; the record then says where they came from.
    """
    root = root or repo_root()
    if os.environ.get("APO_GIT_COMMIT") and not (root / ".git").exists():
        return {"commit": os.environ["APO_GIT_COMMIT"], "dirty": os.environ.get("APO_GIT_DIRTY", "") == "1",
                "from": "environment (tree copied without .git)"}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "apo_utils", "notebooks", "pyproject.toml"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip() != ""
        return {"commit": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


UPDATE_REFERENCE = "APO_UPDATE_REFERENCE"  # =1: a run replaces the committed reference (reproduce --update-reference)
RUN_ID = "APO_RUN_ID"  # set by reproduce for each notebook it runs: the record names it, so its printout can follow


def figures_root(study: str, profile: str) -> Path:
    """Where a run writes its figures and record. The committed reference (`figures/`) is replaced only on purpose
    ($APO_UPDATE_REFERENCE=1), for `smoke` (never committed), or where no reference exists yet; a learner's run
    otherwise goes to `outputs/figures/`, beside it, and is shown against it (`RunRecord.beside_reference`)."""
    committed = repo_root() / "figures"
    if (profile == "smoke" or os.environ.get(UPDATE_REFERENCE) == "1"
            or not (committed / study / profile / "run_record.json").exists()):
        return committed
    return repo_root() / "outputs" / "figures"


def time_from_nothing(record: dict) -> float | None:
    """What the record's notebook costs from nothing, as far as the record can tell: its `full_run_s`, never less
    than its own wall time, since a run that took some steps from a cache still took that long (and a `full_run_s`
    carried over from a run of other settings may be shorter)."""
    times = [t for t in (record.get("full_run_s"), (record.get("wall_time_s") or {}).get("total"))
             if isinstance(t, (int, float))]
    return max(times) if times else None


class RunRecord:
    """Collects a study's provenance and results; `save()` writes it atomically next to the figures."""

    def __init__(self, study: str, profile: str, seeds, settings: dict | None = None, figures_dir=None):
        self.study, self.profile = study, profile
        self.dir = Path(figures_dir or figures_root(study, profile)) / study / profile
        self.reference = repo_root() / "figures" / study / profile / "run_record.json"
        self.beside = figures_dir is None and self.reference.parent != self.dir  # a learner's run, not the reference
        if self.beside:
            print(f"a reference run of this notebook is committed in {self.reference.parent.relative_to(repo_root())}; "
                  f"this run writes to {self.dir.relative_to(repo_root())} and is shown beside it "
                  f"(to replace the reference: {UPDATE_REFERENCE}=1, or reproduce --update-reference)")
        self.t0 = time.perf_counter()
        self.reused_at_start, self.reuse_mark = reuse_counts(), reuse_mark()
        self.data = {
            "study": study,
            "profile": profile,
            "seeds": list(seeds),
            "settings": settings or {},
            "device": device_description(),
            "git": git_commit(),
            "packages": package_versions(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv[:1]),
            "wall_time_s": {},
            "provenance": {},
            "metrics": {},
            "figures": [],
            **({"run_id": os.environ[RUN_ID]} if os.environ.get(RUN_ID) else {}),
        }

    @contextmanager
    def step(self, name: str):
        """Time one step of the study: `with record.step('train'): ...`."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.data["wall_time_s"][name] = round(self.data["wall_time_s"].get(name, 0.0) + time.perf_counter() - t, 3)

    def add_figure(self, path):
        rel = Path(path).resolve().relative_to(repo_root()) if Path(path).is_absolute() else Path(path)
        if str(rel) not in self.data["figures"]:
            self.data["figures"].append(str(rel))

    @property
    def metrics(self) -> dict:
        return self.data["metrics"]

    def save(self) -> Path:
        """Write the record. `full_run_s` is the wall time of the last run that computed everything: this one if it
        took nothing from a cache (`reused` is empty), else what the previous record knew (`time_from_nothing`: its
        full_run_s, or its own wall time where longer), with its commit, as long as that record ran with the same
        settings (a run at other settings, a pair count say, costs otherwise: then it is unknown, and
        `time_from_nothing` falls back on this run's own wall time, a lower bound)."""
        total = round(time.perf_counter() - self.t0, 3)
        self.data["wall_time_s"]["total"] = total
        self.data["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        now = reuse_counts()
        reused = {k: v - self.reused_at_start.get(k, 0) for k, v in now.items() if v > self.reused_at_start.get(k, 0)}
        self.data["reused"] = reused
        self.data["reused_code"] = reuse_codes(self.reuse_mark)  # what made them: code_version fingerprints
        if not reused:
            self.data["full_run_s"], self.data["full_run_commit"] = total, self.data["git"].get("commit")
        else:
            before = read_json_or_none(self.dir / "run_record.json") or {}
            same = before.get("settings") == json.loads(json.dumps(self.data["settings"]))  # tuples read back as lists
            carried = time_from_nothing(before) if same else None
            if carried is None:
                commit = None
            elif carried == before.get("full_run_s"):
                commit = before.get("full_run_commit")
            else:  # the previous run's own wall time was the longer: its commit
                commit = (before.get("git") or {}).get("commit")
            self.data["full_run_s"], self.data["full_run_commit"] = carried, commit
        path = atomic_write_json(self.dir / "run_record.json", self.data)
        if self.beside:
            print(self.beside_reference())
        return path

    def beside_reference(self) -> str:
        """This run's comparisons next to the committed reference's, matched by what they compare (a learner sees
        whether their run agrees, without overwriting the reference)."""
        ref = read_json_or_none(self.reference) or {}
        key = lambda c: (c.get("setting"), c.get("metric"), c.get("method"), c.get("baseline"), c.get("kl"),  # noqa: E731
                         c.get("note"))
        theirs = {key(c): c for c in (ref.get("metrics") or {}).get("comparisons", [])}
        lines = [f"your run beside the committed reference ({self.reference.relative_to(repo_root())}):"]
        for c in self.metrics.get("comparisons", []):
            r = theirs.get(key(c))
            at = f" at KL {c['kl']:.2f}" if isinstance(c.get("kl"), (int, float)) else ""
            mine = f"{c['diff']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
            other = (f"{r['diff']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]" if r else "not in the reference")
            lines.append(f"  {c['setting']}: {c['method']} − {c['baseline']} in {c['metric']}{at}: yours {mine}, "
                         f"reference {other}")
        if len(lines) == 1:
            lines.append(f"  (no paired comparisons; compare the figures in {self.dir.relative_to(repo_root())} with "
                         f"{self.reference.parent.relative_to(repo_root())})")
        return "\n".join(lines)
