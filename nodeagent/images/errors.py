"""The image errors, each with the reason Kubernetes shows in `waiting.reason`."""

from __future__ import annotations

from nodeagent.errors import NodeAgentError


class ImageError(NodeAgentError):
    """Base of the image errors; `reason` is Kubernetes' word for it, `message` the detail."""

    reason = "ErrImagePull"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidImageNameError(ImageError):
    """An image reference that does not parse, worded as the kubelet words it."""

    reason = "InvalidImageName"


class ImagePullError(ImageError):
    """A pull that failed: the registry's own error text, a refused connection, a bad digest, a bad layer."""

    reason = "ErrImagePull"


class ImageNeverPullError(ImageError):
    """The image is not in the store and the pull policy is Never."""

    reason = "ErrImageNeverPull"

    def __init__(self, image: str) -> None:
        self.image = image
        super().__init__(f'Container image "{image}" is not present with pull policy of Never')


class MountError(ImageError):
    """An overlayfs mount or unmount that the kernel refused."""

    reason = "CreateContainerError"
