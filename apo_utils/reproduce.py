"""Run the notebooks in order with papermill: `python -m apo_utils.reproduce --profile smoke`.

Each notebook is executed with the same `profile`, `seed` and `output_dir` parameters; the executed
copy lands in `<output-dir>/executed/`. The run stops at the first notebook that fails and says which
one, which cell and why. It resumes: a notebook that already finished with the same profile, seed, notebook
content and package code is skipped, and inside a notebook the expensive steps are cached. `--force` re-runs every
notebook and recomputes every cached step made before it started (`storage.RECOMPUTE_SINCE`).
The summary notebook (`06_summary`) always runs last, so the table reflects every record. What each notebook's cells
printed is kept beside the record it wrote (`cell_outputs`), for the book to show.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from . import cell_outputs, code_version, profiles
from .records import RUN_ID, UPDATE_REFERENCE, figures_root
from .storage import RECOMPUTE_SINCE, atomic_write_json, read_json_or_none, repo_root

ALWAYS = ("06_summary",)  # cheap, and must see the records the other notebooks just wrote


def notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered study notebooks, in order."""
    return sorted(Path(folder or repo_root() / "notebooks").glob("[0-9][0-9]*_*.ipynb"))  # 02b, a companion, right after 02


def _matches(value: str, nb: Path) -> bool:
    """`value` names `nb`: its two-digit number ('02', which also names its companion 02b) or the start of its name
    ('02_madpo' names 02 alone); `select` refuses single digits, which would name a whole range."""
    return nb.stem.startswith(value)


def select(only: list[str] | None, available: list[Path]) -> list[Path]:
    """The notebooks `--only` names, in order, then the summary (ALWAYS), which must see their records.

    None selects every notebook. An empty list, an empty or single-digit value ('0' starts every name) and a value
    that names no notebook are errors that list the notebooks: each would otherwise run all of them, hours on
    `cpu`, or quietly skip one."""
    if only is None:
        return list(available)
    have = ", ".join(nb.stem for nb in available)
    if not only:
        raise SystemExit(f"--only needs at least one notebook, e.g. --only 00; have: {have}")
    for value in only:
        if len(value) < 2 or not value.strip():
            raise SystemExit(f"--only {value!r} is ambiguous: give a notebook's two-digit number (e.g. 00) or the "
                             f"start of its name; have: {have}")
        if not any(_matches(value, nb) for nb in available):
            raise SystemExit(f"no notebook matches --only {value}; have: {have}")
    chosen = [nb for nb in available if any(_matches(v, nb) for v in only) and nb.stem not in ALWAYS]
    return chosen + [nb for nb in available if nb.stem in ALWAYS]


def _finished_key(nb: Path, profile: str, seed: int) -> dict:
    """What a finished run stands for: the notebook, the package code it reaches, the profiles' settings, the profile
    and the seed. An edit to any of them runs the notebook again (its expensive steps stay cached unless the edit
    reaches them), so the record it writes is never older than the code, as `summary --stale` would report."""
    code = {m: code_version.fingerprint(m) for m in sorted(code_version.notebook_imports(nb))}
    # the profiles' settings too: fingerprints leave profiles.py out (a record judges those by its settings)
    settings = hashlib.sha256((code_version.PACKAGE_DIR / "profiles.py").read_bytes()).hexdigest()
    return {"notebook_sha256": hashlib.sha256(nb.read_bytes()).hexdigest(), "code": code, "settings": settings,
            "profile": profile, "seed": seed}


def run(profile: str = "auto", seed: int = 0, output_dir: str | Path = "outputs", only: list[str] | None = None,
        kernel: str = "python3", log=print, notebooks_dir: Path | None = None, force: bool = False) -> list[Path]:
    profile = profiles.resolve(profile)
    root = repo_root()
    out = Path(output_dir)
    out = out if out.is_absolute() else root / out
    todo = select(only, notebooks(notebooks_dir))
    before = os.environ.get(RECOMPUTE_SINCE)
    if force:  # the kernels inherit it: a cache entry written before this run started is not trusted
        os.environ[RECOMPUTE_SINCE] = str(time.time())
    try:
        return _run_each(todo, profile, seed, out, root, kernel, log, force)
    finally:
        os.environ.pop(RECOMPUTE_SINCE, None)
        if before is not None:
            os.environ[RECOMPUTE_SINCE] = before


