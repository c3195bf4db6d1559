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


def test_cached_scores_of_methods_told_the_estimate_follow_the_noise_estimator(monkeypatch):
    """A changed estimator changes the scores of the methods told its estimate (the shipped
    network, estimate:bm3d): their cache keys change with it; the others' do not."""
    import xraydenoise.noise.estimate as estimate
    from xraydenoise.evaluation.runner import method_from_spec

    specs = ["network", "estimate:bm3d", "bm3d", "told:network"]
    before = {spec: method_from_spec(spec).fingerprint for spec in specs}
    monkeypatch.setattr(estimate, "ESTIMATOR_VERSION", estimate.ESTIMATOR_VERSION + "-changed")
    after = {spec: method_from_spec(spec).fingerprint for spec in specs}
    assert [before[s] != after[s] for s in specs] == [True, True, False, False]
