"""API Gateway HTTP API's CORS, as the template's ``HttpApi`` ``CorsConfiguration`` declares it.

API Gateway answers a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) itself,
before any authorizer or route, and adds ``Access-Control-Allow-Origin`` to the function's answers for an
allowed origin. The local gateway does the same, so that a page of another origin (an app that embeds
Uppy, say) can call the local API as it would call the deployed one. An origin not allowed gets no CORS
headers, and so the browser keeps the answer from the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docpipe_local.template import Template


def _names(values: Any) -> tuple[str, ...]:
    if isinstance(values, str):
        values = values.split(",")
    return tuple(str(v).strip() for v in values or () if str(v).strip())


@dataclass(frozen=True)
class Cors:
    origins: tuple[str, ...]
    headers: tuple[str, ...]
    methods: tuple[str, ...]
    expose: tuple[str, ...] = ()
    max_age: int | None = None

    @classmethod
    def from_template(cls, template: Template) -> Cors | None:
        """The first ``AWS::Serverless::HttpApi``'s CORS configuration, resolved; ``None`` without one."""
        for resource in template.of_type("AWS::Serverless::HttpApi").values():
            config = (resource.get("Properties") or {}).get("CorsConfiguration")
            if config:
                resolved = template.resolve(config)
                return cls(
                    origins=_names(resolved.get("AllowOrigins")),
                    headers=tuple(h.lower() for h in _names(resolved.get("AllowHeaders"))),
                    methods=tuple(m.upper() for m in _names(resolved.get("AllowMethods"))),
                    expose=_names(resolved.get("ExposeHeaders")),
                    max_age=int(resolved["MaxAge"]) if resolved.get("MaxAge") is not None else None,
                )
        return None

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def preflight(self, origin: str | None, method: str | None, headers: str | None) -> dict[str, str]:
        """The headers of the answer to a preflight: none when the origin, method or a header is not allowed."""
        asked = [h.strip().lower() for h in (headers or "").split(",") if h.strip()]
        if not self.allows(origin) or ((method or "").upper() not in self.methods and "*" not in self.methods):
            return {}
        if "*" not in self.headers and any(h not in self.headers for h in asked):
            return {}
        out = {
            "Access-Control-Allow-Origin": str(origin),
            "Access-Control-Allow-Methods": ",".join(self.methods),
            "Access-Control-Allow-Headers": ",".join(asked) if asked else ",".join(self.headers),
            "Vary": "Origin",
        }
        if self.max_age is not None:
            out["Access-Control-Max-Age"] = str(self.max_age)
        return out

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """What an allowed origin's answer carries besides the function's own headers."""
        if not self.allows(origin):
            return {}
        out = {"Access-Control-Allow-Origin": str(origin), "Vary": "Origin"}
        if self.expose:
            out["Access-Control-Expose-Headers"] = ",".join(self.expose)
        return out
