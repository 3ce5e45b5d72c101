"""A pod's volumes: the sources nodeagent mounts (emptyDir, hostPath, downwardAPI, projected downwardAPI),
and every other v1 source, modelled to be refused by name (nodeagent.api.validation_fields)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from nodeagent.api.k8s import K8sModel, ObjectFieldSelector, QuantityField, ResourceFieldSelector, validated_name


class EmptyDirVolumeSource(K8sModel):
    medium: str = ""
    size_limit: QuantityField | None = None


class HostPathVolumeSource(K8sModel):
    path: str | None = None
    type: str = ""


class DownwardAPIVolumeFile(K8sModel):
    path: str | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(K8sModel):
    items: list[DownwardAPIVolumeFile] | None = None
    default_mode: int = 0o644


class DownwardAPIProjection(K8sModel):
    items: list[DownwardAPIVolumeFile] | None = None


class VolumeProjection(K8sModel):
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    # Need an API server: refused.
    config_map: Any = None
    secret: Any = None
    service_account_token: Any = None
    cluster_trust_bundle: Any = None
    pod_certificate: Any = None


class ProjectedVolumeSource(K8sModel):
    sources: list[VolumeProjection] | None = None
    default_mode: int = 0o644


# Volume sources nodeagent does not mount, by JSON name: {name: why it is refused}.
UNSUPPORTED_VOLUME_SOURCES = {
    **dict.fromkeys(("persistentVolumeClaim", "configMap", "secret", "ephemeral"), "needs an API server"),
    **dict.fromkeys(
        ("gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume",
         "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk",
         "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos", "csi", "image"),
        "is not supported by nodeagent"),
}


class Volume(K8sModel):
    name: str | None = None

    @property
    def valid_name(self) -> str:
        return validated_name(self.name, "a volume")
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    # Refused (UNSUPPORTED_VOLUME_SOURCES), never ignored.
    persistent_volume_claim: Any = None
    config_map: Any = None
    secret: Any = None
    projected: ProjectedVolumeSource | None = None
    ephemeral: Any = None
    gce_persistent_disk: Any = None
    aws_elastic_block_store: Any = None
    git_repo: Any = None
    nfs: Any = None
    iscsi: Any = None
    glusterfs: Any = None
    rbd: Any = None
    flex_volume: Any = None
    cinder: Any = None
    cephfs: Any = None
    flocker: Any = None
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")
    fc: Any = None
    azure_file: Any = None
    vsphere_volume: Any = None
    quobyte: Any = None
    azure_disk: Any = None
    photon_persistent_disk: Any = None
    portworx_volume: Any = None
    scale_io: Any = Field(default=None, alias="scaleIO")
    storageos: Any = None
    csi: Any = None
    image: Any = None

    @model_validator(mode="before")
    @classmethod
    def _default_to_empty_dir(cls, data: Any) -> Any:
        """API defaulting (SetDefaults_Volume): a volume with no source is an emptyDir."""
        sources = ("emptyDir", "hostPath", "downwardAPI", "projected", *UNSUPPORTED_VOLUME_SOURCES)
        if isinstance(data, dict) and not any(data.get(source) is not None for source in sources):
            data = {**data, "emptyDir": {}}
        return data


# {JSON name: attribute name} of the refused sources, to read them without dumping the model.
_ATTRIBUTES = {field.alias or name: name for name, field in Volume.model_fields.items()}
_UNSUPPORTED_ATTRIBUTES = {source: _ATTRIBUTES[source] for source in UNSUPPORTED_VOLUME_SOURCES}


def unsupported_sources(volume: Volume) -> list[str]:
    """The JSON names of the refused sources (UNSUPPORTED_VOLUME_SOURCES) that `volume` sets, in that order."""
    return [source for source, attribute in _UNSUPPORTED_ATTRIBUTES.items() if getattr(volume, attribute) is not None]


def downward_source(volume: Volume) -> DownwardAPIVolumeSource | None:
    """The files a downwardAPI volume, or a projected one (downwardAPI sources only), holds; None otherwise."""
    if volume.downward_api is not None:
        return volume.downward_api
    if volume.projected is None:
        return None
    items = [item for source in volume.projected.sources or [] if source.downward_api is not None
             for item in source.downward_api.items or []]
    return DownwardAPIVolumeSource.model_construct(items=items, default_mode=volume.projected.default_mode)
