"""Smoke test of the speed benchmark tool: it runs end to end on the CPU with tiny settings and
writes a JSON report with every section a reader of docs/benchmarks.md looks for (no timing is
asserted: a benchmark is a script, not a timed test)."""
import json

from bct.tools.benchmark_speed import main


def test_benchmark_runs_and_reports_every_section(tmp_path):
    out = tmp_path / "speed.json"
    data = tmp_path / "images"  # missing folder: the tool generates its synthetic set there
    main(["--device", "cpu", "--data", str(data), "--images", "8", "--classes", "4", "--size", "32",
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
