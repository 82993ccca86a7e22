#!/usr/bin/env bash
# tests/fuzz/run.sh NAME SECONDS [--keep]
# Runs one fuzz target (csvmm-fuzz list) under AFL++ for SECONDS, starting from tests/fuzz/corpus/NAME, with the
# Csvmm assemblies instrumented by SharpFuzz. Prints one line: executions, paths, edges, crashes, hangs. New
# crashes and hangs are copied to out/fuzz/NAME/{crashes,hangs}; exit 1 when there are any.
# CSVMM_FUZZ_SEED=N fixes AFL++'s random seed (./build.sh test sets it, so CI explores the same way each run).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
ROOT=$PWD
name=${1:?usage: tests/fuzz/run.sh NAME SECONDS}
seconds=${2:?usage: tests/fuzz/run.sh NAME SECONDS}
command -v afl-fuzz >/dev/null || { echo "run.sh: afl-fuzz not found (Debian package afl++; ./build.sh installs it)" >&2; exit 2; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# One instrumented copy of the harness, rebuilt when the harness or a Csvmm assembly changed.
bin=$ROOT/out/fuzz/bin
src=$ROOT/tests/fuzz/Csvmm.Fuzz/bin/Release/net10.0
if [ ! -f "$src/csvmm-fuzz.dll" ]; then
  dotnet build tests/fuzz/Csvmm.Fuzz -c Release -v quiet -nologo >/dev/null
fi
stamp=$(cd "$src" && cat Csvmm.*.dll csvmm.dll csvmm-fuzz.dll | sha256sum | cut -c1-16)
if [ "$(cat "$bin/.stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$bin"; mkdir -p "$bin"; cp -a "$src/." "$bin/"
  (cd tests/fuzz && dotnet tool restore >/dev/null)
  for dll in "$bin"/Csvmm.*.dll "$bin"/csvmm.dll; do
    (cd tests/fuzz && dotnet tool run sharpfuzz "$dll") >/dev/null
  done
  echo "$stamp" >"$bin/.stamp"
fi

corpus=$ROOT/tests/fuzz/corpus/$name
[ -d "$corpus" ] && [ -n "$(ls -A "$corpus")" ] || { echo "run.sh: no seed corpus at tests/fuzz/corpus/$name" >&2; exit 2; }
work=$ROOT/out/fuzz/$name
rm -rf "$work/findings"; mkdir -p "$work/crashes" "$work/hangs"
export AFL_SKIP_BIN_CHECK=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
# -t: per input, ms (the first run of a .NET method JIT-compiles it); -m none: the runtime reserves much address space.
seed=(); [ -n "${CSVMM_FUZZ_SEED:-}" ] && seed=(-s "$CSVMM_FUZZ_SEED")
timeout --kill-after=10 $((seconds + 60)) afl-fuzz -i "$corpus" -o "$work/findings" -t 5000 -m none -V "$seconds" "${seed[@]}" \
  -- dotnet "$bin/csvmm-fuzz.dll" run "$name" >"$work/afl.log" 2>&1 || true
stats=$work/findings/default/fuzzer_stats
[ -f "$stats" ] || { tail -20 "$work/afl.log" >&2; echo "run.sh: $name: afl-fuzz did not start (out/fuzz/$name/afl.log)" >&2; exit 2; }
get() { sed -n "s/^$1 *: *//p" "$stats"; }
crashes=0; hangs=0
for f in "$work"/findings/default/crashes/id:*; do [ -e "$f" ] || continue; cp "$f" "$work/crashes/"; crashes=$((crashes + 1)); done
for f in "$work"/findings/default/hangs/id:*; do [ -e "$f" ] || continue; cp "$f" "$work/hangs/"; hangs=$((hangs + 1)); done
echo "fuzz $name: $(get execs_done) execs in $(get run_time)s ($(get execs_per_sec)/s), $(get corpus_count) paths, $(get edges_found) edges ($(get bitmap_cvg)), $crashes crashes, $hangs hangs"
[ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ]
