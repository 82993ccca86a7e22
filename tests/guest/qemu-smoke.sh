#!/usr/bin/env bash
# Proves the guest kit under QEMU (the reference VMM): boots the test kernel six ways and checks the serial log for
# the markers csvmm's own boot tests use. Usage: tests/guest/qemu-smoke.sh [bzimage|pvh|disk|grub-ide|grub-virtio|syslinux]...
# (default: all). grub-*: SeaBIOS boots the GRUB disk (build-boot-disk.sh) from IDE or virtio, no -kernel;
# syslinux: SeaBIOS boots the SYSLINUX disk (build-syslinux-disk.sh) from IDE.
# Each boot: qemu-system-x86_64 -accel "$accel" -m 64 -smp 2 (CSVMM_SMOKE_ACCEL=tcg: software emulation, for a host
# without /dev/kvm), 240 s timeout; the guest ends with panic=-1 -> reboot ->
# QEMU exits (-no-reboot). Logs with per-line host timestamps (seconds since QEMU started) go to $CSVMM_CACHE/smoke/.
#
# Debian package: qemu-system-x86 (plus those of the build scripts).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CSVMM_CACHE:-$HOME/.cache/csvmm}
timeout_s=${CSVMM_SMOKE_TIMEOUT:-240}

kernel=$("$here/build-kernel.sh" | tail -1)
initramfs=$("$here/build-initramfs.sh" | tail -1)
disk=$("$here/build-disk.sh" | tail -1)
boot_disk=$("$here/build-boot-disk.sh" | tail -1)
syslinux_disk=$("$here/build-syslinux-disk.sh" | tail -1)
accel=${CSVMM_SMOKE_ACCEL:-kvm}
cmdline=$(<"$kernel/cmdline")
logs=$cache/smoke
mkdir -p "$logs"

# boot NAME MARKER... -- QEMU-ARGS...: runs QEMU, stamps each serial line, then checks the markers appear in this order.
boot() {
  local name=$1; shift
  local markers=()
  while [[ $1 != -- ]]; do markers+=("$1"); shift; done
  shift
  local log=$logs/$name.log rc=0 start
  echo "== $name: qemu-system-x86_64 $*" >&2
  start=$EPOCHREALTIME
  timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -accel "$accel" -m 64 -smp 2 -nographic -no-reboot "$@" \
    </dev/null 2>&1 \
    | while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%8.3f %s\n' "$(bc <<<"$EPOCHREALTIME - $start")" "$line"
      done >"$log" || rc=$?
  local failed=0 m hit line at prev=0
  for m in "${markers[@]}"; do
    hit=$(grep -n -m1 -F -- "$m" "$log" || true)
    if [[ -z $hit ]]; then printf '  MISSING    %s\n' "$m" >&2; failed=1; continue; fi
    line=${hit%%:*} at=${hit#*:}
    printf '  %s s  %s\n' "${at:0:8}" "$m" >&2
    if ((line < prev)); then printf '  OUT OF ORDER: %s\n' "$m" >&2; failed=1; fi
    prev=$line
  done
  # How the guest ended: its own markers (hardware KVM) or the kernel's panic once user space failed (this project's hosts).
  grep -E 'csvmm-guest:|Kernel panic|reboot: ' "$log" | sed 's/^/  ... /' >&2 || true
  if ((rc != 0)); then
    echo "  QEMU did not exit by itself within ${timeout_s} s (exit status $rc)" >&2; failed=1
  else
    printf '  %8.3f s  QEMU exited\n' "$(bc <<<"$EPOCHREALTIME - $start")" >&2
  fi
  ((failed == 0)) || { echo "  FAILED: log in $log" >&2; return 1; }
}

common=("Linux version" "ACPI: RSDP" "smp: Brought up 1 node, 2 CPUs" "ttyS0 at I/O 0x3f8")
status=0
for variant in "${@:-bzimage pvh disk grub-ide grub-virtio syslinux}"; do
  for v in $variant; do
    case $v in
      bzimage) boot bzimage "${common[@]}" "Run /init as init process" -- \
                 -kernel "$kernel/bzImage" -initrd "$initramfs" -append "$cmdline" || status=1 ;;
      pvh) boot pvh "${common[@]}" "Run /init as init process" -- \
             -kernel "$kernel/vmlinux" -initrd "$initramfs" -append "$cmdline" || status=1 ;;
      disk) boot disk "${common[@]}" "virtio_blk virtio0: [vda]" " vda: vda1" "VFS: Mounted root (ext4 filesystem)" \
              "Run /sbin/init as init process" -- \
              -kernel "$kernel/bzImage" -drive "file=$disk,if=virtio,format=raw,readonly=on" \
              -append "$cmdline root=/dev/vda1 rootwait" || status=1 ;;
      grub-ide|grub-virtio)
        bus=${v#grub-}
        boot "$v" "csvmm-grub: loading the kernel" "csvmm-grub: booting" "${common[@]}" \
          "VFS: Mounted root (ext4 filesystem)" "Run /sbin/init as init process" -- \
          -drive "file=$boot_disk,if=$bus,format=raw,snapshot=on" || status=1 ;;
      syslinux) boot syslinux "SYSLINUX 6.04" "csvmm-syslinux: loading the kernel" "${common[@]}" "Run /init as init process" -- \
                  -drive "file=$syslinux_disk,if=ide,format=raw,snapshot=on" || status=1 ;;
      *) echo "unknown variant '$v' (bzimage, pvh, disk, grub-ide, grub-virtio, syslinux)" >&2; exit 2 ;;
    esac
  done
done
exit $status
