#!/usr/bin/env python3
"""Save and restore of a running guest, csvmm vs QEMU 7.2 on the same files. Usage: bench/snapshot.py [RUNS]

The guest: the kit's test kernel (2 vCPUs, 96 MiB) booted until it has panicked for good (panic=0: init cannot run on
this project's emulating KVM, so the kernel stops there and waits, its RAM holding a booted kernel). Then over QMP:
  save     `migrate` to a file (csvmm `file:PATH`, QEMU `exec:cat > PATH`) until query-migrate says completed;
  restore  a new process from that file (csvmm `--incoming file:PATH`, QEMU the same command line + `-incoming
           exec:cat PATH`) from its start until query-status says running.
Also the file's size and the blocks it occupies."""
import json, os, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp

def kit(script):
    return subprocess.run([f"tests/guest/{script}"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

K = kit("build-kernel.sh"); INITRD = kit("build-initramfs.sh")
KERNEL = os.path.join(K, "bzImage")
APPEND = open(os.path.join(K, "cmdline")).read().strip().replace("panic=-1", "panic=0")
CSVMM = os.environ.get("CSVMM", "out/csvmm")

def vmm_argv(vmm, qmp, incoming=None):
    if vmm == "csvmm":
        if incoming:
            return [CSVMM, "--incoming", f"file:{incoming}", "--qmp", f"unix:{qmp},server=on,wait=off", "--serial", "stdio"]
        return [CSVMM, "--kernel", KERNEL, "--initrd", INITRD, "--append", APPEND, "--cpus", "2", "--memory", "96M",
                "--qmp", f"unix:{qmp},server=on,wait=off", "--serial", "stdio"]
    argv = ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-smp", "2", "-m", "96", "-kernel", KERNEL,
            "-initrd", INITRD, "-append", APPEND, "-display", "none", "-nodefaults", "-serial", "stdio",
            "-qmp", f"unix:{qmp},server=on,wait=off"]
    return argv + (["-incoming", f"exec:cat {incoming}"] if incoming else [])

def wait_for(p, marker, limit):
    buf = b""; t0 = time.perf_counter()
    os.set_blocking(p.stdout.fileno(), False)
    while time.perf_counter() < t0 + limit:
        try:
            chunk = os.read(p.stdout.fileno(), 65536)
        except BlockingIOError:
            time.sleep(0.1); continue
        if not chunk: raise RuntimeError(f"exited before '{marker}'")
        buf += chunk
        if marker.encode() in buf: return
    raise RuntimeError(f"no '{marker}' within {limit} s")

def one(vmm, d):
    qmp, snap = os.path.join(d, "qmp.sock"), os.path.join(d, "snap")
    p = subprocess.Popen(vmm_argv(vmm, qmp), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(p, "Kernel panic", 300)
        time.sleep(2)
        q = Qmp(qmp, time.perf_counter() + 10)
        uri = f"file:{snap}" if vmm == "csvmm" else f"exec:cat > {snap}"
        t0 = time.perf_counter()
        q.cmd("migrate", uri=uri)
        while q.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.005)
        save = time.perf_counter() - t0
        status = q.cmd("query-migrate").get("status")
        if status != "completed": raise RuntimeError(f"migrate: {status}")
    finally:
        p.kill(); p.wait()
    st = os.stat(snap)
    os.unlink(qmp) if os.path.exists(qmp) else None
    t0 = time.perf_counter()
    r = subprocess.Popen(vmm_argv(vmm, qmp, incoming=snap), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        q = Qmp(qmp, t0 + 30)
        while q.cmd("query-status").get("status") != "running":
            if time.perf_counter() > t0 + 60: raise RuntimeError("restored VM never ran")
            time.sleep(0.002)
        restore = time.perf_counter() - t0
    finally:
        r.kill(); r.wait()
    return save, restore, st.st_size, st.st_blocks * 512

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
print(f"# {runs} run(s), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}; guest: test kernel, 2 vCPUs, 96 MiB, after its panic")
for vmm in ("csvmm", "QEMU"):
    rows = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            try:
                rows.append(one(vmm, d))
                s, r, size, used = rows[-1]
                print(f"{vmm:5} save {s * 1000:.1f} ms, restore to running {r * 1000:.1f} ms, file {size / 2**20:.1f} MiB ({used / 2**20:.1f} MiB allocated)", flush=True)
            except Exception as e:
                print(f"{vmm:5} failed: {e}", flush=True)
    if rows:
        print(f"{vmm:5} median: save {statistics.median(x[0] for x in rows) * 1000:.1f} ms, restore {statistics.median(x[1] for x in rows) * 1000:.1f} ms, "
              f"file {statistics.median(x[2] for x in rows) / 2**20:.1f} MiB", flush=True)
