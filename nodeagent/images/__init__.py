"""Images for the runc runtime: pulled from OCI registries, kept in a content-addressed store, mounted
through overlayfs.

    reference.py   what an image name means (pure)           manifest.py   OCI/Docker documents (pure)
    credentials.py docker config.json                        auth.py       WWW-Authenticate, tokens
    registry.py    the distribution API over aiohttp         unpack.py     layer tars -> directories
    layout.py      the store's files on disk                 pull.py       one pull into the store
    store.py       ImageStore: ensure, list, prune, leases   overlay.py    mount_rootfs, unmount
    errors.py      ImagePullError and the others, each with Kubernetes' reason
    budget.py      how much a pull may unpack
"""
