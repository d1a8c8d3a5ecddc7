"""The control API's suppression endpoint, which `relayd suppression` calls after it changed the list.

The command writes the state store itself, so it works while the daemon is
stopped. When the daemon runs, this call makes it read the list again at
once instead of at its next periodic check.
"""

from aiohttp import web

from relayd.http.queue_api import json_error
from relayd.state import StateError
from relayd.suppression import SuppressionList

PATH = "/v1/suppressions/refresh"


def suppression_routes(suppressions: SuppressionList) -> list[web.RouteDef]:
    async def refresh(request: web.Request) -> web.Response:
        try:
            changed = await suppressions.refresh()
        except StateError as exc:
            return json_error(503, f"cannot read the suppression list: {exc}")
        return web.json_response({"changed": changed, "addresses": len(suppressions)})

    return [web.post(PATH, refresh)]
