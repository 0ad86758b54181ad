"""``GET /config``: what a client needs to know of this stack beyond the API, for the signed-in caller.

``{"push": {"url": "wss://…/push"}}`` is where to connect for live job updates (README, "Live progress"):
``?token=<the same JWT>``; ``null`` when the stack has no push channel, and the client polls.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from api.context import current_user, json_response
from docpipe.config import PushSettings

router = Router()
push_settings = PushSettings.from_env()


@router.get("/config")
def get_config() -> Response[str]:
    current_user()
    push = {"url": push_settings.url} if push_settings.url else None
    return json_response(200, {"push": push}, {"Cache-Control": "no-store"})
