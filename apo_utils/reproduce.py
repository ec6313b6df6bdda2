"""Run the notebooks in order with papermill: `python -m apo_utils.reproduce --profile smoke`.

Each notebook is executed with the same `profile`, `seed` and `output_dir` parameters; the executed
copy lands in `<output-dir>/executed/`. The run stops at the first notebook that fails and says which
one, which cell and why. It resumes: a notebook that already finished with the same profile, seed and
notebook content is skipped (`--force` re-runs it), and inside a notebook the expensive steps are cached.
The summary notebook (`06_summary`) always runs last, so the table reflects every record.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import profiles
from .storage import atomic_write_json, read_json_or_none, repo_root

ALWAYS = ("06_summary",)  # cheap, and must see the records the other notebooks just wrote


def notebooks(folder: Path | None = None) -> list[Path]:
    """The numbered study notebooks, in order."""
    return sorted(Path(folder or repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _finished_key(nb: Path, profile: str, seed: int) -> dict:
    return {"notebook_sha256": hashlib.sha256(nb.read_bytes()).hexdigest(), "profile": profile, "seed": seed}


def run(profile: str = "auto", seed: int = 0, output_dir: str | Path = "outputs", only: list[str] | None = None,
        kernel: str = "python3", log=print, notebooks_dir: Path | None = None, force: bool = False) -> list[Path]:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    profile = profiles.resolve(profile)
    root = repo_root()
    out = Path(output_dir)
    out = out if out.is_absolute() else root / out
    todo = notebooks(notebooks_dir)
    if only:
        todo = [nb for nb in todo if any(nb.stem.startswith(o) for o in only)]
        if not todo:
            raise SystemExit(f"no notebook matches --only {' '.join(only)}; have: "
                             f"{', '.join(nb.stem for nb in notebooks(notebooks_dir))}")
    done = []
    for i, nb in enumerate(todo, 1):
        target = out / "executed" / profile / nb.name
        target.parent.mkdir(parents=True, exist_ok=True)
        marker = target.with_suffix(".finished.json")
        key = _finished_key(nb, profile, seed)
        finished = None if force or nb.stem in ALWAYS else read_json_or_none(marker)
        if finished is not None and finished.get("key") == key:
            log(f"[{i}/{len(todo)}] {nb.stem}: finished before ({finished.get('finished')}), skipped; "
                "--force re-runs it")
            done.append(target)
            continue
        log(f"[{i}/{len(todo)}] {nb.stem} (profile={profile}) ...")
        t = time.perf_counter()
        try:
            pm.execute_notebook(
                str(nb), str(target), parameters={"profile": profile, "seed": seed, "output_dir": str(out)},
                cwd=str(root), kernel_name=kernel, progress_bar=False, log_output=False,
            )
        except PapermillExecutionError as e:
            raise SystemExit(
                f"\nFAILED: {nb.name}, cell {e.exec_count}: {e.ename}: {e.evalue}\n"
                f"The executed copy with the traceback is {target}.\n"
                f"Notebooks after it were not run."
            ) from None
        took = time.perf_counter() - t
        atomic_write_json(marker, {"key": key, "seconds": round(took, 1),
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        log(f"    done in {took:.0f} s -> {target.relative_to(root) if target.is_relative_to(root) else target}")
        done.append(target)
    return done


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="auto", help="smoke, cpu, gpu or auto (default: auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="outputs", help="where executed notebooks and caches go")
    p.add_argument("--only", nargs="*", help="run only notebooks whose name starts with these (e.g. 00 01)")
    p.add_argument("--kernel", default="python3")
    p.add_argument("--force", action="store_true", help="re-run notebooks that already finished")
    a = p.parse_args(argv)
    try:
        profile = profiles.resolve(a.profile)
    except ValueError as e:
        p.error(str(e))
    run(profile, a.seed, a.output_dir, a.only, a.kernel, force=a.force)
    print("all notebooks ran.")


if __name__ == "__main__":
    sys.exit(main())
