#!/usr/bin/env bash
# csvmm benchmarks: csvmm vs QEMU 7.2 vs a minimal C KVM loop on this machine; writes bench/results.md.
#
#   bench/run.sh                  exits/s (PIO, MMIO), start -> first KVM_RUN, peak RSS   (~5 min)
#   bench/run.sh --quick          the same with N = 1000 and 1 run, written to bench/build/results-quick.md (~20 s)
#   bench/run.sh --only exits|startup
#   bench/run.sh --runs K --n N   K runs per VMM and image (default 5), N exits per measured run (default 1000000)
#   bench/run.sh --micro          BenchmarkDotNet micro-benchmarks (exit dispatch, UART); appends to bench/results.md
#
# Build products, guest images and strace logs go to bench/build/ (git-ignored).
set -euo pipefail
BENCH=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
ROOT=$(dirname "$BENCH")
BUILD=$BENCH/build
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

micro=0 quick=0 runs=5 n=1000000 only=""
while (($#)); do
  case $1 in
    --micro) micro=1 ;;
    --quick) quick=1 ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --n) n=${2:?--n needs a number}; shift ;;
    --only) only=${2:?--only needs exits or startup}; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
  shift
done
[[ $runs =~ ^[1-9][0-9]*$ && $n =~ ^[1-9][0-9]*$ ]] || die "--runs and --n take positive integers"
((quick)) && { runs=1; n=1000; }

for tool in dotnet python3; do command -v "$tool" >/dev/null || die "$tool is required"; done
mkdir -p "$BUILD"

if ((micro)); then
  log "micro-benchmarks (BenchmarkDotNet, short job)"
  rm -rf "$BUILD/micro"
  timeout 1800 dotnet run -c Release --project "$BENCH/micro" -- \
      --job short --filter '*' --artifacts "$BUILD/micro" >"$BUILD/micro.log" 2>&1 \
    || { tail -40 "$BUILD/micro.log" >&2; die "micro-benchmarks failed (bench/build/micro.log)"; }
  exec python3 "$BENCH/bench.py" micro-append --reports "$BUILD/micro/results" --output "$BENCH/results.md"
fi

for tool in gcc qemu-system-x86_64 strace; do command -v "$tool" >/dev/null || die "$tool is required (./build.sh installs it)"; done
[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"

log "C KVM loop and the RSS spawner"
gcc -O2 -Wall -Wextra -o "$BUILD/kvmloop" "$BENCH/kvmloop.c"
gcc -O2 -Wall -Wextra -o "$BUILD/maxrss" "$BENCH/maxrss.c"

log "guest images"
timeout 600 dotnet build "$BENCH/guests" -c Release -nologo -v quiet >"$BUILD/guests-build.log" 2>&1 \
  || { grep -E 'error' "$BUILD/guests-build.log" | sort -u | head -20 >&2; die "building bench/guests failed"; }
timeout 120 dotnet "$BENCH/guests/bin/Release/net10.0/Csvmm.Bench.Guests.dll" "$BUILD/images" 0 1000 "$n" >/dev/null

output=$BENCH/results.md
((quick)) && output=$BUILD/results-quick.md
log "running (results -> ${output#"$ROOT"/})"
exec timeout 3600 python3 "$BENCH/bench.py" vmm --images "$BUILD/images" --kvmloop "$BUILD/kvmloop" --maxrss "$BUILD/maxrss" \
  --csvmm "$ROOT/out/csvmm" --n "$n" --probe-n 1000 --runs "$runs" ${only:+--only "$only"} \
  --output "$output" --workdir "$BUILD/work" --root "$ROOT"
