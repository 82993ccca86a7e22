#!/usr/bin/env python3
"""The whole cost of one instruction KVM cannot emulate: a real-mode guest runs N x `popcnt eax, ebx` (every one an
emulation-failure exit on an emulating KVM such as kvm_pvm; csvmm's fallback decodes and executes it, writes the
registers back and resumes). Per instruction = (T(N) - T(0)) / N over whole csvmm runs, beside the same loop with
`out 0x80, al` (a port-I/O exit) for scale. QEMU stops at the first popcnt. Usage: bench/emulation_cost.py [RUNS] [N]
Needs the images of bench/guests (bench/run.sh builds them; or dotnet bench/guests/bin/Release/net10.0/
Csvmm.Bench.Guests.dll bench/build/images 0 N)."""
import os, statistics, subprocess, sys, time

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
img = "bench/build/images"
csvmm = os.environ.get("CSVMM", "out/csvmm")

def timed(argv):
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t0, p

def csvmm_run(name):
    return timed([csvmm, "--firmware", f"{img}/{name}.bin", "--memory", "32M", "--serial", "none", "--log-level", "information"])

print(f"# {runs} run(s), N = {n}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
for kind in ("popcnt", "pio"):
    t0s, tns = [], []
    for _ in range(runs):
        t0, p0 = csvmm_run(f"{kind}-0"); tn, pn = csvmm_run(f"{kind}-{n}")
        if pn.returncode != 0: sys.exit(f"csvmm {kind}-{n}: exit {pn.returncode}: {pn.stderr.strip()[-400:]}")
        t0s.append(t0); tns.append(tn)
    emulated = next((l for l in pn.stderr.splitlines() if "emulated" in l), "").split("] ")[-1]
    per = (statistics.median(tns) - statistics.median(t0s)) / n * 1e6
    print(f"csvmm {kind:6} T(0) {statistics.median(t0s):.3f} s  T(N) {statistics.median(tns):.3f} s "
          f"({min(tns):.3f}-{max(tns):.3f})  {per:.2f} us per loop iteration  {emulated}")
# QEMU on the same image: it does not exit after an emulation failure (it prints the registers and waits).
q = subprocess.Popen(["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", "32", "-bios", f"{img}/popcnt-{n}.bin",
                      "-display", "none", "-nodefaults", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-no-reboot"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
t0 = time.perf_counter(); first = ""
try:
    for line in q.stderr:
        if "internal error" in line.lower():
            first = line.strip(); break
finally:
    q.kill(); q.wait()
print(f"QEMU  popcnt after {time.perf_counter() - t0:.2f} s: {first or 'nothing on stderr'}")
