"""What a run printed travels with its record into the book: only text and tables, only under unchanged code, and
only from the run whose record sits beside it."""

import json

import nbformat

from apo_utils import cell_outputs, reproduce
from apo_utils.records import UPDATE_REFERENCE


def _executed(root):
    """An executed notebook as papermill leaves it: parameters, a print with a progress line and a warning, a
    table, a figure, an error-free empty cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'cpu'")
    params.metadata["tags"] = ["parameters"]
    printed = nbformat.v4.new_code_cell("print('hello')")
    printed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="step 1/3\rstep 3/3\n\x1b[1mbold\x1b[0m\n"),
                       nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something\n"),
                       nbformat.v4.new_output("stream", name="stdout", text=f"record: {root}/figures/x.json\n")]
    table = nbformat.v4.new_code_cell("df")
    table.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": "<table><tr><td>1</td></tr></table>",
                                                                     "text/plain": "   a\n0  1"}, execution_count=3)]
    figure = nbformat.v4.new_code_cell("plt.show()")
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                   "text/plain": "<Figure size 640x480 with 1 Axes>"})]
    quiet = nbformat.v4.new_code_cell("x = 1")
    nb.cells = [params, printed, table, figure, quiet]
    return json.loads(nbformat.writes(nb))


def test_text_and_tables_are_kept_images_warnings_and_parameters_are_not(tmp_path):
    executed = _executed(tmp_path)
    cells = cell_outputs.extract(executed, root=tmp_path)
    ids = [c["id"] for c in executed["cells"]]
    assert set(cells) == {ids[1], ids[2]}  # not the parameters, the figure or the silent cell
    assert cells[ids[1]]["outputs"] == [{"output_type": "stream", "name": "stdout",
                                         "text": "step 3/3\nbold\nrecord: figures/x.json\n"}]
    assert cells[ids[2]]["outputs"][0]["data"] == {"text/html": "<table><tr><td>1</td></tr></table>"}
    assert cells[ids[1]]["source"] == cell_outputs.source_hash("print('hello')")


def test_a_printout_flushed_in_pieces_is_cleaned_as_one_and_placeholders_widgets_and_scripts_are_dropped(tmp_path):
    stream = lambda text, name="stdout": {"output_type": "stream", "name": name, "text": text}  # noqa: E731
    shown = lambda data: {"output_type": "display_data", "data": data, "metadata": {}}  # noqa: E731
    kept = cell_outputs.kept_outputs([
        stream("\rstep 1/3"), stream("warning\n", "stderr"), stream("\rstep 2/3"), stream("\rstep 3/3\r\n"),
        stream("a,b\r\n1,2\r\n"), stream(f"{tmp_path}/figures/x.png /mnt{tmp_path}/y https://arxiv.org/abs/1\n"),
        shown({"text/plain": "<pandas.io.formats.style.Styler at 0x7f37e4fca290>"}),
        shown({"text/plain": "<IPython.core.display.Markdown object>", "text/markdown": "**bold**"}),
        shown({"text/plain": "interactive(children=(FloatSlider(value=2.0),))",
               "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}),
        shown({"text/html": "<div><script>alert(1)</script></div>", "text/plain": "x"}),
        shown({"text/plain": "0    1.0\n1    2.0\ndtype: float64"})], root=tmp_path)
    assert kept[0] == stream(f"step 3/3\na,b\n1,2\nfigures/x.png /mnt{tmp_path}/y https://arxiv.org/abs/1\n")
    assert [o.get("data") for o in kept[1:]] == [{"text/markdown": "**bold**"},
                                                {"text/plain": "0    1.0\n1    2.0\ndtype: float64"}]
    longest = cell_outputs.kept_outputs([stream("x" * cell_outputs.LONGEST)] * 3)[0]["text"]
    assert len(longest) < cell_outputs.LONGEST + 100 and longest.endswith("characters in all)\n")


def test_outputs_return_under_unchanged_code_and_only_beside_the_run_that_printed_them(tmp_path):
    executed = _executed(tmp_path)
    (tmp_path / "run_record.json").write_text(json.dumps({"started": "2026-12-06T10:00:00+00:00"}))
    saved = json.loads(cell_outputs.save(executed, tmp_path, tmp_path).read_text())
    fresh = json.loads(json.dumps(executed))
    for c in fresh["cells"]:
        c["outputs"] = []
    fresh["cells"][2]["source"] = "df.round(3)"  # this cell's code changed since the run
    assert cell_outputs.restore(fresh, saved, {"started": "2026-12-06T10:00:00+00:00"}) == 1
    assert fresh["cells"][1]["outputs"] and fresh["cells"][2]["outputs"] == []
    for c in fresh["cells"]:
        c["outputs"] = []
    assert cell_outputs.restore(fresh, saved, {"started": "2026-12-07T09:00:00+00:00"}) == 0  # another run's record
    assert cell_outputs.save(executed, tmp_path / "nothing_here") is None  # no record: nothing to tie them to


def test_reproduce_keeps_what_a_notebook_printed_beside_the_record_it_wrote(tmp_path, monkeypatch):
    """A notebook that writes a record (as every study does) gets its printout beside it; one whose record there is
    an earlier run's (the record names the run that made it) does not, even within the same second."""
    nbs, out, figures = tmp_path / "nbs", tmp_path / "out", tmp_path / "figures"
    nbs.mkdir()
    writes = (f"import json, datetime, os, pathlib\n"
              f"folder = pathlib.Path({str(figures)!r}) / '00_x' / profile\n"
              f"folder.mkdir(parents=True, exist_ok=True)\n"
              f"(folder / 'run_record.json').write_text(json.dumps({{'run_id': os.environ['APO_RUN_ID'], 'started': "
              f"datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}}))\n"  # as RunRecord does
              f"print('the table a chapter reads')")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "auto"\nseed = 0\noutput_dir = "outputs"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(writes)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_x.ipynb")
    monkeypatch.setattr(reproduce, "figures_root", lambda study, profile: figures)
    monkeypatch.setenv(UPDATE_REFERENCE, "1")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    saved = json.loads((figures / "00_x" / "smoke" / cell_outputs.FILE).read_text())
    record = json.loads((figures / "00_x" / "smoke" / "run_record.json").read_text())
    assert saved["record_started"] == record["started"]
    assert [o["text"] for c in saved["cells"].values() for o in c["outputs"]] == ["the table a chapter reads\n"]
    # the same notebook, now printing without writing a record: the record there is an earlier run's, so nothing of
    # this run is kept beside it, and the earlier run's printout is gone with its run
    nb.cells = [params, nbformat.v4.new_code_cell("print('a table of another run')")]
    nbformat.write(nb, nbs / "00_x.ipynb")
    reproduce.run("smoke", output_dir=out, notebooks_dir=nbs, log=lambda *a: None)
    assert not (figures / "00_x" / "smoke" / cell_outputs.FILE).exists()


def test_a_record_names_the_run_reproduce_gave_it_and_none_otherwise(tmp_path, monkeypatch):
    from apo_utils.records import RUN_ID, RunRecord

    monkeypatch.setenv(RUN_ID, "abc123")
    assert RunRecord("00_x", "smoke", [0], figures_dir=tmp_path).data["run_id"] == "abc123"
    monkeypatch.delenv(RUN_ID)
    assert "run_id" not in RunRecord("00_x", "smoke", [0], figures_dir=tmp_path).data  # a notebook run by hand
