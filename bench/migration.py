#!/usr/bin/env python3
"""Live migration, save and restore of a running guest: csvmm vs QEMU 7.2 on the same image, same host, same run.
Usage: bench/migration.py [RUNS]   (needs bench/build/images/ramwriter.bin: bench/run.sh builds it, or
dotnet bench/guests/bin/Release/net10.0/Csvmm.Bench.Guests.dll bench/build/images 0)

The guest (ramwriter.bin, a 64 KiB BIOS image both VMMs boot with -bios / --firmware): in 64-bit mode it rewrites
1 MiB of its RAM page by page without pause, checking each page still holds the previous round's number, and prints
every round's number on COM1. RAM is 64 MiB or 512 MiB; most of it is never written (zero).
  migrate   a second process waits (csvmm --incoming unix:PATH, QEMU -incoming unix:PATH); QMP migrate unix:PATH
            on the source; total time = from the command to query-migrate "completed"; downtime = what each VMM's
            query-migrate reports (QEMU: from the stop to the end of the transfer; csvmm: from the stop to the
            destination's acceptance, which includes loading it there); then the destination must count on without
            "BAD" (checked from its serial output).
  save      migrate to a file (csvmm file:PATH, QEMU exec:cat > PATH) until completed;
  restore   a new process from that file (csvmm --incoming file:PATH, QEMU -incoming "exec:cat PATH") from its start
            until query-status says running."""
import json, os, re, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp import Qmp

IMAGE = "bench/build/images/ramwriter.bin"
CSVMM = os.environ.get("CSVMM", "out/csvmm")

def argv(vmm, mem, qmp, serial, incoming=None):
    if vmm == "csvmm":
        a = [CSVMM, "--qmp", f"unix:{qmp},server=on,wait=off", "--serial", f"file:{serial}"]
        return a + (["--incoming", incoming] if incoming else ["--firmware", IMAGE, "--memory", f"{mem}M"])
    a = ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", str(mem), "-bios", IMAGE, "-display", "none",
         "-nodefaults", "-serial", f"file:{serial}", "-qmp", f"unix:{qmp},server=on,wait=off"]
    return a + (["-incoming", incoming] if incoming else [])

def numbers(path):
    try:
        text = open(path, "rb").read().decode("latin-1")
    except FileNotFoundError:
        return [], ""
    return [int(x, 16) for x in re.findall(r"(?m)^([0-9A-F]{8})$", text)], text

def wait_numbers(path, n, limit=60):
    t0 = time.perf_counter()
    while len(numbers(path)[0]) < n:
        if time.perf_counter() > t0 + limit: raise RuntimeError(f"{path}: fewer than {n} numbers: {numbers(path)[1][-200:]!r}")
        time.sleep(0.01)

def start(a):
    return subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)

def wait_migrated(q, limit=120):
    t0 = time.perf_counter()
    while True:
        info = q.cmd("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"): return info
        if time.perf_counter() > t0 + limit: raise RuntimeError("migration never ended")
        time.sleep(0.001)

def migrate(vmm, mem, d):
    sq, dq, ss, ds, sock = (os.path.join(d, x) for x in ("s.qmp", "d.qmp", "s.txt", "d.txt", "mig.sock"))
    dst = start(argv(vmm, mem, dq, ds, incoming=f"unix:{sock}"))
    src = start(argv(vmm, mem, sq, ss))
    try:
        wait_numbers(ss, 3)
        t = time.perf_counter() + 30
        while not os.path.exists(sock):
            if time.perf_counter() > t: raise RuntimeError("the destination never listened")
            time.sleep(0.005)
        q = Qmp(sq, time.perf_counter() + 30)
        t0 = time.perf_counter()
        q.cmd("migrate", uri=f"unix:{sock}")
        info = wait_migrated(q)
        total = time.perf_counter() - t0
        if info["status"] != "completed": raise RuntimeError(f"migrate: {info}")
        before = len(numbers(ss)[0])
        wait_numbers(ds, 3)
        after, text = numbers(ds)
        if "BAD" in text: raise RuntimeError("the migrated guest found a stale page")
        ram = info.get("ram", {})
        return total, info.get("downtime", -1) / 1000, ram.get("transferred", 0), before
    finally:
        for p in (src, dst):
            p.kill(); p.wait()

def save_restore(vmm, mem, d):
    qmp, serial, snap = os.path.join(d, "q.sock"), os.path.join(d, "s.txt"), os.path.join(d, "vm.snap")
    p = start(argv(vmm, mem, qmp, serial))
    try:
        wait_numbers(serial, 3)
        q = Qmp(qmp, time.perf_counter() + 30)
        t0 = time.perf_counter()
        q.cmd("migrate", uri=f"file:{snap}" if vmm == "csvmm" else f"exec:cat > {snap}")
        info = wait_migrated(q)
        save = time.perf_counter() - t0
        if info["status"] != "completed": raise RuntimeError(f"save: {info}")
    finally:
        p.kill(); p.wait()
    st = os.stat(snap); size = (st.st_size, st.st_blocks * 512)
    os.unlink(qmp) if os.path.exists(qmp) else None
    t0 = time.perf_counter()
    r = start(argv(vmm, mem, qmp, serial + "2", incoming=f"file:{snap}" if vmm == "csvmm" else f"exec:cat {snap}"))
    try:
        q = Qmp(qmp, t0 + 30)
        while q.cmd("query-status").get("status") != "running":
            if time.perf_counter() > t0 + 60: raise RuntimeError("restored VM never ran")
            time.sleep(0.001)
        restore = time.perf_counter() - t0
    finally:
        r.kill(); r.wait()
    return save, restore, size

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
print(f"# {runs} run(s) each, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}; "
      f"guest: ramwriter.bin (1 vCPU, rewrites 1 MiB all the time)")
for mem in (64, 512):
    for vmm in ("csvmm", "QEMU"):
        rows, files = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as d:
                try:
                    rows.append(migrate(vmm, mem, d))
                except Exception as e:
                    print(f"{vmm:5} {mem:3} MiB migrate failed: {e}", flush=True)
            with tempfile.TemporaryDirectory() as d:
                try:
                    files.append(save_restore(vmm, mem, d))
                except Exception as e:
                    print(f"{vmm:5} {mem:3} MiB save/restore failed: {e}", flush=True)
        if rows:
            print(f"{vmm:5} {mem:3} MiB  migrate: total {statistics.median(r[0] for r in rows) * 1000:7.1f} ms "
                  f"({min(r[0] for r in rows) * 1000:.1f}-{max(r[0] for r in rows) * 1000:.1f}), downtime "
                  f"{statistics.median(r[1] for r in rows) * 1000:6.1f} ms ({min(r[1] for r in rows) * 1000:.0f}-{max(r[1] for r in rows) * 1000:.0f}), "
                  f"sent {statistics.median(r[2] for r in rows) / 2**20:6.1f} MiB", flush=True)
        if files:
            print(f"{vmm:5} {mem:3} MiB  save {statistics.median(f[0] for f in files) * 1000:7.1f} ms, restore to running "
                  f"{statistics.median(f[1] for f in files) * 1000:7.1f} ms, file {statistics.median(f[2][0] for f in files) / 2**20:6.1f} MiB "
                  f"({statistics.median(f[2][1] for f in files) / 2**20:.1f} MiB allocated)", flush=True)
