"""Text extraction and OCR through the local stack: upload documents, follow the jobs, fetch the text."""

from __future__ import annotations

import io
import zipfile

import requests

from tests.fixtures.documents import SENTENCES, pdf


def text_of(client, job) -> dict:
    response = requests.get(client.variant_url(job["hash"], "text"), timeout=10)
    assert response.status_code == 200
    return response.json()


def test_a_scanned_pdf_gets_its_ocr_text_through_the_api(alice, tmp_path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf([SENTENCES, SENTENCES[2:]], scanned=frozenset({1, 2})))

    job = alice.wait(alice.upload_file(path)["jobId"], timeout=120)

    assert (job["state"], job["plan"]) == ("ready", ["scan", "extract"])
    text = job["tasks"]["extract"]["variants"]["text"]
    assert (text["pages"], text["methods"], text["url"]) == (2, ["ocr"], f"/files/{job['hash']}/text")
    assert "Invoice 2041" in text["excerpt"]
    doc = text_of(alice, job)
    assert [p["method"] for p in doc["pages"]] == ["ocr", "ocr"]
    assert "Questions about this invoice go to billing support." in doc["pages"][1]["text"]


def test_a_text_pdf_and_a_docx_come_out_as_text(alice, tmp_path) -> None:
    from docx import Document

    (tmp_path / "report.pdf").write_bytes(pdf([SENTENCES[:2], SENTENCES[2:]], title="Quarterly"))
    document = Document()
    document.add_paragraph("A letter with a table.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "city", "Lisbon"
    document.save(tmp_path / "letter.docx")

    jobs = [
        alice.wait(alice.upload_file(tmp_path / name)["jobId"], timeout=60) for name in ("report.pdf", "letter.docx")
    ]

    assert [j["state"] for j in jobs] == ["ready", "ready"]
    report, letter = (text_of(alice, j) for j in jobs)
    assert report["metadata"]["title"] == "Quarterly"
    assert [p["text"] for p in report["pages"]] == ["\n".join(SENTENCES[:2]), "\n".join(SENTENCES[2:])]
    assert "A letter with a table." in letter["pages"][0]["text"]
    assert "Lisbon" in letter["pages"][0]["text"]


def test_a_docx_zip_bomb_fails_and_its_neighbour_is_unaffected(alice, tmp_path) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            for _ in range(256):
                member.write(b"\0" * (1024 * 1024))
    (tmp_path / "bomb.docx").write_bytes(bomb.getvalue())
    (tmp_path / "fine.txt").write_text("Grüße from a perfectly fine file.\n", encoding="utf-8")

    bad, good = (
        alice.wait(alice.upload_file(tmp_path / name)["jobId"], timeout=60) for name in ("bomb.docx", "fine.txt")
    )

    assert (bad["state"], bad["error"]["code"]) == ("failed", "archive.unsafe")
    assert good["state"] == "ready"
    assert text_of(alice, good)["pages"][0]["text"] == "Grüße from a perfectly fine file.\n"
