"""The sample's report as a person sees it: rendered by headless Chromium, screenshot taken, checked.

Needs Debian's ``chromium`` (CI installs it in .ci/run); skipped where it is missing. Set
ONNXCAR_SCREENSHOTS=DIR to keep the screenshots for a look.
"""

import io
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from tests.browser import find_chromium, visit
from tests.test_cli import assert_ok, invoke

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"),
    pytest.mark.slow,  # prunes the sample and renders two pages: about 15 s of CPU
]
SAMPLE = pathlib.Path("samples")
COMPARISON = SAMPLE / "car_vs_baselines_1000.json"  # every criterion's curve, conv1 and conv2


@pytest.fixture(scope="module")
def sample_reports(tmp_path_factory):
    """The sample pruned by L1 (conv1 and conv2, half each), its sensitivity scan, and the committed comparison."""
    root = tmp_path_factory.mktemp("sample")
    data = ("--data", SAMPLE / "cifar10_prune_1000.npz", "--preprocess", "cifar10", "--limit", "100")
    assert_ok(invoke("-q", "prune", SAMPLE / "alexnet_cifar10.onnx", "--criterion", "l1", "--ratio", "0.5",
                     "--layers", "conv1,conv2", *data, "-o", root / "l1.onnx"))
    assert_ok(invoke("-q", "sensitivity", SAMPLE / "alexnet_cifar10.onnx", "--layers", "conv1,conv2,conv3",
                     "--steps", "0.25,0.5,0.75", *data, "-o", root / "sensitivity.json"))
    return [root / "l1.json", root / "sensitivity.json", COMPARISON]


def shoot(html: pathlib.Path, name: str):
    page = visit(str(html), CHROMIUM)
    keep = os.environ.get("ONNXCAR_SCREENSHOTS")
    if keep:
        pathlib.Path(keep, f"{name}.png").write_bytes(page.screenshot)
    return page


def assert_seen_cleanly(page, html: pathlib.Path, figures: int):
    """No request left the page, nothing went to the console, every figure decoded, and the shot shows something."""
    fetched = [url for url in page.requests if not url.startswith("data:") and url != html.resolve().as_uri()]
    assert fetched == [], fetched
    assert page.console_errors == []
    assert len(page.images) == figures
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0 for i in page.images), page.images
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("L"), dtype=np.float64)
    assert shot.shape[0] >= min(page.height, 1000) and shot.shape[1] >= 1000
    assert shot.std() > 20 and len(np.unique(shot)) > 64  # text, plots and pictures, not a blank page


def test_the_sample_report_in_chromium(sample_reports, tmp_path):
    html = tmp_path / "report.html"
    summary = json.loads(assert_ok(invoke("-q", "report", *sample_reports, "-o", html, "--json")).stdout)
    assert summary["problems"] == []
    page = shoot(html, "sample_report")
    assert_seen_cleanly(page, html, len(summary["figures"]))
    assert page.height > 3000  # curves, scans, costs, pictures of two layers, colour, settings


def test_a_report_whose_model_is_gone_in_chromium(sample_reports, tmp_path):
    report = json.loads(sample_reports[0].read_text())
    report["model"] = "gone/alexnet_cifar10.onnx"
    (tmp_path / "gone.json").write_text(json.dumps(report))
    html = tmp_path / "gone.html"
    summary = json.loads(assert_ok(invoke("-q", "report", tmp_path / "gone.json", "-o", html, "--json")).stdout)
    assert len(summary["problems"]) == 1
    page = shoot(html, "model_gone")
    assert_seen_cleanly(page, html, len(summary["figures"]))
    assert "gone/alexnet_cifar10.onnx is gone" in html.read_text()
