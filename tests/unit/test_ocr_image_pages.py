"""OCR of images as documents: every page of a multi-page TIFF (a fax), each within the pixel budget,
and grayscale wider than 8 bits read by its own range. Every file is built here."""

from __future__ import annotations

from PIL import Image

from ocr.engines import prepare_image


def test_a_32_bit_grayscale_page_is_prepared_by_its_range_not_clipped() -> None:
    # given a 32-bit integer page whose values run from 5000 to 104000 (a clip to 0-255 leaves one level)
    ramp = Image.linear_gradient("L").resize((300, 400)).convert("I").point(lambda v: v * 388 + 5000)

    prepared = prepare_image(ramp)

    assert prepared.mode == "L"
    assert len(set(prepared.get_flattened_data())) > 200
    assert prepared.getpixel((150, 0)) < 5 and prepared.getpixel((150, 399)) > 250
