#!/usr/bin/env python3
"""Disk benchmark: the tiny-guest driver (tests/Csvmm.TinyGuests) reading through virtio-blk and IDE DMA, csvmm vs QEMU.

Driven by bench/disk/run.sh, which builds the guest images and the test image first. Four workloads, each a BIOS
image whose 64-bit CPL3 driver finds its controller on PCI bus 0 and prints BENCH markers on COM1:

  virtio-seq     256 MiB sequential, 128 KiB requests (queue depth: --seq-qd of the images, default 1)
  virtio-rand    4 KiB random reads at queue depth 32
  ide-dma-seq    256 MiB sequential, 128 KiB READ DMA commands
  ide-dma-rand   4 KiB random READ DMA, queue depth 1 (IDE has no command queue)

Time is measured on the host between the arrival of the "BENCH x-start" and "BENCH x-done N" lines on the VMM's
stdout (an unbuffered pipe, timestamped with time.perf_counter as each newline arrives), so VMM start-up, firmware,
PCI enumeration and device set-up are not in it. Each VMM runs the same image against the same disk image with the
same cache mode: cache=writeback (both defaults) and cache=none (O_DIRECT; QEMU with aio=threads).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import first_line, fmt_num, fmt_ratio, load_average, median, table, verdict  # noqa: E402

WORKLOADS = ["virtio-seq", "virtio-rand", "ide-dma-seq", "ide-dma-rand"]
CACHE_MODES = ["writeback", "none"]
MEMORY_MIB = 512
TARGETS = {"virtio": 1.2, "ide-dma": 1.0}      # csvmm / QEMU, from the issue
DONE_LINE = re.compile(r"BENCH (seq|rand)-done (\d+)")


# ---- one run -----------------------------------------------------------------------------------------------------

@dataclass
class Sample:
    seconds: Optional[float]        # between the BENCH markers
    requests: int
    failure: Optional[str]


def run_guest(cmd: list[str], timeout: float) -> tuple[list[tuple[float, str]], int, bool, str]:
    """Runs cmd; returns (timestamped stdout lines, exit code, timed out, stderr tail). Kills its own session on timeout."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0, start_new_session=True)
    lines: list[tuple[float, str]] = []
    partial = b""
    err = b""
    deadline = time.perf_counter() + timeout
    timed_out = False
    fds = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    while fds:
        left = deadline - time.perf_counter()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(fds), [], [], left)
        now = time.perf_counter()
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del fds[fd]
                continue
            if fds[fd] == "err":
                err = (err + chunk)[-4096:]
                continue
            partial += chunk
            while b"\n" in partial:
                line, partial = partial.split(b"\n", 1)
                lines.append((now, line.decode("latin-1").rstrip("\r")))
    if timed_out:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    code = proc.wait()
    if partial:
        lines.append((time.perf_counter(), partial.decode("latin-1")))
    return lines, code, timed_out, err.decode(errors="replace")


def measure(cmd: list[str], timeout: float, pass_code: int) -> Sample:
    lines, code, timed_out, err = run_guest(cmd, timeout)
    texts = [t for _, t in lines]
    fail = next((t for t in texts if t.startswith("FAIL")), None)
    start = next((at for at, t in lines if re.match(r"BENCH (seq|rand)-start$", t)), None)
    done = next(((at, int(m.group(2))) for at, t in lines if (m := DONE_LINE.match(t))), None)
    if timed_out:
        why = f"timed out after {timeout:.0f} s"
    elif fail:
        why = f"guest: {fail}"
    elif code != pass_code or "PASS" not in texts:
        tail = (err.strip() or " / ".join(texts[-3:])).splitlines()
        why = f"exit code {code}, expected {pass_code}" + (f": {tail[-1][:160]}" if tail else "")
    elif start is None or done is None:
        why = "no BENCH markers in the guest's output"
    else:
        return Sample(done[0] - start, done[1], None)
    return Sample(None, 0, why)


# ---- the VMMs ----------------------------------------------------------------------------------------------------

def interface(workload: str) -> str:
    return "virtio" if workload.startswith("virtio") else "ide-dma"


