"""The evaluation runner's score cache, shared by processes that write the same file."""

from __future__ import annotations

from xraydenoise.evaluation.runner import ScoreCache


def test_scores_written_by_another_process_are_found_without_reopening(tmp_path):
    path = tmp_path / "scores.jsonl"
    report, beside = ScoreCache(path), ScoreCache(path)  # both opened before either wrote
    assert report.get("a") is None
    beside.put("a", {"psnr": 30.0})
    assert report.get("a") == {"psnr": 30.0, "key": "a"} and (report.hits, report.misses) == (1, 1)


def test_a_line_being_written_is_read_once_it_is_whole(tmp_path):
    path = tmp_path / "scores.jsonl"
    cache = ScoreCache(path)
    with path.open("a") as handle:
        handle.write('{"key": "b", "psnr": 1')  # a writer interrupted mid-line, or still writing
    assert cache.get("b") is None
    with path.open("a") as handle:
        handle.write('2.5}\n')
    assert cache.get("b") == {"key": "b", "psnr": 12.5}
    assert ScoreCache(path).get("b") == {"key": "b", "psnr": 12.5}
