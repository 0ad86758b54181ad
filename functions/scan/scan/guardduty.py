"""GuardDuty Malware Protection for S3: its scan-result event, read into a verdict. Pure: no AWS calls.

The ``AWS::GuardDuty::MalwareProtectionPlan`` of the template protects the uploads bucket's ``uploads/``
prefix: GuardDuty scans each raw upload as it arrives and publishes a ``GuardDuty Malware Protection
Object Scan Result`` event to the default bus; an EventBridge rule sends it to the scan lanes' normal
queue, and the scan function applies it to the upload's job and bytes. Result statuses:

- ``NO_THREATS_FOUND``: clean;
- ``THREATS_FOUND``: infected, named by the first threat's name (``file.infected``);
- ``UNSUPPORTED``: GuardDuty skipped the object (a password-protected or over-deep archive, an object over
  its size quota): ``scan.unsupported``, never clean;
- ``ACCESS_DENIED``: its role cannot read the object (a KMS key, a changed policy): ``scan.unavailable``;
- ``FAILED``: an internal error on GuardDuty's side: ``scan.unavailable``.

The two last ones are worth a retry once the cause is fixed (``POST /jobs/{id}/retry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DETAIL_TYPE = "GuardDuty Malware Protection Object Scan Result"
ENGINE = "guardduty"
STATUSES = ("NO_THREATS_FOUND", "THREATS_FOUND", "UNSUPPORTED", "ACCESS_DENIED", "FAILED")


@dataclass(frozen=True)
class ScanResult:
    bucket: str
    key: str
    etag: str | None
    status: str  # one of STATUSES
    threats: tuple[str, ...]
    plan: str  # the plan's ARN (the event's resource), as the verdict's "version"


def is_scan_result(message: Any) -> bool:
    return isinstance(message, dict) and message.get("detail-type") == DETAIL_TYPE


def parse(event: dict[str, Any]) -> ScanResult:
    """The scan result of one event; ``ValueError`` for an event that does not have its shape."""
    detail = event.get("detail") or {}
    obj = detail.get("s3ObjectDetails") or {}
    result = detail.get("scanResultDetails") or {}
    status = str(result.get("scanResultStatus") or "")
    if status not in STATUSES or not obj.get("bucketName") or not obj.get("objectKey"):
        raise ValueError(f"not a GuardDuty scan result: status {status!r}")
    threats = tuple(str(t.get("name")) for t in result.get("threats") or [] if isinstance(t, dict) and t.get("name"))
    resources = event.get("resources") or [""]
    return ScanResult(
        str(obj["bucketName"]), str(obj["objectKey"]), obj.get("eTag"), status, threats, str(resources[0])
    )
