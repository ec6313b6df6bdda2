"""The book (apo_utils/book.py) builds offline without running a notebook: no Sphinx warning (a missing image, a
broken cross-reference), no relative link that leaves the repository or points at nothing, each chapter with its
committed results; and every page, opened in headless Chromium, loads all its images with no error in the console.
Screenshots of every page land in _build/book/screenshots/."""

import json
import re
import shutil

import pytest

from apo_utils import book, summary
from apo_utils.storage import repo_root

ROOT = repo_root()


@pytest.fixture(scope="module")
def built():
    return book.build(ROOT / book.BUILD)


def test_the_book_builds_without_a_warning(built):
    assert not built.warnings, "Sphinx warned while building the book:\n" + "\n".join(built.warnings)


def test_no_link_leaves_the_repository_or_points_at_nothing(built):
    assert not built.links, "link problems in the book:\n" + "\n".join(built.links)


def test_every_page_of_the_toc_is_built(built):
    toc = (ROOT / "book" / "_toc.yml").read_text()
    files = re.findall(r"file: (\S+)", toc) + ["intro"]
    missing = [f for f in files if not (built.html / f"{f}.html").exists()]
    assert not missing, f"pages of book/_toc.yml not built: {missing}"
    assert [f.removeprefix("notebooks/") for f in files if f.startswith("notebooks/")] == list(book.CHAPTERS)
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == sorted(book.CHAPTERS), (
        "a notebook is missing from the book's chapters (apo_utils/book.py CHAPTERS and book/_toc.yml)")


def test_every_chapter_shows_its_committed_results(built):
    records = book.cpu_records(ROOT)
    stale = summary.known_stale(ROOT)
    for study in book.CHAPTERS:
        page = (built.html / "notebooks" / f"{study}.html").read_text()
        assert "Committed results" in page, f"{study}: no committed-results section"
        staged = json.loads((built.src / "notebooks" / f"{study}.ipynb").read_text())
        cell = next(c["source"] for c in staged["cells"] if c.get("id") == "committed-results")
        if study not in records:
            assert "no committed" in cell, study
            continue
        rec = records[study]
        text = "".join(c["source"] for c in staged["cells"] if c["cell_type"] == "markdown")
        for fig in rec["figures"]:  # each once: in the committed results, or where the chapter's own text shows it
            assert text.count(f"](../{fig})") == 1, f"{study}: figure {fig} shown {text.count(f'](../{fig})')} times"
        assert page.count("<img") >= len(rec["figures"]), f"{study}: fewer images than the record's figures"
        for c in rec["metrics"].get("comparisons", []):
            assert f"{c['diff']:+.3f}" in cell, f"{study}: comparison {c['method']} − {c['baseline']} not shown"
        assert ("older version of the code" in cell) == (rec["_path"] in stale), f"{study}: stale line wrong"
        for sample in rec["metrics"].get("samples") or []:  # the text the policies wrote, not only its score
            assert book._plain(sample["sample"]) in cell, f"{study}: a sample of {sample['method']} not shown"


def test_a_comparison_row_leads_with_the_interval_its_verdict_reads():
    """The chapters' prose quotes the hull of the two intervals; the table must lead with the same one."""
    c = {"method": "madpo", "baseline": "dpo", "setting": "high", "metric": "reward", "kl": 1.5, "diff": 0.01,
         "ci95": [-0.01, 0.03], "seed_ci95": [-0.02, 0.02], "n_seeds": 5, "n_units": 32, "matters": 0.005}
    row = book.comparisons_table([c]).splitlines()[-1]
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[4] == "+0.010 [-0.020, +0.030]" and cells[5] == "not resolved"
    assert cells[6:8] == ["[-0.010, +0.030]", "[-0.020, +0.020]"]
    one_seed = dict(c, seed_ci95=[None, None], n_seeds=1)
    assert "+0.010 [−∞, +∞]" in book.comparisons_table([one_seed])


def test_a_sample_is_shown_as_literal_text():
    """Whatever a model writes (HTML, emphasis, math, a table bar, a newline) stays one cell of plain text."""
    table = book.samples_table([{"method": "starting policy", "kl": 0.0, "prompt": "I saw *this* film and",
                                 "sample": " it was <em>great</em> | $5 well spent_\nreally"}])
    row = table.splitlines()[-1]
    assert row.count(" | ") == 2 and "<em>" not in row and "&lt;em&gt;" in row
    assert "\\$5" in row and "\\*this\\*" in row and "spent\\_ really" in row


def test_the_reading_check_counts_changed_verdicts_and_the_largest_move_per_measure():
    rows = [{"metric": "reward", "diff": 0.010, "diff_sqrt_kl": 0.018, "verdict": "not resolved",
             "verdict_sqrt_kl": "higher"},
            {"metric": "reward", "diff": -0.050, "diff_sqrt_kl": -0.047, "verdict": "lower", "verdict_sqrt_kl": "lower"}]
    line = book.reading_line(rows)
    assert "1 of 2 verdicts change" in line and "by at most 0.008" in line and "other half" not in line
    rows[1].update(diff_beta_elsewhere=-0.030, verdict_beta_elsewhere="not resolved")
    assert "1 of 1 verdicts change; the differences move by at most 0.020" in book.reading_line(rows)


