"""Batch planning: every output is decided, and checked against every input, before a run starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xraydenoise.batch import OutputCollisionError, is_finished_output, output_path, plan_jobs
from xraydenoise.io import Image, save_image
from xraydenoise.io._atomic import atomic_write, partial_prefix, remove_stale_partials


def _png(path: Path) -> Path:
    save_image(path, Image(np.arange(64, dtype=np.uint8).reshape(8, 8), "png", 255.0))
    return path


def test_an_output_landing_on_another_jobs_input_refuses_the_run(tmp_path):
    _png(tmp_path / "scan.png")
    _png(tmp_path / "scan.tif")  # a PNG named .tif is fine for planning: names decide outputs
    with pytest.raises(OutputCollisionError) as err:
        plan_jobs([str(tmp_path)], tmp_path, suffix=".tif")
    assert any(line.startswith(f"{tmp_path / 'scan.png'}: ") and "would overwrite the input" in line for line in err.value.lines)


def test_two_inputs_sharing_an_output_refuse_the_run(tmp_path):
    a, b = _png(tmp_path / "a" / "scan.png"), _png(tmp_path / "b" / "scan.png")
    with pytest.raises(OutputCollisionError) as err:
        plan_jobs([str(a), str(b)], tmp_path / "out")
    assert len(err.value.lines) == 1 and "is also the output of" in err.value.lines[0]
    # The same two files through their common folder are mirrored, so they do not collide.
    plan = plan_jobs([str(tmp_path)], tmp_path / "out")
    assert sorted(str(j.target.relative_to(tmp_path / "out")) for j in plan.jobs) == ["a/scan.png", "b/scan.png"]


def test_a_glob_over_subfolders_and_two_folders_of_one_layout_refuse_the_run(tmp_path):
    for folder in ("site1", "site2"):
        _png(tmp_path / folder / "day1" / "scan.png")
    # A glob across subfolders names the files one by one: their outputs would share a name.
    with pytest.raises(OutputCollisionError) as err:
        plan_jobs([str(tmp_path / "*" / "day1" / "scan.png")], tmp_path / "out")
    assert len(err.value.lines) == 1 and "is also the output of" in err.value.lines[0]
    # Two folders of the same layout are each mirrored from their own root: the same collision.
    with pytest.raises(OutputCollisionError) as err:
        plan_jobs([str(tmp_path / "site1"), str(tmp_path / "site2")], tmp_path / "out")
    assert len(err.value.lines) == 1 and "day1/scan.png" in err.value.lines[0]
    # Their common folder keeps every file apart.
    plan = plan_jobs([str(tmp_path)], tmp_path / "out")
    assert sorted(str(j.target.relative_to(tmp_path / "out")) for j in plan.jobs) == ["site1/day1/scan.png", "site2/day1/scan.png"]


def test_format_change_that_merges_two_inputs_is_refused(tmp_path):
    _png(tmp_path / "in" / "scan.png")
    _png(tmp_path / "in" / "scan.tif")
    with pytest.raises(OutputCollisionError) as err:
        plan_jobs([str(tmp_path / "in")], tmp_path / "out", suffix=".png")
    assert "keep each file's own format" in err.value.lines[0]


def test_a_name_with_glob_characters_is_taken_literally(tmp_path):
    literal = _png(tmp_path / "scan[1].png")
    _png(tmp_path / "scan1.png")  # what the pattern scan[1].png would match
    plan = plan_jobs([str(literal)], tmp_path / "out")
    assert [j.source.name for j in plan.jobs] == ["scan[1].png"]
    assert [j.source.name for j in plan_jobs([str(tmp_path / "scan?.png")], tmp_path / "out").jobs] == ["scan1.png"]


def test_output_folder_inside_the_input_is_left_out(tmp_path):
    _png(tmp_path / "scan.png")
    _png(tmp_path / "den" / "scan.png")  # a previous run's output
    plan = plan_jobs([str(tmp_path)], tmp_path / "den")
    assert [j.source for j in plan.jobs] == [tmp_path / "scan.png"]
    assert any("output folder" in note for note in plan.notes)


def test_hidden_and_non_image_files_are_left_out_with_a_note(tmp_path):
    _png(tmp_path / "scan.png")
    _png(tmp_path / ".hidden.png")
    (tmp_path / "notes.txt").write_text("not an image")
    plan = plan_jobs([str(tmp_path)], tmp_path / "out")
    assert [j.source.name for j in plan.jobs] == ["scan.png"]
    assert any("1 hidden" in note for note in plan.notes)
    assert any("1 file(s) that are not images" in note for note in plan.notes)


def test_names_without_an_image_suffix_keep_their_whole_name():
    assert output_path(Path("o/1.2.840.113619.2.55.3"), ".dcm") == Path("o/1.2.840.113619.2.55.3.dcm")
    assert output_path(Path("o/1.2.840.113619.2.55.4"), ".dcm") != output_path(Path("o/1.2.840.113619.2.55.3"), ".dcm")
    assert output_path(Path("o/IM0001"), None) == Path("o/IM0001")
    assert output_path(Path("o/scan.PNG"), ".tif") == Path("o/scan.tif")


def test_only_a_real_image_counts_as_a_finished_output(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    assert not is_finished_output(empty)
    assert not is_finished_output(junk)
    assert is_finished_output(_png(tmp_path / "good.png"))


def test_a_long_legal_name_can_be_written(tmp_path):
    name = "x" * 240 + ".png"  # 244 characters: legal, and the temporary name must fit too
    assert _png(tmp_path / name).stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_stale_temporary_files_go_but_a_live_writers_stay(tmp_path):
    target = tmp_path / "scan.png"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f"{partial_prefix(target)}{dead_pid}-abc.partial"
    stale.write_bytes(b"half")
    # A writer in another process, holding its temporary file open and locked.
    code = ("import sys, time; from pathlib import Path; from xraydenoise.io._atomic import atomic_write; "
            "atomic_write(Path(sys.argv[1]), lambda fh: (fh.write(b'x'), print('writing', flush=True), time.sleep(30)))")
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert remove_stale_partials(target) == 1
        assert not stale.exists()
        live = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        assert len(live) == 1 and str(writer.pid) in live[0].name
    finally:
        writer.kill()
        writer.wait()
    # Killed mid-write: now its file is stale too.
    deadline = time.monotonic() + 5
    while remove_stale_partials(target) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert not target.exists()


def test_atomic_write_holds_no_descriptor_after_it_returns(tmp_path):
    before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else 0
    for i in range(20):
        atomic_write(tmp_path / f"f{i}.bin", lambda fh: fh.write(b"ok"))
    after = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else 0
    assert after <= before + 1


def test_outputs_name_a_network_by_its_weights_content_so_derived_dicom_uids_differ(tmp_path):
    """Two weights files of one name (a retrained model, another site's adaptation) must not give
    the same derived series and instance UIDs: a PACS would take one for the other."""
    import shutil

    from xraydenoise.batch import _method_label
    from xraydenoise.io.dicom import derived_uid
    from xraydenoise.weights import shipped_weights

    first, second = tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"
    for path, content in ((first, b"weights one"), (second, b"weights two")):
        path.parent.mkdir()
        path.write_bytes(content)
    labels = _method_label(str(first)), _method_label(str(second))
    assert labels[0] != labels[1] and all(label.startswith("model.safetensors@") for label in labels)
    assert str(tmp_path) not in labels[0]  # never the folders
    assert derived_uid("1.2.3", labels[0], "series") != derived_uid("1.2.3", labels[1], "series")
    # the same content under another folder is the same method
    shutil.copy(first, tmp_path / "model.safetensors")
    assert _method_label(str(tmp_path / "model.safetensors")) == labels[0]
    # the shipped model by its alias carries its digest too; a classical filter is its name
    assert _method_label("network").startswith("network@") and _method_label("network")[8:] in _method_label(str(shipped_weights()))
    assert _method_label("bm3d") == "bm3d"


def test_a_batch_names_a_network_by_the_same_digest_as_its_export_and_its_cached_scores(tmp_path):
    """One identity per trained network: the label (and so the derived DICOM UIDs) carries the
    digest that an export records as source_sha256, card included, and a changed card (a
    routed network's gate lives there) is a different network."""
    import json

    from xraydenoise.batch import _method_label
    from xraydenoise.export import weights_digest
    from xraydenoise.weights import card_path

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    card_path(weights).write_text(json.dumps({"name": "model", "options": {"gate": [0.05, 0.15]}}))
    before = _method_label(str(weights))
    assert before == f"model.safetensors@{weights_digest(weights)[:12]}"
    card_path(weights).write_text(json.dumps({"name": "model", "options": {"gate": [0.1, 0.2]}}))
    os.utime(card_path(weights), ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    after = _method_label(str(weights))
    assert after == f"model.safetensors@{weights_digest(weights)[:12]}" and after != before
