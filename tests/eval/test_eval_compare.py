"""Head-to-head lines under each eval table: wins, mean difference and its standard error."""
from __future__ import annotations

import math

import pytest

from engan.eval.compare import compare_methods, head_to_head, head_to_head_lines
from engan.eval.report import render_markdown, tables_text


def _per(key: str, values: list) -> list[dict]:
    return [{"image": f"{i}.png", key: v} for i, v in enumerate(values)]


def test_wins_mean_difference_and_standard_error_by_hand():
    # ours - other = 1, 2, 3, -2: mean 1, sample sd sqrt(14/3), s.e. sqrt(14/3/4)
    c = compare_methods(_per("psnr", [11, 12, 13, 8]), _per("psnr", [10, 10, 10, 10]), "psnr", True)
    assert (c["n"], c["wins"], c["ties"]) == (4, 3, 0)
    assert c["mean_diff"] == pytest.approx(1.0) and c["se"] == pytest.approx(math.sqrt(14 / 3 / 4))
    # lower is better: the same numbers are one win out of four
    c = compare_methods(_per("niqe", [11, 12, 13, 8]), _per("niqe", [10, 10, 10, 10]), "niqe", False)
    assert (c["wins"], c["mean_diff"]) == (1, pytest.approx(1.0))


def test_images_a_metric_could_not_score_are_left_out_and_one_image_has_no_error_bar():
    c = compare_methods(_per("niqe", [5.0, None, float("nan")]), _per("niqe", [6.0, 4.0, 4.0]), "niqe", False)
    assert (c["n"], c["wins"], c["mean_diff"], c["se"]) == (1, 1, -1.0, None)
    c = compare_methods(_per("niqe", [None]), _per("niqe", [1.0]), "niqe", False)
    assert (c["n"], c["mean_diff"]) == (0, None)


def _unpaired_set(ours: list[float], peer: list[float]) -> dict:
    s = {"name": "LIME", "kind": "unpaired", "n_images": len(ours), "path": "p", "methods": {
        "ours": {"mean": {"niqe": sum(ours) / len(ours), "brisque": 20.0, "brightness": 100.0, "time_s": 0.1},
                 "per_image": [{"niqe": a, "brisque": 20.0} for a in ours]},
        "Zero-DCE": {"mean": {"niqe": sum(peer) / len(peer), "brisque": 21.0, "brightness": 90.0, "time_s": 0.1},
                     "per_image": [{"niqe": b, "brisque": 21.0} for b in peer]}}}
    s["head_to_head"] = head_to_head(s, ["ours"], ["Zero-DCE", "not run"])
    return s


def test_lines_say_when_a_lead_is_within_two_standard_errors():
    noisy = _unpaired_set([10, 14, 9, 16], [12, 12, 12, 12])  # +0.25 +- 1.65: not resolved
    assert head_to_head_lines(noisy) == [
        "vs Zero-DCE: NIQE lower on 2 of 4 (+0.25 ± 1.65, within 2 s.e.); BRISQUE lower on 4 of 4 (-1.00 ± 0.00)"]
    clear = _unpaired_set([10, 10.5, 9.5, 10], [12, 12, 12, 12])
    assert head_to_head_lines(clear)[0].startswith("vs Zero-DCE: NIQE lower on 4 of 4 (-2.00 ± 0.20);")


def test_report_prints_the_lines_under_the_table_and_none_without_peers():
    s = _unpaired_set([10, 14, 9, 16], [12, 12, 12, 12])
    report = {"environment": {"date": "d", "cpu": "c", "physical_cores": 1, "python": "3", "libraries": {}},
              "wall_s": 0.1, "notes": [], "methods": [{"label": "ours", "kind": "ours"}], "sets": [s]}
    for text in (tables_text(report), render_markdown(report)):
        table_end = text.index("| Zero-DCE |")
        line = text.index("- vs Zero-DCE: NIQE lower on 2 of 4")
        assert table_end < text.index("Head to head, image by image (ours − peer, mean ± standard error):") < line
    s["head_to_head"] = head_to_head(s, ["ours"], [])
    assert "Head to head" not in tables_text(report) and "Head to head" not in render_markdown(report)


def test_run_eval_compares_ours_with_each_peer_on_every_image(tmp_path, tiny_checkpoint):
    import torch

    from engan.eval.peers import PEERS
    from engan.eval.runner import EvalConfig, run_eval
    from tests.helpers import make_paired_set, make_unpaired_set

    torch.manual_seed(0)
    weights = tmp_path / "peers" / PEERS["zero-dce"].weights
    weights.parent.mkdir(parents=True)
    torch.save(PEERS["zero-dce"].build().state_dict(), weights)
    cfg = EvalConfig(model=str(tiny_checkpoint), lol=make_paired_set(tmp_path / "pairs"),
                     unpaired=(make_unpaired_set(tmp_path / "dark"),), peers=("zero-dce",),
                     peers_dir=tmp_path / "peers", out=tmp_path / "out", grid=False)
    report, _ = run_eval(cfg, progress=False)
    ours = report["methods"][1]["label"]
    for s, metrics in zip(report["sets"], (["psnr", "ssim"], ["niqe", "brisque"])):
        (h2h,) = s["head_to_head"]
        assert (h2h["ours"], h2h["other"]) == (ours, "Zero-DCE")
        assert [c["metric"] for c in h2h["metrics"]] == metrics
        for c in h2h["metrics"]:
            per = s["methods"]
            diffs = [a[c["metric"]] - b[c["metric"]] for a, b in zip(per[ours]["per_image"], per["Zero-DCE"]["per_image"])]
            assert c["n"] == s["n_images"] and c["mean_diff"] == pytest.approx(sum(diffs) / len(diffs))