def qemu_cmd(qemu: str, image: Path, disk: Path, workload: str, cache: str) -> list[str]:
    drive = f"file={disk},if=none,id=d0,format=raw," + ("cache=none,aio=threads" if cache == "none" else "cache=writeback")
    device = "virtio-blk-pci,drive=d0,disable-legacy=on" if interface(workload) == "virtio" else "ide-hd,drive=d0,bus=ide.0,unit=0"
    return [qemu, "-enable-kvm", "-M", "pc", "-m", str(MEMORY_MIB), "-bios", str(image), "-display", "none", "-nodefaults",
            "-no-reboot", "-serial", "stdio", "-monitor", "none", "-device", "isa-debug-exit,iobase=0xf4,iosize=1",
            "-drive", drive, "-device", device]


def csvmm_cmd(csvmm: Path, image: Path, disk: Path, workload: str, cache: str) -> list[str]:
    spec = f"{disk},if={'virtio' if interface(workload) == 'virtio' else 'ide'}" + (",cache=none" if cache == "none" else "")
    return [str(csvmm), "--firmware", str(image), "--memory", f"{MEMORY_MIB}M", "--disk", spec, "--serial", "stdio"]


@dataclass
class Cell:
    """One workload × cache mode × VMM."""
    samples: list[float] = field(default_factory=list)   # seconds between markers
    requests: int = 0
    failure: Optional[str] = None


# ---- main --------------------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="directory with virtio-seq.bin ... ide-dma-rand.bin")
    ap.add_argument("--disk", type=Path, required=True, help="raw test image (256+ MiB, non-zero data)")
    ap.add_argument("--csvmm", type=Path, required=True)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", choices=["writeback", "none", "both"], default="both")
    ap.add_argument("--only", nargs="*", choices=WORKLOADS, help="workloads to run (default: all four)")
    ap.add_argument("--timeout", type=float, default=120.0, help="per VMM run, seconds")
    ap.add_argument("--settings", default="", help="one line describing how the images were built (from run.sh)")
    ap.add_argument("--output", type=Path, help="also write the markdown report here")
    ap.add_argument("--raw", type=Path, help="write every sample as JSON here")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent.parent)
    args = ap.parse_args()

    workloads = args.only or WORKLOADS
    caches = CACHE_MODES if args.cache == "both" else [args.cache]
    disk_bytes = args.disk.stat().st_size
    began = time.perf_counter()
    load_start = load_average()

    csvmm_unavailable: Optional[str] = None
    if not (args.csvmm.is_file() and os.access(args.csvmm, os.X_OK)):
        csvmm_unavailable = f"{args.csvmm} is missing (./build.sh builds it)"

    cells: dict[tuple[str, str, str], Cell] = {}
    for w in workloads:
        image = args.images / f"{w}.bin"
        for cache in caches:
            vmms = [("QEMU", qemu_cmd(args.qemu, image, args.disk, w, cache), 1)]
            if csvmm_unavailable is None:
                vmms.insert(0, ("csvmm", csvmm_cmd(args.csvmm, image, args.disk, w, cache), 0))
            for name, _, _ in vmms:
                cells[(w, cache, name)] = Cell()
            # Warm-up run per VMM (page cache, first-touch of guest RAM), not counted.
            for name, cmd, code in vmms:
                s = measure(cmd, args.timeout, code)
                if s.failure:
                    cells[(w, cache, name)].failure = s.failure
            for r in range(args.runs):
                for name, cmd, code in vmms:          # interleaved, so drift on the machine hits both alike
                    cell = cells[(w, cache, name)]
                    if cell.failure:
                        continue
                    s = measure(cmd, args.timeout, code)
                    if s.failure:
                        cell.failure = s.failure
                        continue
                    cell.samples.append(s.seconds)
                    cell.requests = s.requests
                    print(f"  {w:13} cache={cache:9} {name:5} run {r + 1}: {s.seconds:.3f} s ({s.requests} requests)",
                          file=sys.stderr, flush=True)

    report = render(args, workloads, caches, cells, csvmm_unavailable, disk_bytes, began, load_start)
    print(report)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report + "\n")
    if args.raw:
        args.raw.write_text(json.dumps({f"{w}|{c}|{v}": asdict(cell) for (w, c, v), cell in cells.items()}, indent=1))
    return 0


