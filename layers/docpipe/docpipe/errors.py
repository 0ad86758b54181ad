"""One error model for the whole service.

Every error carries a stable machine-readable ``code``, a human ``message`` and whether it is
``retryable``. :data:`HTTP_STATUS` maps error classes to HTTP statuses; queue workers mark a task
``failed`` for a non-retryable error and let a retryable (or unknown) one propagate so that the
batch processor reports the record as failed and SQS redelivers it.
"""

from __future__ import annotations


class DocpipeError(Exception):
    code = "internal"
    message = "Internal error."
    retryable = False
    # Seconds after which the same request may succeed (an HTTP ``Retry-After``), when waiting helps.
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, code: str | None = None, retry_after: int | None = None) -> None:
        self.message = message or type(self).message
        if code:
            self.code = code
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(self.message)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(DocpipeError):
    code = "request.invalid"
    message = "The request is not valid."


class RequestTooLarge(BadRequest):
    code = "request.too_large"
    message = "The request body is larger than the API accepts."


class UnsupportedMediaType(BadRequest):
    code = "request.unsupported_media_type"
    message = "Request bodies are JSON: send them as application/json."


class Unauthorized(DocpipeError):
    code = "auth.required"
    message = "A valid bearer token is required."


class Forbidden(DocpipeError):
    code = "auth.forbidden"
    message = "This route is for operators (the AdminGroup claim)."


class NotFound(DocpipeError):
    code = "not_found"
    message = "Not found."


class FileTooLarge(DocpipeError):
    code = "file.too_large"
    message = "The file is larger than the limit."


class UnsupportedType(DocpipeError):
    code = "file.unsupported_type"
    message = "This type of file is not accepted."


class FileEmpty(DocpipeError):
    code = "file.empty"
    message = "The file is empty."


class FileCorrupt(DocpipeError):
    code = "file.corrupt"
    message = "The file is corrupt or truncated."


class TypeMismatch(DocpipeError):
    code = "file.type_mismatch"
    message = "The file's contents do not match its name."


class ImageTooManyPixels(DocpipeError):
    code = "image.too_many_pixels"
    message = "The image has more pixels than the limit."


class PageTooLarge(DocpipeError):
    """A scanned PDF page so large that even rendered at the lowest resolution OCR reads (72 dpi) it
    would have more pixels than a page may have."""

    code = "page.too_large"
    message = "The page is too large to render for OCR at a readable resolution."


class UploadMissing(DocpipeError):
    code = "upload.missing"
    message = "The uploaded object is gone before it could be ingested."


class UploadExpired(DocpipeError):
    code = "upload.expired"
    message = "The upload never arrived: its link expired before a file was stored with it. Upload the file again."


class Transient(DocpipeError):
    """A fault worth retrying: a race still settling, a throttled or unreachable dependency."""

    code = "internal.transient"
    message = "A temporary fault; the work will be retried."
    retryable = True


class PdfEncrypted(DocpipeError):
    code = "pdf.encrypted"
    message = "The PDF is encrypted with a password."


class ArchiveUnsafe(DocpipeError):
    code = "archive.unsafe"
    message = (
        "The file's archive is unsafe to open (too large when unpacked, too many entries, or external references)."
    )


class TooSlow(ArchiveUnsafe):
    """Reading a file passed its time limit: ``archive.unsafe`` (a file built to take forever), unless the
    limit was cut short by the invocation's own time; then its caller retries it (:class:`Transient`)."""


class OcrUnavailable(DocpipeError):
    """The OCR engine cannot be reached or is not installed; worth retrying."""

    code = "ocr.unavailable"
    message = "The OCR engine is unavailable."
    retryable = True


class OcrBusy(OcrUnavailable):
    """The OCR API's shared rate (``TextractTps``) is spent: the message comes back later, uncalled."""

    code = "ocr.busy"
    message = "The OCR service is at its rate limit; this page will be read shortly."


class TaskBusy(Transient):
    """Another invocation is running the same task for the same bytes (a duplicated message)."""

    code = "task.busy"
    message = "The same task is running in another invocation; this message will be tried again."


class Conflict(DocpipeError):
    code = "job.conflict"
    message = "The job is not in a state that allows this."


class QuotaExceeded(DocpipeError):
    """A per-user limit is reached; ``retry_after`` is set when waiting frees room (a window resets, jobs end)."""

    code = "quota.exceeded"
    message = "A usage limit is reached."


class QuotaUnavailable(Transient):
    """The quota store cannot be read or written: the request is refused (503), never admitted unchecked."""

    code = "quota.unavailable"
    message = "Usage limits cannot be checked right now; try again shortly."
    retry_after = 5


class FileInfected(DocpipeError):
    """The malware scan found a signature in the bytes (the message names it); they are quarantined."""

    code = "file.infected"
    message = "The file contains malware."


class FileMacro(DocpipeError):
    """An Office file carries VBA macros (``vbaProject.bin``) and the stack does not allow them."""

    code = "file.macro"
    message = "The Office file contains macros, which this service does not accept."


class PdfActiveContent(DocpipeError):
    """A PDF carries JavaScript or a launch action and the stack refuses them (RefusePdfActiveContent)."""

    code = "pdf.active_content"
    message = "The PDF contains JavaScript or a launch action, which this service does not accept."


class ScanUnavailable(DocpipeError):
    """The malware scanner cannot be reached or could not scan: retried, never taken as clean."""

    code = "scan.unavailable"
    message = "The malware scanner is unavailable; the file was not scanned. Retry the job later."
    retryable = True


class ScanUnsupported(DocpipeError):
    """The scanner could not scan the bytes (GuardDuty's UNSUPPORTED: a limit or an unreadable archive)."""

    code = "scan.unsupported"
    message = "The malware scanner cannot scan this file, so it is not processed."


HTTP_STATUS: dict[type[DocpipeError], int] = {
    BadRequest: 400,
    RequestTooLarge: 413,
    UnsupportedMediaType: 415,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    FileTooLarge: 413,
    UnsupportedType: 415,
    FileEmpty: 400,
    TypeMismatch: 415,
    Transient: 503,
    Conflict: 409,
    QuotaExceeded: 429,
}


def http_status(error: DocpipeError) -> int:
    """The HTTP status for an error: its class's entry, or its nearest ancestor's, else 500."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