def _run_each(todo: list[Path], profile: str, seed: int, out: Path, root: Path, kernel: str, log, force: bool):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    done = []
    for i, nb in enumerate(todo, 1):
        target = out / "executed" / profile / nb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        marker = target.with_suffix(".finished.json")
        key = _finished_key(nb, profile, seed)
        # replacing the committed reference is deliberate: it always runs (its cached steps keep it cheap), since a
        # run finished earlier wrote its figures and record beside the reference, or from other uncommitted code
        refresh = os.environ.get(UPDATE_REFERENCE) == "1"
        finished = None if force or refresh or nb.stem in ALWAYS else read_json_or_none(marker)
        if finished is not None and finished.get("key") == key:
            log(f"[{i}/{len(todo)}] {nb.stem}: finished before ({finished.get('finished')}), skipped; "
                "--force re-runs it")
            done.append(target)
            continue
        log(f"[{i}/{len(todo)}] {nb.stem} (profile={profile}) ...")
        t = time.perf_counter()
        record_dir = figures_root(nb.stem, profile) / nb.stem / profile  # where the notebook will write its record
        (record_dir / cell_outputs.FILE).unlink(missing_ok=True)  # an earlier run's, which a failed run would leave
        os.environ[RUN_ID] = run_id = uuid.uuid4().hex  # the kernel inherits it; the record it writes names it
        try:
            pm.execute_notebook(
                str(nb), str(target), parameters={"profile": profile, "seed": seed, "output_dir": str(out)},
                cwd=str(root), kernel_name=kernel, progress_bar=False, log_output=False,
            )
        except PapermillExecutionError as e:
            os.environ.pop(RUN_ID, None)
            raise SystemExit(
                f"\nFAILED: {nb.name}, cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                f"The executed copy with the traceback is {target}.\n"
                f"Notebooks after it were not run."
            ) from None
        took = time.perf_counter() - t
        os.environ.pop(RUN_ID, None)
        _keep_outputs(target, record_dir, run_id, root, log)
        atomic_write_json(marker, {"key": key, "seconds": round(took, 1),
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        log(f"    done in {took:.0f} s -> {target.relative_to(root) if target.is_relative_to(root) else target}")
        done.append(target)
    return done


def _keep_outputs(executed: Path, record_dir: Path, run_id: str, root: Path, log) -> None:
    """What the notebook printed, beside the record it wrote in this run (not one an earlier run left there)."""
    record = read_json_or_none(record_dir / "run_record.json")
    if isinstance(record, dict) and record.get("run_id") == run_id:
        path = cell_outputs.save(json.loads(executed.read_text()), record_dir, root)
        log(f"    its printed tables and text -> {path.relative_to(root) if path.is_relative_to(root) else path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="outputs", help="where executed notebooks and caches go")
    p.add_argument("--only", nargs="*", help="run only these notebooks, by two-digit number or the start of the name "
                   "(e.g. 00 01); the summary, 06, still runs last")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--force", action="store_true", help="re-run every notebook and recompute every cached step")
    p.add_argument("--update-reference", action="store_true",
                   help="write figures and run records over the committed reference in figures/ (default: a run "
                        "whose reference exists writes to outputs/figures/ and is shown beside it)")
    a = p.parse_args(argv)
    if a.update_reference:  # the notebooks' kernels inherit it (records.figures_root)
        os.environ[UPDATE_REFERENCE] = "1"
    try:
        profile = profiles.resolve(a.profile)
    except ValueError as e:
        p.error(str(e))
    run(profile, a.seed, a.output_dir, a.only, a.kernel, force=a.force)
    print("all notebooks ran.")


if __name__ == "__main__":
    sys.exit(main())