def rate(cell: Cell, workload: str, request_bytes: int) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """(median, min, max) of MB/s (seq) or IOPS (rand)."""
    if cell.failure or not cell.samples:
        return None, None, None
    per = [cell.requests * (request_bytes / 1e6 if workload.endswith("seq") else 1) / s for s in cell.samples]
    return median(per), min(per), max(per)


def render(args, workloads, caches, cells, csvmm_unavailable, disk_bytes, began, load_start) -> str:
    commit = first_line(["git", "-C", str(args.root), "rev-parse", "--short", "HEAD"])
    model = "unknown"
    try:
        model = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    modules = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm"))
    kind = ("emulating, nested: see bench/README.md, "This host"" if "kvm_pvm" in modules
            else "hardware virtualization" if {"kvm_intel", "kvm_amd"} & set(modules) else "unknown")
    out = [
        "# csvmm disk benchmark",
        "",
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {model}, {os.cpu_count()} CPUs; kernel {platform.release()}; KVM modules: {', '.join(modules) or 'none'} ({kind})",
        f"- csvmm: {args.csvmm} at commit {commit} plus the working tree"
        + (f" — **csvmm: not available** ({csvmm_unavailable})" if csvmm_unavailable else "")
        + f"; QEMU: {first_line([args.qemu, '--version'])}, `-M pc`, virtio-blk-pci disable-legacy=on / ide-hd on PIIX3",
        f"- Guest: tests/Csvmm.TinyGuests disk guest, 64-bit CPL3 driver that enumerates PCI itself, polls (no interrupts), "
        f"{MEMORY_MIB} MiB RAM; test image {args.disk} ({disk_bytes / 2**20:.0f} MiB of non-zero pattern data), raw.",
        f"- Settings: {args.runs} measured run(s) per VMM and cell after one warm-up run, interleaved, median reported (min–max beside it); "
        f"time between the guest's BENCH start and done lines on the host. MB = 10^6 bytes. {args.settings}",
        "",
    ]
    for cache in caches:
        out.append(f"## cache={cache}" + (" (O_DIRECT; QEMU aio=threads)" if cache == "none" else " (host page cache)"))
        out.append("")
        rows = []
        for w in workloads:
            seq = w.endswith("seq")
            req = 128 * 1024 if seq else 4096
            unit = "MB/s" if seq else "IOPS"
            c = cells.get((w, cache, "csvmm"))
            q = cells[(w, cache, "QEMU")]
            cm, cmin, cmax = rate(c, w, req) if c else (None, None, None)
            qm, qmin, qmax = rate(q, w, req)
            ratio = cm / qm if cm and qm else None
            target = TARGETS[interface(w)]
            met = None if ratio is None else ratio >= target
            note = "QD 1: IDE has no command queue" if w == "ide-dma-rand" else ""
            csvmm_text = ("not available" if csvmm_unavailable or c is None
                          else f"not available ({c.failure})" if c.failure else f"{fmt_num(cm, 0)} ({fmt_num(cmin, 0)}–{fmt_num(cmax, 0)})")
            qemu_text = f"failed: {q.failure}" if q.failure else f"{fmt_num(qm, 0)} ({fmt_num(qmin, 0)}–{fmt_num(qmax, 0)})"
            rows.append([w, unit, csvmm_text, qemu_text, fmt_ratio(ratio), f"≥ {target:.1f}×: {verdict(met)}", note])
        out += table(["workload", "unit", "csvmm", "QEMU", "csvmm / QEMU", "target", "note"], rows)
        out.append("")
    out.append(f"_Disk benchmark took {time.perf_counter() - began:.0f} s; 1-minute load average {load_start} at the start, "
               f"{load_average()} at the end ({os.cpu_count()} CPUs), VMMs run at nice {os.nice(0)}._")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
