"""The DICOM node's durable queue, without a network: names, moves, recovery, the lock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xraydenoise.serve.queue import DurableQueue, QueueError, count_states, instance_name


def test_a_uid_names_its_file_and_anything_else_becomes_a_digest():
    assert instance_name("1.2.840.10008.1") == "1.2.840.10008.1.dcm"
    assert instance_name("1.2.3\x00") == "1.2.3.dcm"  # the padding a UID may carry on the wire
    for hostile in ("../../etc/passwd", "1.2/3", "..", "1." * 40, ""):
        name = instance_name(hostile)
        assert "/" not in name and name.startswith("x") and name.endswith(".dcm") and len(name) < 60, name
    assert instance_name("../a") != instance_name("../b")


def test_an_instance_moves_from_incoming_to_done_and_is_counted(tmp_path):
    queue = DurableQueue(tmp_path / "q")
    queue.put("1.2.3", b"first")
    queue.put("1.2.3", b"resent")  # the same UID again replaces, never doubles
    assert count_states(queue.root).as_dict()["incoming"] == 1
    claimed = queue.claim()
    assert claimed == queue.root / "processing" / "1.2.3.dcm" and claimed.read_bytes() == b"resent"
    assert queue.claim() is None
    queue.outgoing_path(claimed).write_bytes(b"derived")
    queue.finish_denoise(claimed)
    [pending] = queue.pending_sends()
    queue.mark_sent(pending)
    assert queue.counts().as_dict() == {"queued": 0, "done": 1, "failed": 0, "incoming": 0, "processing": 0, "outgoing": 0}


def test_claims_come_oldest_first(tmp_path):
    queue = DurableQueue(tmp_path / "q")
    for i, uid in enumerate(("1.9", "1.1", "1.5")):
        path = queue.put(uid, b"x")
        os.utime(path, ns=(10**9 * (i + 1), 10**9 * (i + 1)))
    assert [queue.claim().name for _ in range(3)] == ["1.9.dcm", "1.1.dcm", "1.5.dcm"]


def test_dead_letters_keep_the_file_and_the_reason(tmp_path):
    queue = DurableQueue(tmp_path / "q")
    queue.put("1.2.3", b"data")
    dead = queue.to_dead(queue.claim(), "cannot denoise the received instance: colour DICOM")
    assert dead.read_bytes() == b"data"
    assert (dead.parent / "1.2.3.dcm.reason").read_text().rstrip().endswith("colour DICOM")
    assert queue.counts().dead == 1  # the reason file is not counted as an instance


def test_recovery_requeues_interrupted_work_and_removes_temporary_files(tmp_path):
    queue = DurableQueue(tmp_path / "q")
    queue.put("1.2.3", b"data")
    queue.claim()  # a worker was denoising it when the node was killed
    leftover = queue.root / "outgoing" / ".1.2.3.dcm.12345-abc.partial"
    leftover.write_bytes(b"half a file")
    assert queue.recover() == 1
    assert [p.name for p in (queue.root / "incoming").iterdir()] == ["1.2.3.dcm"]
    assert not leftover.exists() and not list((queue.root / "processing").iterdir())


def test_one_node_per_queue_and_the_lock_dies_with_its_holder(tmp_path):
    folder = tmp_path / "q"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from xraydenoise.serve.queue import DurableQueue; "
                               f"DurableQueue({str(folder)!r}).lock(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(QueueError, match=f"in use by another xraydenoise serve \\(pid {holder.pid}\\)"):
            DurableQueue(folder).lock()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    queue = DurableQueue(folder)
    queue.lock()  # a killed holder leaves no stale lock
    queue.unlock()


def test_an_unwritable_queue_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(QueueError, match="is not writable"):
        DurableQueue(blocker / "q")
    with pytest.raises(QueueError, match="not a queue folder"):
        count_states(tmp_path)
