#!/usr/bin/env bash
# Build a tiny container image from Debian's busybox-static, with no registry and no network: an
# oci-archive (an OCI image layout in a tar) named localhost/busybox:static, for `nodeagent images load`
# (or `ctr images import`, `podman load`). One layer: /bin/busybox, a link per applet, /etc/passwd and
# /etc/group, empty /tmp /proc /sys /dev /root. The tar is deterministic: the same busybox, the same digest.
#   scripts/busybox-image.sh [OUTPUT]       default OUTPUT: busybox.tar
#   NODEAGENT_IMAGE_NAME=localhost/tools:1 scripts/busybox-image.sh tools.tar
# Installs busybox-static with apt-get when it is missing (as root).
set -euo pipefail
output="${1:-busybox.tar}"
name="${NODEAGENT_IMAGE_NAME:-localhost/busybox:static}"
if ! dpkg -s busybox-static 2>/dev/null | grep -q '^Status: install ok installed'; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "busybox-static is not installed: run this with sudo, or apt-get install busybox-static" >&2
        exit 1
    fi
    echo "installing busybox-static" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
case "$(dpkg --print-architecture)" in
    amd64) arch='"architecture":"amd64"' ;;
    arm64) arch='"architecture":"arm64","variant":"v8"' ;;
    armhf) arch='"architecture":"arm","variant":"v7"' ;;
    i386) arch='"architecture":"386"' ;;
    *) arch="\"architecture\":\"$(dpkg --print-architecture)\"" ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs" layout="$work/layout"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,root} "$rootfs/tmp" "$layout/blobs/sha256"
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list-full); do
    [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$rootfs/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu -cf "$work/layer.tar" .

# blob FILE: store FILE under its digest, print '"digest":"sha256:...","size":N'
blob() {
    local digest
    digest="$(sha256sum "$1" | cut -d' ' -f1)"
    cp "$1" "$layout/blobs/sha256/$digest"
    printf '"digest":"sha256:%s","size":%d' "$digest" "$(stat -c %s "$1")"
}
layer="$(blob "$work/layer.tar")"
diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
printf '{%s,"os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$diff_id" >"$work/config.json"
config="$(blob "$work/config.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json",%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",%s}]}' \
    "$config" "$layer" >"$work/manifest.json"
manifest="$(blob "$work/manifest.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$name" "${name##*:}" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
tar -C "$layout" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$output" oci-layout index.json blobs
echo "$output: $name ($(stat -c %s "$output") bytes)" >&2
