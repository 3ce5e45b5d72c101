"""A kubeconfig for this agent: the server, our CA's certificate, and a token of the static token file."""

from __future__ import annotations

import base64
from typing import Any

from nodeagent.kubeapi.auth import FULL_ACCESS_GROUP, READ_ONLY_GROUP, add_token, first_token
from nodeagent.kubeapi.listener import ApiSettings, client_host


class KubeconfigError(Exception):
    pass


def kubeconfig(settings: ApiSettings, *, user: str | None, read_only: bool) -> dict[str, Any]:
    """The kubeconfig `kubectl --kubeconfig` uses as it is. With a user, a new token is minted for it (in the
    read-only group with read_only, else the full-access one); without, the first full-access token."""
    if not settings.bind_address:
        raise KubeconfigError("nodeagent.apiBindAddress is empty: the Kubernetes API is off")
    try:
        with open(f"{settings.pki_dir}/ca.crt", "rb") as handle:
            ca = handle.read()
        if user is not None:
            group = (settings.read_only_groups or (READ_ONLY_GROUP,))[0] if read_only else \
                (settings.full_access_groups or (FULL_ACCESS_GROUP,))[0]
            token: str | None = add_token(settings.token_file, user, [group])
        else:
            token = first_token(settings.token_file, (settings.full_access_groups or (FULL_ACCESS_GROUP,))[0])
    except FileNotFoundError as exc:
        raise KubeconfigError(f"{exc.filename} is missing: start the agent once (it makes it)") from None
    except PermissionError as exc:
        raise KubeconfigError(f"cannot read {exc.filename}: run as root") from None
    if token is None:
        raise KubeconfigError(f"{settings.token_file} has no full-access token: use --user NAME")
    host = client_host(settings.host)
    server = f"https://[{host}]:{settings.port}" if ":" in host else f"https://{host}:{settings.port}"
    name = settings.node_name
    user_name = user or "admin"
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server,
                                                "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": f"{user_name}@{name}", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{user_name}@{name}",
                                                "namespace": "default"}}],
    }
