"""``accord desk``: serve the desk with uvicorn on ``desk.host``:``desk.port``."""

from __future__ import annotations

import logging

from desk.app import create_app
from services.common import serve
from settings import Settings


async def run_desk(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    await serve(create_app(settings), settings.desk.host, settings.desk.port, settings.log_level)
