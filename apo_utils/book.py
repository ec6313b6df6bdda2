"""The kit as a book you can read without running anything: `python -m apo_utils.book`.

The book is built with Jupyter Book 1 (Sphinx) from a staged copy of the repository, never from the repository
itself, and its notebooks are not executed. Staging (`stage`) lays out, in the same folders as the repository so
that every relative link works unchanged:

* the start page (README.md, as `intro.md`), the pages under book/ and the notebooks in order;
* into each study notebook with a committed `cpu` run record, a markdown cell "Committed results (`cpu` profile)"
  before its findings: the record's figures, its headline numbers and its paired comparisons, read from the
  record (`summary`, `stats`, with `plotting`'s names for methods and metrics), and a line when figures/stale.json
  lists the record as made by older code;
* under each code cell whose code is unchanged, what the same run printed (`cell_outputs`: tables and text, kept
  beside the record);
* two generated pages: "What the kit found" (`summary.verdicts`, every number and comparison) and the provenance
  appendix (profile, device, seeds, commit, time and packages of every record), the one page that shows commits;
* the figures, LICENSE and CITATION.cff, the Colab badge as a local image and MathJax from the
  `django-static-mathjax` package, so that the book needs no network to be read.

`build` stages, runs Sphinx with its warnings collected, and checks that no relative link leaves the book or points
at nothing (`link_problems`, `html_link_problems`). tests/test_book.py builds it and opens every page in Chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import html.parser
import io
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import cell_outputs, summary
from .formatting import bound, interval, mean_sd
from .storage import repo_root

CHAPTERS = summary.NOTEBOOKS  # the notebooks in reading order, the summary last
PROFILE = "cpu"  # the profile whose committed results the chapters show
BUILD = Path("_build") / "book"  # under the repository root: src/ (staged), html/, .doctrees/, screenshots/
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "book/images/colab-badge.svg"
RESULTS_HEADING = "## Committed results (`cpu` profile)"
FOUND_PAGE, PROVENANCE_PAGE = "book/found.md", "book/provenance.md"


# ----------------------------------------------------------------------------------------------------- tables
def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def _names():
    from . import plotting  # matplotlib: only when a page is written

    return plotting.label, plotting.metric_label


def headline_table(rec: dict) -> str:
    """Mean ± sd over seeds of the record's headline numbers (`summary.EXTRACT`), in a reader's names."""
    name, _ = _names()
    rows = summary._rows_of(rec, summary.EXTRACT[rec["study"]]) if rec["study"] in summary.EXTRACT else []
    return md_table(["setting", "metric", "method", "mean ± sd (seeds)"],
                    [[r["setting"], r["metric"], name(r["method"]), mean_sd(r["mean"], r["sd"], r["n"])]
                     for r in rows]) if rows else ""


def comparisons_table(comps: list[dict], with_study: bool = False) -> str:
    """Paired comparisons: method − baseline, where, the difference with the interval its verdict reads (the hull
    of the bootstrap and the t interval over seeds, `stats.cautious_interval`, as the chapters' prose quotes it),
    the verdict early so that a narrow page shows it, then the two intervals the hull is made of, seeds and units;
    a record made before units were stored shows its pairs."""
    from .stats import cautious_interval, verdict_cautious, where

    name, metric_name = _names()
    rows = []
    for c in comps:
        seed = c.get("seed_ci95")
        lo, hi = cautious_interval(c)
        row = [f"{name(c['method'])} − {name(c['baseline'])}", c["setting"], metric_name(c["metric"]), where(c),
               interval(c["diff"], lo, hi), verdict_cautious(c),
               f"[{bound(c['ci95'][0])}, {bound(c['ci95'][1], True)}]",
               f"[{bound(seed[0])}, {bound(seed[1], True)}]" if isinstance(seed, (list, tuple)) else "–",
               c["n_seeds"], c.get("n_units", c.get("n_pairs", "–"))]
        rows.append(([_chapter_link(c["study"], "../notebooks")] if with_study else []) + row)
    header = ["comparison", "setting", "metric", "at", "difference [95 % interval]", "verdict", "bootstrap 95 % CI",
              "95 % CI over seeds", "seeds", "units"]
    return md_table((["chapter"] if with_study else []) + header, rows) if rows else ""


def verdicts_table(verdicts: list[dict], stale_studies: set[str], notebooks: str | None) -> str:
    """One row a paper's claim: the kit's verdict, the difference that decides it and where it was measured
    (`summary.verdicts`)."""
    from .plotting import setting_label

    name, metric_name = _names()
    rows = []
    for v in verdicts:
        lo, hi = v["interval"]
        mark = " †" if v["study"] in stale_studies else ""
        study = _chapter_link(v["study"], notebooks) if notebooks else summary._title(v["study"])
        rows.append([v["claim"], study + mark, v["verdict"], interval(v["diff"], lo, hi),
                     f"{name(v['method'])} − {name(v['baseline'])} in {metric_name(v['metric'])}; "
                     + ", ".join(x for x in (setting_label(v["setting"]), v["at"]) if x), v["n_seeds"]])
    return md_table(["claim", "chapter", "verdict", "difference [95 % interval]", "measured as", "seeds"], rows)


def reading_line(readings: list[dict]) -> str:
    """06's checks of the matched-KL readings (`readings.reading_sensitivity`, kept in its record): how many verdicts
    change, and how far the differences move, when the curves are read in √KL and when β is chosen on other seeds
    and prompts."""
    _, metric_name = _names()
    changed = sum(r["verdict"] != r["verdict_sqrt_kl"] for r in readings)
    moves = {}
    for r in readings:
        moves[r["metric"]] = max(moves.get(r["metric"], 0.0), abs(r["diff_sqrt_kl"] - r["diff"]))
    shifts = "; ".join(f"{metric_name(m)} by at most {x:.3f}" for m, x in moves.items())
    line = (f"**Every matched-KL comparison read again straight in √KL between checkpoints:** {changed} of "
            f"{len(readings)} verdicts change; the differences move, {shifts}.")
    best_of = [r for r in readings if r.get("diff_beta_elsewhere") is not None]
    if best_of:
        changed = sum(r["verdict"] != r["verdict_beta_elsewhere"] for r in best_of)
        largest = max(abs(r["diff_beta_elsewhere"] - r["diff"]) for r in best_of)
        line += (f" **Each best-of-β comparison with β chosen on other seeds and prompts:** {changed} of "
                 f"{len(best_of)} verdicts change; the differences move by at most {largest:.3f}.")
    return line


def beyond_line(rows: list[dict]) -> str:
    """06's reading of each reward comparison further out on fewer seeds (`readings.beyond_shortest_seed`, kept in its
    record) in one sentence: how many of those readings are resolved, and how far out they go."""
    # a sweep's middle β repeats its study's comparison: count each reading once
    further = list({(r.get("method"), r.get("baseline"), r["n_seeds"], r["kl"], r.get("diff")): r
                    for r in rows if r["n_seeds"] < 5}.values())
    resolved = sum(r["verdict"] != "not resolved" for r in further)
    return (f"**Each reward comparison read further out, on the four and then three seeds that get there:** "
            f"{resolved} of {len(further)} readings resolved, out to {max(r['kl'] for r in further):.2f} nats.")


def _plain(text: str) -> str:
    """A model's sample as literal text in a markdown cell: no HTML, emphasis, link, math or code it happens to
    contain is interpreted (a sample with `<em>` or a `$` would otherwise change the page)."""
    out = html.escape(" ".join(str(text).split()), quote=False)
    return re.sub(r"([\\`*_\[\]{}#$~])", r"\\\1", out)


def samples_table(samples: list[dict]) -> str:
    """What the policies wrote, as the record keeps it: the start's samples and each method's at about the same KL
    (`Study.samples_at_kl`), so that a reader of the book sees the text and not only its score."""
    name, _ = _names()
    rows = [[s["method"] if s["method"] == "starting policy" else name(s["method"]), f"{float(s['kl']):.2f}",
             f"**{_plain(s['prompt'])}** {_plain(s['sample'])}"] for s in samples]
    return md_table(["policy", "KL (nats)", "held-out prompt (bold) and the policy's continuation"], rows) if rows else ""


def _chapter_link(study: str, notebooks: str) -> str:
    return f"[{summary._title(study)}]({notebooks}/{study}.ipynb)"


# ------------------------------------------------------------------------------------------- generated pages
def cpu_records(root: Path) -> dict[str, dict]:
    """{study: its committed `cpu` run record}."""
    return {r["study"]: r for r in summary.records(root, committed_only=True) if r["profile"] == PROFILE}


def stale_line(path: str, stale: dict[str, str]) -> str:
    return ("*This run was made by an older version of the code this notebook runs (figures/stale.json lists it): "
            "its numbers and figures may change when the notebook is run again.*" if path in stale else "")


def results_cell(rec: dict, stale: dict[str, str], shown: frozenset[str] = frozenset(), printed: int = 0) -> str:
    """The markdown a chapter shows for its committed `cpu` run: figures, headline numbers, paired comparisons.
    Figures in `shown` (those the chapter's own text embeds) are not repeated; `printed`: how many code cells show
    this run's printed output (`cell_outputs`)."""
    study = rec["study"]
    seeds = rec.get("seeds") or []
    parts = [RESULTS_HEADING,
             f"What the committed `{PROFILE}` run of this notebook made ({len(seeds)} seed{'s' * (len(seeds) != 1)}, "
             f"on {rec.get('device', 'an unrecorded device')}), read from `{rec['_path']}` when this book was built. "
             "Running the notebook makes your own; the [provenance appendix](../book/provenance.md) says what "
             "made this one."]
    if printed:
        parts.append(f"The tables and text under {printed} of this chapter's code cells are what this run printed "
                     "(figures are shown here, not under their cells).")
    if line := stale_line(rec["_path"], stale):
        parts.append(line)
    for fig in (f for f in rec.get("figures", []) if f not in shown):
        alt = Path(fig).stem.replace("_", " ")
        parts.append(f"![{alt}](../{fig})")
    if study == "06_summary":
        verdicts = rec["metrics"].get("verdicts") or []
        if verdicts:
            parts += ["**Each claim and its verdict** (the table behind the figure of every claim):",
                      verdicts_table(verdicts, set(), "../notebooks")]
        if readings := rec["metrics"].get("reading_sensitivity"):
            parts.append(reading_line(readings))
        if further := rec["metrics"].get("beyond_shortest_seed"):
            parts.append(beyond_line(further))
    if table := headline_table(rec):
        parts += ["**Mean ± sd over seeds** (number of seeds):", table]
    if table := samples_table(rec["metrics"].get("samples") or []):
        parts += ["**What the policies write** (seed 0, each policy's checkpoint nearest the KL the notebook names):",
                  table]
    comps = summary._rows_of(rec, summary._comparisons_of)
    if comps:
        parts += ["**Paired comparisons** (method − baseline on the same seeds and the same held-out prompts or pairs; "
                  "see [paired difference](../book/glossary.md#paired-difference)):", comparisons_table(comps)]
    return "\n\n".join(parts) + "\n"


NO_RECORD = (f"{RESULTS_HEADING}\n\nThis notebook has no committed `{PROFILE}` run yet: run it "
             f"(`python -m apo_utils.reproduce --profile {PROFILE} --only {{num}}`) to see its results.\n")


def found_page(root: Path) -> str:
    """'What the kit found': the verdict on each paper's claim, then every number and every paired comparison."""
    stale = summary.known_stale(root)
    records = cpu_records(root)
    stale_studies = summary.studies_marked_stale(stale, PROFILE)
    verdicts = summary.verdicts(root, PROFILE)
    name, _ = _names()
    parts = ["# What the kit found",
             f"Each claim of the papers that the kit tests, and the verdict of the committed `{PROFILE}` runs (2 CPU "
             "cores, small models, a few seeds). A verdict reads a [paired difference](glossary.md#paired-difference) "
             "and its [confidence interval](glossary.md#confidence-interval): **higher** or **lower** when the whole "
             "interval is on one side of zero, **no difference** when it lies inside the zone too small to matter, "
             "**not resolved** otherwise. A reward claim is judged at [matched KL](glossary.md#matched-kl) where the "
             "run measured the [frontier](glossary.md#frontier); a comparison after the "
             "[same number of steps](glossary.md#same-steps) cannot settle it."]
    conclusions = f"figures/06_summary/{PROFILE}/conclusions.png"
    if (root / conclusions).exists():  # 06's answer, one method a row, before every claim
        parts += [f"Each method's main claim against its paper's own baseline ({_chapter_link('06_summary', '../notebooks')} "
                  "reads it):", f"![each method's main claim and the kit's verdict](../{conclusions})", "Every claim:"]
    parts.append(verdicts_table(verdicts, stale_studies, "../notebooks") if verdicts else "No committed verdict yet.")
    if stale_studies:
        claimed = {v["study"] for v in verdicts}
        older = [s for s in CHAPTERS if s in stale_studies & claimed and not any(
            isinstance(c.get("kl"), (int, float)) for c in records[s]["metrics"].get("comparisons", []))]
        parts.append("† Made before a change to the code its notebook runs (`figures/stale.json` says which): it may "
                     "move when the notebook is run again."
                     + (f" {', '.join(_chapter_link(s, '../notebooks') for s in older)}: these rows compare "
                        "methods after the same number of steps only, so a reward claim there is not settled." if older else ""))
    rows = [r for r in summary.collect(root, profiles=("cpu", "gpu"), committed_only=True)]
    parts.append("## Every number, by chapter")
    parts.append("Mean ± sd over seeds (number of seeds), one column a profile, each run at its own settings "
                 "([profiles](profiles.md)); † marks a result made before a change to the code its notebook runs. "
                 "The [provenance appendix](provenance.md) says which device, code and packages made each record.")
    for study in CHAPTERS:
        mine = [r for r in rows if r["study"] == study]
        if not mine:
            continue
        profiles = sorted({r["profile"] for r in mine}, key=["cpu", "gpu"].index)
        cells: dict[tuple, dict[str, str]] = {}
        for r in mine:
            mark = " †" if f"figures/{study}/{r['profile']}/run_record.json" in stale else ""
            cells.setdefault((r["metric"], r["setting"], name(r["method"])), {})[r["profile"]] = (
                mean_sd(r["mean"], r["sd"], r["n"]) + mark)
        parts += [f"### {_chapter_link(study, '../notebooks')}",
                  md_table(["metric", "setting", "method"] + [f"`{p}`" for p in profiles],
                           [list(k) + [v.get(p, "–") for p in profiles] for k, v in cells.items()])]
    comps = summary.comparisons(root, profiles=(PROFILE,), committed_only=True)
    if comps:
        parts += ["## Every paired comparison",
                  f"From the committed `{PROFILE}` records: the difference on the same seeds and held-out prompts or "
                  "pairs, its 95 % interval from resampling seeds and prompts or pairs, and where the record has one, "
                  "a t interval over seeds; the verdict reads both.", comparisons_table(comps, with_study=True)]
    return "\n\n".join(parts) + "\n"


def provenance_page(root: Path) -> str:
    """Where every committed record comes from: the one page of the book that names commits."""
    stale = summary.known_stale(root)
    rows = []
    for rec in summary.records(root, committed_only=True):
        git = rec.get("git") or {}
        commit = (git.get("commit") or "?")[:7] + (" (uncommitted changes)" if git.get("dirty") else "")
        full = rec.get("full_run_s")
        full_text = (f"{full:,.0f} s at {(rec.get('full_run_commit') or '?')[:7]}" if isinstance(full, (int, float))
                     else "–")
        packages = ", ".join(f"{k} {v}" for k, v in sorted((rec.get("packages") or {}).items()))
        rows.append([_chapter_link(rec["study"], "../notebooks") if rec["study"] in CHAPTERS else rec["study"],
                     f"`{rec['profile']}`", rec.get("device", "–"), ", ".join(map(str, rec.get("seeds") or [])) or "–",
                     commit, full_text, (rec.get("finished") or "–")[:10],
                     "yes" if rec["_path"] in stale else "no", packages])
    return "\n\n".join([
        "# Provenance of the committed results",
        "Every run record committed under `figures/`: the profile it ran, the device, the seeds, the commit of the "
        "code (with uncommitted changes when the record says so), the wall time of its last run from nothing (and "
        "that run's commit), the day it finished, whether `figures/stale.json` lists it as made by older code, and "
        "the versions of the packages that ran it.",
        md_table(["record", "profile", "device", "seeds", "commit", "from nothing", "finished", "stale", "packages"],
                 rows)]) + "\n"


# ------------------------------------------------------------------------------------------------- staging
def _write(path: Path, data: bytes | str) -> None:
    """Write only when the content changed, so that Sphinx rebuilds only what did."""
    data = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _local_badge(text: str, page: str) -> str:
    """The Colab badge image as a local file (the book is read offline); the link to Colab stays."""
    up = "../" * page.count("/")
    return text.replace(COLAB_BADGE, up + LOCAL_BADGE)


def _results_position(cells: list[dict]) -> int:
    """Before the notebook's findings ('## What we found'), else its checks, else at the end."""
    for heading in ("## What we found", "## Checks"):
        for i, c in enumerate(cells):
            if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith(heading):
                return i
    return len(cells)


def committed_outputs(root: Path, study: str) -> dict | None:
    """What the committed `cpu` run of `study` printed (`cell_outputs.save`), if git tracks it (any file without
    git history)."""
    name = f"figures/{study}/{PROFILE}/{cell_outputs.FILE}"
    tracked = summary._committed(root)
    if tracked is not None and name not in tracked:
        return None
    try:
        return json.loads((root / name).read_text())
    except (OSError, ValueError):
        return None


def stage_notebook(study: str, root: Path, records: dict[str, dict], stale: dict[str, str]) -> str:
    nb = json.loads((root / "notebooks" / f"{study}.ipynb").read_text())
    shown = set()  # the committed figures the chapter's text embeds itself, as a reader on GitHub sees them
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            c["source"] = _local_badge("".join(c["source"]), f"notebooks/{study}.ipynb")
            shown |= set(re.findall(r"\]\(\.\./(figures/[^)\s]+\.png)\)", c["source"]))
    printed = cell_outputs.restore(nb, committed_outputs(root, study), records.get(study))
    text = (results_cell(records[study], stale, frozenset(shown), printed) if study in records
            else NO_RECORD.format(num=study.split("_")[0]))
    cell = {"cell_type": "markdown", "id": "committed-results", "metadata": {}, "source": text}
    nb["cells"].insert(_results_position(nb["cells"]), cell)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


BOOK_CSS = """/* apo-kit's book: wide tables (the paired comparisons) get the page's width, and a smaller type. */
.bd-page-width { max-width: 110rem; }
.bd-main .bd-content .bd-article-container { max-width: 100%; }
.bd-article table { font-size: 0.85rem; }
.bd-article img { max-width: 100%; height: auto; }
"""


def _mathjax() -> Path | None:
    """MathJax 3 from the `django-static-mathjax` package (the `test` extra), so that formulas render offline."""
    try:
        import mathjax  # noqa: F401  (the package's module is called mathjax)
    except ImportError:
        return None
    folder = Path(mathjax.__path__[0]) / "static" / "mathjax" / "es5"
    return folder if (folder / "tex-chtml.js").exists() else None


def stage(dest: Path, root: Path | None = None) -> Path:
    """Lay out the book's sources in `dest` (see the module docstring); returns `dest`."""
    root = Path(root or repo_root())
    dest.mkdir(parents=True, exist_ok=True)
    stale = summary.known_stale(root)
    records = cpu_records(root)
    wanted: dict[str, bytes | str] = {}
    for name in ("_config.yml", "_toc.yml"):
        wanted[name] = (root / "book" / name).read_bytes()
    wanted["intro.md"] = _local_badge((root / "README.md").read_text(), "intro.md")
    for name in ("LICENSE", "CITATION.cff"):
        wanted[name] = (root / name).read_bytes()
    for page in sorted((root / "book").rglob("*")):
        rel = page.relative_to(root).as_posix()
        if page.is_file() and not page.name.startswith("_") and "/_" not in rel.removeprefix("book/"):
            wanted[rel] = page.read_bytes()
    for study in CHAPTERS:
        wanted[f"notebooks/{study}.ipynb"] = stage_notebook(study, root, records, stale)
    for png in sorted((root / "figures").glob("*/*/*.png")):
        if png.parent.name != "smoke":
            wanted[png.relative_to(root).as_posix()] = png.read_bytes()
    wanted[FOUND_PAGE] = found_page(root)
    wanted[PROVENANCE_PAGE] = provenance_page(root)
    wanted["_assets/book.css"] = BOOK_CSS
    if (mj := _mathjax()) is not None:
        wanted["_assets/tex-chtml.js"] = (mj / "tex-chtml.js").read_bytes()
        for font in sorted((mj / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")):
            wanted[f"_assets/output/chtml/fonts/woff-v2/{font.name}"] = font.read_bytes()
    for rel, data in wanted.items():
        _write(dest / rel, data)
    for old in sorted(dest.rglob("*"), reverse=True):  # what an earlier staging left and this one does not make
        rel = old.relative_to(dest).as_posix()
        if old.is_file() and rel not in wanted:
            old.unlink()
        elif old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return dest


# ------------------------------------------------------------------------------------------------- links
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, data: ...


def _markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    return path.read_text()


def _code_spans_removed(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def link_problems(src: Path) -> list[str]:
    """Relative links and images of the staged pages that leave the book's sources (so the repository: the
    staging mirrors it) or point at a file that is not there. External links (http, https, mailto) are allowed."""
    src = src.resolve()
    problems = []
    for page in sorted(p for p in src.rglob("*") if p.suffix in (".md", ".ipynb") and "_assets" not in p.parts):
        text = _code_spans_removed(_markdown_of(page))
        for target in LINK.findall(text) + HTML_REF.findall(text):
            if EXTERNAL.match(target) or target.startswith("#"):
                continue
            problem = _broken(page, unquote(urlsplit(target).path), src)
            if problem:
                problems.append(f"{page.relative_to(src).as_posix()}: link {target!r} "
                                + ("leaves the repository" if problem == "leaves" else "points at nothing"))
    return problems


def _broken(page: Path, path: str, root: Path) -> str | None:
    """'leaves' when a relative path from `page` resolves outside `root`, 'missing' when it names no file."""
    resolved = (page.parent / path).resolve()
    if resolved != root and root not in resolved.parents:
        return "leaves"
    return None if resolved.exists() else "missing"


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.refs.append(v)


def html_link_problems(out: Path) -> list[str]:
    """Relative href/src of the built pages that leave the html folder or point at a missing file."""
    out = out.resolve()
    problems = []
    for page in sorted(out.rglob("*.html")):
        if "_static" in page.relative_to(out).parts:
            continue
        parser = _Refs()
        parser.feed(page.read_text(errors="replace"))
        for ref in parser.refs:
            if EXTERNAL.match(ref) or ref.startswith(("#", "//")):
                continue
            path = unquote(urlsplit(ref).path)
            problem = _broken(page, path, out) if path else None
            if problem:
                problems.append(f"{page.relative_to(out).as_posix()}: {ref!r} "
                                + ("leaves the book" if problem == "leaves" else "points at nothing"))
    return sorted(set(problems))


def _printed_of(path: Path) -> str:
    """The text of a staged chapter's restored outputs (`cell_outputs`), as a reader sees it: a table's cells without
    its markup, whose styling ids are no one's commit."""
    if path.suffix != ".ipynb":
        return ""
    texts = []
    for c in json.loads(path.read_text())["cells"]:
        for out in c.get("outputs") or []:
            texts.append("".join(out.get("text", "")))
            for kind, value in (out.get("data") or {}).items():
                value = "".join(value) if isinstance(value, list) else str(value)
                if kind == "text/html":
                    value = re.sub(r"<[^>]*>", " ", re.sub(r"<style.*?</style>", " ", value, flags=re.S | re.I))
                texts.append(value)
    return "\n".join(texts)


def commit_hashes(src: Path) -> list[str]:
    """Pages other than the provenance appendix that show something like a commit hash, in their prose or in the
    outputs restored under their code."""
    pattern = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
    found = []
    for page in sorted(p for p in src.rglob("*") if p.suffix in (".md", ".ipynb") and "_assets" not in p.parts):
        if page.relative_to(src).as_posix() != PROVENANCE_PAGE:
            text = _markdown_of(page) + "\n" + _printed_of(page)
            found += [f"{page.relative_to(src).as_posix()}: {h}" for h in pattern.findall(text)]
    return found


# -------------------------------------------------------------------------------------------------- build
class _Tee(io.TextIOBase):
    """Sphinx's warning stream: kept for the caller and still shown."""

    def __init__(self, shown):
        self.shown, self.kept = shown, io.StringIO()

    def write(self, s):
        self.kept.write(s)
        return self.shown.write(s)

    def flush(self):
        self.shown.flush()

    def isatty(self):
        return False


@dataclass
class Built:
    html: Path
    src: Path
    seconds: float
    warnings: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.warnings + self.links


def build(out: Path | None = None, root: Path | None = None, quiet: bool = True) -> Built:
    """Stage the book under `out` (default `_build/book` in the repository), build its HTML, and collect Sphinx's
    warnings and the link problems of sources and pages. Raises if Sphinx fails outright."""
    try:
        from jupyter_book.sphinx import build_sphinx
    except ImportError as e:
        raise SystemExit(f"building the book needs Jupyter Book 1: pip install -e \".[test]\" ({e})") from e
    if _mathjax() is None:
        raise SystemExit("building the book needs MathJax from django-static-mathjax (formulas offline): "
                         "pip install -e \".[test]\"")
    root = Path(root or repo_root())
    out = Path(out or root / BUILD)
    start = time.perf_counter()
    src = stage(out / "src", root)
    html_dir = out / "html"
    for old in (html_dir, out / ".doctrees"):  # from nothing: a page Sphinx thinks current still shows every warning
        shutil.rmtree(old, ignore_errors=True)
    tee = _Tee(sys.stderr)
    with contextlib.redirect_stderr(tee):
        status = build_sphinx(src, html_dir, doctreedir=out / ".doctrees", noconfig=True,
                              path_config=src / "_config.yml", confoverrides={"latex_individualpages": False},
                              quiet=quiet, keep_going=True, builder="html")
    if isinstance(status, BaseException):
        raise RuntimeError(f"the book did not build: {status!r}") from status
    warnings = [line for line in tee.kept.getvalue().splitlines() if "WARNING" in line or "ERROR" in line]
    return Built(html=html_dir, src=src, seconds=time.perf_counter() - start, warnings=warnings,
                 links=link_problems(src) + html_link_problems(html_dir) + [
                     f"commit hash outside the provenance appendix: {h}" for h in commit_hashes(src)])


def _one_of_each_script(app, pagename, templatename, context, doctree):
    """Jupyter Book 1's extensions add their inline scripts twice (sphinx-thebe's `const THEBE_JS_URL`, the toggle
    button's selector), and a `const` declared twice is a SyntaxError in the browser: keep the first of each."""
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (str(getattr(script, "filename", script) or ""),  # an inline script's is None or ''
               tuple(sorted((k, str(v)) for k, v in (getattr(script, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    """`apo_utils.book` as a Sphinx extension (book/_config.yml lists it)."""
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help=f"build folder (default: {BUILD} in the repository)")
    a = p.parse_args(argv)
    built = build(a.out)
    for line in built.problems:
        print("problem:", line)
    index = built.html / "index.html"
    print(f"Built in {built.seconds:.0f} s{'' if not built.problems else f' with {len(built.problems)} problems'}. "
          f"Open {index.resolve().as_uri()}")
    return 1 if built.problems else 0


if __name__ == "__main__":
    sys.exit(main())
