"""Smoke tests of the benchmark scripts (benchmarks/): each runs end to end on the CPU with tiny
settings and writes a JSON report with every section docs/benchmarks.md reads (no timing is
asserted: a benchmark is a script, not a timed test)."""
import json

import pytest

from benchmarks import data_loading, speed


@pytest.mark.slow
def test_speed_benchmark_runs_and_reports_every_section(tmp_path):
    out = tmp_path / "speed.json"
    data = tmp_path / "images"  # missing folder: the tool generates its synthetic set there
    speed.main(["--device", "cpu", "--data", str(data), "--images", "8", "--classes", "4", "--size", "32",
          "--batch", "4", "--iters", "1", "--warmup", "0", "--repeats", "1", "--workers", "0",
          "--methods", "advbct", "--gallery", "200", "--queries", "5", "--topk", "3", "--out", str(out)])

    report = json.loads(out.read_text())
    assert (data / "benchmark_list.txt").is_file()
    assert report["environment"]["device"] == "cpu"
    assert {"torch", "device_name", "torch_threads"} <= set(report["environment"])
    assert report["settings"]["size"] == 32 and report["settings"]["modes"] == ["fp32"]
    training = report["training"]["fp32"]
    assert {"base", "advbct", "old_forward", "memory"} <= set(training)
    assert training["base"]["ratio_to_base"] == 1.0
    assert training["advbct"]["images_per_s"] > 0 and report["advbct_ratio"] > 0
    assert report["data_loading"]["images_per_s"] > 0
    assert report["extraction"]["images"] == 8
    assert report["search"]["faiss"]["available"] and report["search"]["torch"]["available"]
    assert report["search"]["faiss"]["median_s"] > 0
    assert report["memory"]["self_max_rss_mb"] > 0
@pytest.mark.slow
def test_data_benchmark_runs_and_reports_every_section(tmp_path):
    out = tmp_path / "data.json"
    data_loading.main(["--device", "cpu", "--data", str(tmp_path / "photos"), "--images", "6", "--width", "96", "--height", "64",
          "--size", "32", "--max-side", "48", "--rounds", "1", "--chunk", "3", "--workers", "0", "--batch", "3",
          "--archs", "resnet18", "--step-batch", "2", "--iters", "1", "--warmup", "0", "--out", str(out)])
    report = json.loads(out.read_text())
    assert (tmp_path / "photos" / "photos_list.txt").is_file()
    assert report["resized_copy"]["images"] == 6 and report["resized_copy"]["copy_kb_per_image"] > 0
    assert set(report["per_core"]) == set(data_loading.PIPELINES)
    assert report["per_core"]["plain"]["x_plain"] == 1.0
    assert all(row["images_per_s"] > 0 for row in report["per_core"].values())
    assert set(report["workers"]["0"]) == {"plain", "fast", "copy_fast"}
    assert "not cuda" in report["gpu_decoding_unavailable"]
    assert report["training_steps"]["resnet18"]["images_per_s"] > 0
    assert report["cores_per_device"]["fast"]["resnet18"] > 0
    verdict = report["bottleneck"]["resnet18"]["plain PIL (reference path), 0 workers"]["bottleneck"]
    assert verdict in ("data", "training step")


@pytest.mark.catalogue
def test_speed_benchmark_times_every_method_of_the_catalogue():
    from bct.config.methods import method_names
    methods = method_names(include_oracle=False)
    assert speed.parse_args([]).methods == methods
    assert speed.parse_args(["--methods", methods[-1]]).methods == [methods[-1]]
