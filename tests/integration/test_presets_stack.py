"""Image presets through the local stack: upload a photo, follow the job, fetch all four presets."""

from __future__ import annotations

import io
from pathlib import Path

import requests
from PIL import Image

from docpipe_local.stack import LocalStack
from tests.fixtures.files import image_bytes


def test_a_photo_gets_four_presets_served_through_the_api(alice, tmp_path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(image_bytes("JPEG", (3000, 2000), seed=42))

    job = alice.wait(alice.upload_file(path)["jobId"], timeout=60)

    assert (job["state"], job["progress"], job["plan"]) == ("ready", 100, ["scan", "presets"])
    variants = job["tasks"]["presets"]["variants"]
    assert {n: (v["width"], v["height"], v["format"]) for n, v in variants.items()} == {
        "ai-vision": (2048, 1365, "jpeg"),
        "ai-chat": (1920, 1280, "jpeg"),
        "preview": (800, 533, "jpeg"),
        "thumbnail": (200, 133, "webp"),
    }
    for name, facts in variants.items():
        response = requests.get(alice.variant_url(job["hash"], name), timeout=10)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        image = Image.open(io.BytesIO(response.content))
        assert (image.width, image.height) == (facts["width"], facts["height"]), name


def test_an_expired_preset_is_regenerated_on_demand(stack: LocalStack, alice, tmp_path) -> None:
    path = tmp_path / "old.png"
    path.write_bytes(image_bytes("PNG", (1200, 900), seed=8))
    job = alice.wait(alice.upload_file(path)["jobId"], timeout=60)
    key = f"derived/{job['hash']}/preview.jpg"
    stack.client("s3").delete_object(
        Bucket=stack.template.physical_name("StoreBucket"), Key=key
    )  # as the lifecycle rule would

    first = alice.session.get(f"{alice.api_url}/files/{job['hash']}/preview", allow_redirects=False, timeout=10)
    url = alice.variant_url(job["hash"], "preview", timeout=30)

    assert (first.status_code, first.json()["code"], first.headers["Retry-After"]) == (202, "variant.pending", "2")
    assert Image.open(io.BytesIO(requests.get(url, timeout=10).content)).size == (800, 600)


def test_a_broken_image_fails_its_job_with_a_code(alice, tmp_path) -> None:
    data = image_bytes("JPEG", (1600, 1200), seed=3)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])

    job = alice.wait(alice.upload_file(path)["jobId"], timeout=60)

    assert (job["state"], job["error"]["code"]) == ("failed", "file.corrupt")
    assert job["tasks"]["presets"]["state"] == "failed"
    assert Path(path).exists()
