#!/bin/bash
# Build the VM image of nodeagent's VM suite (adapted from shared/tools/nodevm/build-image.sh).
#
#   build-image.sh OUTDIR ROOTFS WHEELS REQUIREMENTS
#
# Writes OUTDIR/{vmlinuz,initrd.img,disk.img}:
#   vmlinuz     the host's Debian kernel (from /boot)
#   initrd.img  a busybox initramfs that loads virtio/ext4/9p and switches to /dev/vda
#   disk.img    ext4: Debian bookworm minbase + $PACKAGES, a Python venv at /opt/nodeagent-venv with
#               REQUIREMENTS installed from the wheels in WHEELS (pip --no-index: no network needed),
#               and nodeagent-vm-runner.service, which runs the host's job and powers off.
# ROOTFS is the debootstrapped tree, kept between builds and debootstrapped again only when the
# package list changes (its key is in ROOTFS/.nodeagent-rootfs-key); the rest is redone every build.
# The caller (tests/vm/vm.py) decides when to build: it keys OUTDIR by a hash of this file, the
# requirements and the kernel.
# Needs (host): debootstrap linux-image-amd64 busybox-static e2fsprogs cpio kmod.
set -euo pipefail

[ $# -eq 4 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
OUTDIR=$1 ROOTFS=$2 WHEELS=$3 REQUIREMENTS=$4
SUITE=bookworm
# What the guest tests use: systemd + D-Bus (the systemd driver), conmon (the process runtime), stress
# (the docs' memory examples), util-linux (fallocate, mkswap, swapon, setpriv, nsenter), runc and crun;
# iproute2 and nftables, which the agent uses for pod networks; busybox-static and docker-registry for
# the runc tests' image and registry.
PACKAGES=systemd,systemd-sysv,dbus,udev,python3,python3-venv,iproute2,nftables,procps,util-linux,kmod,conmon,stress,runc,crun,busybox-static,docker-registry
VENV=/opt/nodeagent-venv

apt_mirror() {   # the machine's own apt mirror: first URIs: line of a deb822 source, else the first deb line
    { awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
      awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null; } | grep -m1 -E '^https?://' || true
}
MIRROR=${MIRROR:-$(apt_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
KVER=${KVER:-$(ls /lib/modules | grep -E -- '-amd64$' | grep -v cloud | sort -V | tail -1)}
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] || { echo "build-image: need linux-image-amd64 installed on the host" >&2; exit 1; }
for tool in debootstrap mkfs.ext4 cpio depmod modprobe; do
    command -v $tool >/dev/null || { echo "build-image: $tool is missing on the host" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "build-image: busybox-static is missing on the host" >&2; exit 1; }
mkdir -p "$OUTDIR"
step() { echo "build-image: $(date +%T) $*" >&2; }
# a build killed half-way can leave the host's /dev or /proc mounted in the tree: never delete or pack those
unmount_rootfs() {
    local target
    for target in $(awk -v r="$(realpath -m "$ROOTFS")" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
        umount "$target" || umount -l "$target"
    done
    if awk -v r="$(realpath -m "$ROOTFS")" '$2 == r || index($2, r "/") == 1 {found=1} END {exit !found}' /proc/self/mounts; then
        echo "build-image: something is still mounted under $ROOTFS" >&2; exit 1
    fi
}
unmount_rootfs

# 1. root filesystem: debootstrap only when the package list changed ---------------------------------
rootfs_key="$SUITE $PACKAGES"
if [ "$(cat "$ROOTFS/.nodeagent-rootfs-key" 2>/dev/null)" != "$rootfs_key" ]; then
    step "debootstrap $SUITE from $MIRROR"
    rm -rf --one-file-system "$ROOTFS"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" > "$OUTDIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$OUTDIR/debootstrap.log" >&2; exit 1; }
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/*
    echo "$rootfs_key" > "$ROOTFS/.nodeagent-rootfs-key"
else
    step "reusing the root filesystem in $ROOTFS"
fi

step "configuring the guest"
echo nodevm > "$ROOTFS/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 nodevm\n' > "$ROOTFS/etc/hosts"
echo 4e6f64655654d2a1b2c3d4e5f6a7b8c9 > "$ROOTFS/etc/machine-id"   # fixed: no first-boot logic
printf '# root (/dev/vda) is mounted rw by the initramfs\n' > "$ROOTFS/etc/fstab"
ln -sf /lib/systemd/system/multi-user.target "$ROOTFS/etc/systemd/system/default.target"
chroot "$ROOTFS" passwd -d root >/dev/null
mkdir -p "$ROOTFS/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' > "$ROOTFS/etc/systemd/journald.conf.d/nodevm.conf"
# nothing periodic or interactive in a throwaway test VM
for u in getty@tty1.service serial-getty@ttyS0.service apt-daily.timer apt-daily-upgrade.timer \
         e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-timesyncd.service \
         man-db.timer systemd-tmpfiles-clean.timer systemd-binfmt.service \
         modprobe@loop.service modprobe@dm_mod.service modprobe@fuse.service modprobe@drm.service \
         modprobe@efi_pstore.service; do
    ln -sf /dev/null "$ROOTFS/etc/systemd/system/$u"
done

# the in-guest runner: mounts the 9p shares, runs the job, writes its output and exit code back, powers off
cat > "$ROOTFS/usr/local/sbin/nodeagent-vm-runner" <<'EOF'
#!/bin/bash
# Runs inside the guest as root (nodeagent-vm-runner.service), once systemd has booted.
CTL=/run/nodevm/ctl
mkdir -p $CTL
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none nodevm_ctl $CTL; then
    echo "nodeagent-vm-runner: cannot mount the control share" > /dev/console
    echo o > /proc/sysrq-trigger; exit 1
fi
date +%s.%N > $CTL/guest_started
. $CTL/env            # NODEVM_HOSTDIR
mkdir -p /host
# cache=loose: the checkout does not change while the guest runs, and uncached 9p reads under TCG
# cost ~15 ms a file, seconds for each Python start
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,access=any nodevm_host /host
if [ "$NODEVM_HOSTDIR" != /host ]; then
    mkdir -p "$NODEVM_HOSTDIR" && mount --bind /host "$NODEVM_HOSTDIR"
fi
cd "$NODEVM_HOSTDIR"
export HOME=/root PATH=/opt/nodeagent-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
timeout 120 systemctl is-system-running --wait > $CTL/system_state 2>&1
date +%s.%N > $CTL/command_started
echo "nodeagent-vm-runner: systemd is $(cat $CTL/system_state); running the job" > /dev/console
/bin/bash $CTL/cmd > $CTL/stdout 2> $CTL/stderr < /dev/null
echo $? > $CTL/rc.tmp
date +%s.%N > $CTL/command_ended
journalctl -b --no-pager -o short-monotonic > $CTL/journal.txt 2>&1
mv $CTL/rc.tmp $CTL/rc
echo "nodeagent-vm-runner: the job exited $(cat $CTL/rc); powering off" > /dev/console
sync
echo o > /proc/sysrq-trigger
EOF
chmod 755 "$ROOTFS/usr/local/sbin/nodeagent-vm-runner"
cat > "$ROOTFS/etc/systemd/system/nodeagent-vm-runner.service" <<'EOF'
[Unit]
Description=nodeagent VM suite runner
# after multi-user.target and Type=exec: the boot transaction completes, so that
# `systemctl is-system-running` reaches "running" while the job runs
After=multi-user.target dbus.service systemd-logind.service
Wants=dbus.service

[Service]
Type=exec
ExecStart=/usr/local/sbin/nodeagent-vm-runner
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/nodeagent-vm-runner.service \
    "$ROOTFS/etc/systemd/system/multi-user.target.wants/nodeagent-vm-runner.service"

# 2. the Python venv, from wheels downloaded on the host (the guest has no network) -------------------
step "guest venv from $WHEELS"
trap unmount_rootfs EXIT
mount -t proc proc "$ROOTFS/proc"
mount --bind /dev "$ROOTFS/dev"
mkdir -p "$ROOTFS/wheels"
mount --bind "$WHEELS" "$ROOTFS/wheels"
cp "$REQUIREMENTS" "$ROOTFS/tmp/requirements.txt"
rm -rf "$ROOTFS$VENV"
chroot "$ROOTFS" /usr/bin/python3 -m venv "$VENV"
chroot "$ROOTFS" env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "$VENV/bin/pip" install --quiet --no-index \
    --find-links /wheels --disable-pip-version-check -r /tmp/requirements.txt
unmount_rootfs
trap - EXIT
rmdir "$ROOTFS/wheels"
rm -f "$ROOTFS/tmp/requirements.txt"

# 3. kernel modules (a subset) ---------------------------------------------------------------------------
step "kernel modules of $KVER"
M=/lib/modules/$KVER
rm -rf "$ROOTFS/lib/modules"; mkdir -p "$ROOTFS$M/kernel/drivers/net"
cp -a $M/modules.order $M/modules.builtin* "$ROOTFS$M/"
for d in arch block crypto fs lib mm net virt drivers/virtio drivers/block drivers/char drivers/md; do
    [ -d "$M/kernel/$d" ] && { mkdir -p "$ROOTFS$M/kernel/$(dirname $d)"; cp -a "$M/kernel/$d" "$ROOTFS$M/kernel/$d"; }
done
for f in veth.ko tun.ko dummy.ko virtio_net.ko net_failover.ko macvlan.ko ipvlan/ipvlan.ko; do
    [ -f "$M/kernel/drivers/net/$f" ] && cp "$M/kernel/drivers/net/$f" "$ROOTFS$M/kernel/drivers/net/"
done
depmod -b "$ROOTFS" "$KVER"

# 4. initramfs --------------------------------------------------------------------------------------------
step "initramfs"
IR=$(mktemp -d)
mkdir -p $IR/bin $IR/proc $IR/sys $IR/dev $IR/newroot $IR/mods
cp /bin/busybox $IR/bin/busybox
for m in virtio_pci virtio_blk ext4 9pnet_virtio 9p; do modprobe -S "$KVER" --show-depends $m; done \
  | awk '$1=="insmod"{print $2}' | awk '!s[$0]++' > $IR/order.full
: > $IR/order
while read -r p; do cp "$p" $IR/mods/; basename "$p" >> $IR/order; done < $IR/order.full
rm $IR/order.full
cat > $IR/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /order); do insmod /mods/$m 2>/dev/null; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
mount -t ext4 -o rw,noatime /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; sleep 1; poweroff -f; }
umount /proc /sys; mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot /sbin/init
EOF
chmod 755 $IR/init
(cd $IR && find . | cpio -o -H newc --quiet) > "$OUTDIR/initrd.img"
rm -rf $IR
cp /boot/vmlinuz-$KVER "$OUTDIR/vmlinuz"

# 5. disk image ---------------------------------------------------------------------------------------------
step "disk image"
rm -f "$OUTDIR/disk.img"
mkfs.ext4 -q -F -L nodevm-root -d "$ROOTFS" "$OUTDIR/disk.img" 3G
step "done: $(du -sh "$OUTDIR/disk.img" | cut -f1) used of a 3G disk"
