"""`v1 Status` objects, worded as the API server words its errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def status_error(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(status_body(code, reason, message, details), status=code)


def not_found(kind: str, name: str) -> web.Response:
    return status_error(404, "NotFound", f'{kind} "{name}" not found', {"name": name, "kind": kind})


def unauthorized() -> web.Response:
    return status_error(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, resource: str, namespace: str | None, name: str | None) -> web.Response:
    base = resource.split("/")[0]
    subject = f'{base} "{name}" is forbidden' if name else f"{base} is forbidden"
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = f'{subject}: User "{user}" cannot {verb} resource "{resource}" in API group ""{where}'
    return status_error(403, "Forbidden", message, {"name": name or "", "kind": base})


def method_not_allowed() -> web.Response:
    return status_error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource: "
                        "nodeagent serves static pods from their manifests; change the manifest instead")
