#!/usr/bin/env bash
# Disk benchmark: csvmm vs QEMU 7.2 reading through virtio-blk and IDE DMA with the tiny-guest driver.
#
#   bench/disk/run.sh                   4 workloads × cache=writeback,none × csvmm/QEMU, 5 runs each (~3 min with QEMU only)
#   bench/disk/run.sh --quick           1 run, writeback only, 64 MiB sequential, fewer random requests (~15 s)
#   bench/disk/run.sh --runs K --cache writeback|none|both --only virtio-seq ... --seq-qd Q
#
# The report is printed and written to bench/build/disk/results.md (bench/results.md is not touched). The test
# image (320 MiB of the guests' pattern, non-zero) is cached in ${XDG_CACHE_HOME:-~/.cache}/csvmm/bench; guest images,
# raw samples and build logs go to bench/build/disk/ (git-ignored). csvmm is out/csvmm; until it has virtio-blk and
# IDE its cells read "not available" or "failed: ..." and QEMU is still measured.
set -euo pipefail
DISK_BENCH=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(dirname "$(dirname "$DISK_BENCH")")
BUILD=$ROOT/bench/build/disk
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/csvmm/bench
IMAGE_MIB=320
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/disk/run.sh: %s\n' "$*" >&2; exit 1; }

runs=5 cache=both quick=0 only=() seq_qd=1 rand_requests=20000 ide_rand_requests=2000 seq_mib=256
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --cache) cache=${2:?--cache needs writeback, none or both}; shift ;;
    --seq-qd) seq_qd=${2:?--seq-qd needs a number}; shift ;;
    --only) shift; while (($#)) && [[ $1 != --* ]]; do only+=("$1"); shift; done; continue ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
  shift
done
if ((quick)); then runs=1 cache=writeback seq_mib=64 rand_requests=4000 ide_rand_requests=300; fi

for tool in dotnet python3 qemu-system-x86_64; do command -v "$tool" >/dev/null || die "$tool is required"; done
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"
mkdir -p "$BUILD" "$CACHE_DIR"

log "guest images"
timeout 600 dotnet build "$DISK_BENCH" -c Release -nologo -v quiet >"$BUILD/build.log" 2>&1 \
  || { grep -E 'error' "$BUILD/build.log" | sort -u | head -20 >&2; die "building bench/disk failed (bench/build/disk/build.log)"; }
tool="$DISK_BENCH/bin/Release/net10.0/Csvmm.Bench.Disk.dll"
rm -rf "$BUILD/images"
timeout 120 dotnet "$tool" images "$BUILD/images" --seq-bytes $((seq_mib << 20)) --seq-request-kib 128 --seq-qd "$seq_qd" \
  --rand-requests "$rand_requests" --ide-rand-requests "$ide_rand_requests" --rand-qd 32 >/dev/null

disk=$CACHE_DIR/disk-${IMAGE_MIB}M.img
if [ ! -s "$disk" ] || [ "$(stat -c %s "$disk")" -ne $((IMAGE_MIB << 20)) ]; then
  log "test image $disk (${IMAGE_MIB} MiB)"
  timeout 300 dotnet "$tool" pattern-image "$disk.tmp" "$IMAGE_MIB" 0x5eed >/dev/null && mv "$disk.tmp" "$disk"
fi

settings="Images: sequential ${seq_mib} MiB in 128 KiB requests at queue depth ${seq_qd}; random 4 KiB reads, ${rand_requests} requests at QD 32 (virtio), ${ide_rand_requests} at QD 1 (IDE)."
log "running (report -> bench/build/disk/results.md)"
exec timeout 3600 python3 "$DISK_BENCH/bench_disk.py" --images "$BUILD/images" --disk "$disk" --csvmm "$ROOT/out/csvmm" \
  --runs "$runs" --cache "$cache" ${only[@]+--only "${only[@]}"} --settings "$settings" \
  --output "$BUILD/results.md" --raw "$BUILD/raw.json"