def test_chapter_06_shows_the_reading_check_of_its_record(built):
    rec = json.loads((ROOT / "figures" / "06_summary" / book.PROFILE / "run_record.json").read_text())
    staged = json.loads((built.src / "notebooks" / "06_summary.ipynb").read_text())
    cell = next(c["source"] for c in staged["cells"] if c.get("id") == "committed-results")
    assert book.reading_line(rec["metrics"]["reading_sensitivity"]) in cell
    assert book.beyond_line(rec["metrics"]["beyond_shortest_seed"]) in cell


def test_the_reading_further_out_counts_only_the_readings_on_fewer_seeds():
    rows = [{"n_seeds": 5, "kl": 0.9, "verdict": "higher"}, {"n_seeds": 4, "kl": 1.2, "verdict": "not resolved"},
            {"n_seeds": 3, "kl": 1.5, "verdict": "lower"}]
    assert "1 of 2 readings resolved, out to 1.50 nats" in book.beyond_line(rows)


def test_the_found_page_holds_every_verdict(built):
    page = (built.src / book.FOUND_PAGE).read_text()
    for v in summary.verdicts(ROOT, book.PROFILE):
        assert f"{v['diff']:+.3f}" in page and v["verdict"] in page, v["claim"]


def test_the_checks_catch_a_missing_image_a_broken_reference_and_a_link_out(tmp_path):
    """The same build on a copy of the repository with three faults planted in the glossary."""
    root = tmp_path / "repo"
    for name in ("README.md", "LICENSE", "CITATION.cff"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    for folder in ("book", "notebooks", "figures"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("_build", "smoke"))
    with open(root / "book" / "glossary.md", "a") as f:
        f.write("\n\n## Planted faults\n\n![a figure](../figures/no_such_figure.png)\n\n"
                "[a term](#no-such-term)\n\n[the papers](../../shared/papers.md)\n")
    result = book.build(tmp_path / "build", root=root)
    assert any("no_such_figure.png" in w for w in result.warnings), result.warnings
    assert any("no-such-term" in w for w in result.warnings), result.warnings
    assert any("shared/papers.md" in p and "leaves the repository" in p for p in result.links), result.links


def test_the_readme_is_a_start_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "README.md is the start page: at most 150 lines (the rest is in book/)"
    for needed in ("python -m apo_utils.book", "python -m pytest", "--profile", '".[lab]"', "jupyter lab notebooks/",
                   "(LICENSE)", "(CITATION.cff)", "(notebooks/00_margin_zoo.ipynb)"):
        assert needed in readme, f"README.md no longer says {needed}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "python -m pytest", "CI must run the README's test command"


# ------------------------------------------------------------------------------------------------ browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    chromium, driver = _chromium(), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Chromium or chromedriver is not installed: `apt-get install chromium chromium-driver` "
                    "(.ci/run does) to check the book in a browser")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2000", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    d.set_page_load_timeout(60)
    yield d
    d.quit()


RESULTS_IN_VIEW = """const h = document.getElementById('committed-results-cpu-profile');
if (!h) { return false; } h.scrollIntoView(); return true;"""


def test_every_page_loads_its_images_without_console_errors(built, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    shots = built.html.parent / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    pages = sorted(p for p in built.html.rglob("*.html")
                   if not {"_static", "_sources", "_downloads"} & set(p.relative_to(built.html).parts))
    assert len(pages) >= len(book.CHAPTERS) + 10
    problems = []
    for page in pages:
        rel = page.relative_to(built.html).as_posix()
        browser.get(page.as_uri())
        WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        problems += [f"{rel}: image {src} did not load" for src, complete, width in images if not complete or width == 0]
        problems += [f"{rel}: console: {e['message']}" for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        name = rel.removesuffix(".html").replace("/", "__")
        browser.save_screenshot(str(shots / f"{name}.png"))
        if browser.execute_script(RESULTS_IN_VIEW):  # a chapter: its committed results too
            browser.save_screenshot(str(shots / f"{name}__results.png"))
    assert not problems, "in the browser:\n" + "\n".join(problems)


def test_the_book_shows_the_committed_printout_under_its_cell(built):
    """Where a chapter's committed run kept its printout, the staged chapter carries it under the matching cells and
    its results cell says so."""
    staged_any = False
    for study in book.CHAPTERS:
        saved = book.committed_outputs(ROOT, study)
        if not saved:
            continue
        staged = json.loads((built.src / "notebooks" / f"{study}.ipynb").read_text())
        shown = [c for c in staged["cells"] if c["cell_type"] == "code" and c.get("outputs")]
        assert shown and all(c["outputs"] == saved["cells"][c["id"]]["outputs"] for c in shown)
        results = next(c["source"] for c in staged["cells"] if c.get("id") == "committed-results")
        assert f"under {len(shown)} of this chapter's code cells" in results
        staged_any = True
    assert staged_any, "no chapter's committed run kept its printout: re-run one with --update-reference"


def test_a_commit_hash_printed_under_a_cell_is_caught_and_a_tables_styling_id_is_not(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nb = {"cells": [{"cell_type": "code", "id": "a1", "source": "rows", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {},
         "data": {"text/html": '<style>#T_5e58192c td {color: red}</style><table id="T_5e58192c"><tr><td>cpu</td>'
                               '<td>08c451f</td></tr></table>'}},
        {"output_type": "stream", "name": "stdout", "text": "made at 4be0242\n"}]}]}
    (tmp_path / "notebooks" / "06_summary.ipynb").write_text(json.dumps(nb))
    assert sorted(book.commit_hashes(tmp_path)) == ["notebooks/06_summary.ipynb: 08c451f",
                                                    "notebooks/06_summary.ipynb: 4be0242"]
