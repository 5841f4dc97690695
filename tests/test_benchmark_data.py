"""Smoke test of the data-loading benchmark: it runs end to end on the CPU with tiny settings and
writes every section docs/benchmarks.md reads (no timing is asserted)."""
import json

from bct.tools.benchmark_data import PIPELINES, main


def test_data_benchmark_runs_and_reports_every_section(tmp_path):
    out = tmp_path / "data.json"
    main(["--device", "cpu", "--data", str(tmp_path / "photos"), "--images", "6", "--width", "96", "--height", "64",
          "--size", "32", "--max-side", "48", "--rounds", "1", "--chunk", "3", "--workers", "0", "--batch", "3",
          "--archs", "resnet18", "--step-batch", "2", "--iters", "1", "--warmup", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert (tmp_path / "photos" / "photos_list.txt").is_file()
    assert report["resized_copy"]["images"] == 6 and report["resized_copy"]["copy_kb_per_image"] > 0
    assert set(report["per_core"]) == set(PIPELINES)
    assert report["per_core"]["plain"]["x_plain"] == 1.0
    assert all(row["images_per_s"] > 0 for row in report["per_core"].values())
    assert set(report["workers"]["0"]) == {"plain", "fast", "copy_fast"}
    assert "not cuda" in report["gpu_decoding_unavailable"]
    assert report["training_steps"]["resnet18"]["images_per_s"] > 0
    assert report["cores_per_device"]["fast"]["resnet18"] > 0
    verdict = report["bottleneck"]["resnet18"]["plain PIL (reference path), 0 workers"]["bottleneck"]
    assert verdict in ("data", "training step")
