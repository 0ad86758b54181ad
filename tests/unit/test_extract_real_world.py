"""Real-world oddities the extractors met in public PDF and Office corpora, each on a file built here
(:mod:`tests.fixtures.real_world`): filled-in forms, scans under a few characters of text layer,
workbooks styled down to their last row."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from extract.formats import extract
from tests.fixtures.real_world import FORM_HIDDEN, FORM_VALUES, filled_form

# ------------------------------------------------------------------------------------ PDF forms


@pytest.fixture(scope="module")
def form() -> bytes:
    return filled_form()


def _value_lines(values: list[str]) -> list[str]:
    return "\n".join(values).split("\n")


def test_a_filled_form_gives_its_values_after_each_pages_text_in_field_order(form) -> None:
    result = extract(form, "pdf")

    first, second = result.pages
    assert first.text.startswith("Application form\nName:\nAddress:")
    assert first.text.split("\n")[-len(_value_lines(FORM_VALUES[1])) :] == _value_lines(FORM_VALUES[1])
    assert second.text == "Signature page\nDate:\n" + "\n".join(FORM_VALUES[2])
    assert [(p.method, p.needs_ocr) for p in result.pages] == [("text-layer", False)] * 2


def test_password_hidden_and_unselected_form_values_stay_out_of_the_text(form) -> None:
    text = extract(form, "pdf").text

    assert not [secret for secret in FORM_HIDDEN if secret in text]
    assert not {"Spain", "Red", "Ham"} & set(text.split("\n"))  # options nobody chose


def test_form_values_come_in_the_order_pdftotext_prints_them(form, tmp_path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "form.pdf"
    path.write_bytes(form)
    result = extract(form, "pdf")

    for number, values in FORM_VALUES.items():
        printed = subprocess.run(
            ["pdftotext", "-q", "-f", str(number), "-l", str(number), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ours = result.pages[number - 1].text.split("\n")[-len(_value_lines(values)) :]
        theirs = iter(line.strip() for line in printed.splitlines())
        assert all(any(line.endswith(value) for line in theirs) for value in ours), (ours, printed)
