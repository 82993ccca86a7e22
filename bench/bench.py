#!/usr/bin/env python3
"""csvmm's VMM benchmarks: runs csvmm, QEMU and a minimal C KVM loop side by side and writes a markdown report.

Driven by bench/run.sh, which builds the C loop and the guest images first. Three benchmarks:

  exits    wall time of N = 0 and N = 1,000,000 port-I/O / MMIO exits per VMM; exits/s = N / (T(N) - T(0)),
           so process start-up and teardown cancel out.
  startup  process start (execve) to the first KVM_RUN ioctl for a 512 MiB guest, from strace -ttt.
  rss      peak RSS (ru_maxrss, via the bench/maxrss.c spawner) of a 512 MiB guest that runs the N = 0 image.

Every subprocess has a timeout; a VMM that fails or times out is reported as such, never waited for.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

KVM_RUN = 0xAE80
STRACE = ["strace", "-f", "--seccomp-bpf", "-ttt", "-T", "-e", "trace=execve,ioctl"]
BENCH_MEMORY_MIB = 32          # the exit benchmarks' guest (as in the brief: --memory 32M / -m 32)
STARTUP_MEMORY_MIB = 512       # start-up and RSS benchmarks' guest

# Targets (printed next to the numbers).
TARGET_EXITS_VS_C = 0.95
TARGET_STARTUP_MS = 10.0
TARGET_RSS_VS_QEMU = 0.25


# ---- running one process ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One finished (or killed) process: wall time, CPU time, exit code, peak RSS and its output."""
    seconds: float
    cpu_seconds: float          # user + system, all threads (wait4)
    returncode: int
    maxrss_kib: int
    stdout: str
    stderr: str
    timed_out: bool


def run_process(cmd: list[str], timeout: float) -> Run:
    """Runs cmd with stdin from /dev/null; wall time by perf_counter around start and wait4; killed after timeout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        killed = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)

        def kill() -> None:
            killed.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the child's own session: only what we started
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        t1 = time.perf_counter()
        proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here; keeps Popen from waiting again
        out.seek(0)
        err.seek(0)
        return Run(t1 - t0, usage.ru_utime + usage.ru_stime, proc.returncode, usage.ru_maxrss,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"), killed.is_set())


def describe_failure(run: Run, expected: str) -> str:
    """One line: why a run does not count."""
    if run.timed_out:
        return f"timed out after {run.seconds:.1f} s"
    tail = (run.stderr.strip() or run.stdout.strip()).splitlines()
    detail = f": {tail[-1][:160]}" if tail else ""
    return f"exit code {run.returncode}, expected {expected}{detail}"


# ---- the VMMs ---------------------------------------------------------------------------------------------------

@dataclass
class Vmm:
    """How to start one VMM on a BIOS image and how to tell that it ran the guest to its end."""
    name: str
    command: Callable[[Path, int], list[str]]
    check: Callable[[Run, int], Optional[str]]        # (run, N) -> None if good, else why not
    unavailable: Optional[str] = None                 # set when the VMM cannot be measured at all


def csvmm_vmm(binary: Path) -> Vmm:
    def command(image: Path, mib: int) -> list[str]:
        return [str(binary), "--firmware", str(image), "--memory", f"{mib}M", "--serial", "none"]

    def check(run: Run, n: int) -> Optional[str]:
        return None if run.returncode == 0 and not run.timed_out else describe_failure(run, "0 (ACPI S5 power-off)")
    return Vmm("csvmm", command, check)


KVMLOOP_LINE = re.compile(r"kvmloop: exits=(\d+) io=(\d+) mmio=(\d+) stop=(\S+) seconds=([0-9.]+)")


def kvmloop_vmm(binary: Path, timeout: float) -> Vmm:
    def command(image: Path, mib: int) -> list[str]:
        return [str(binary), str(image), str(int(timeout) + 1), str(mib)]

    def check(run: Run, n: int) -> Optional[str]:
        if run.returncode != 0 or run.timed_out:
            return describe_failure(run, "0")
        m = KVMLOOP_LINE.search(run.stdout)
        if not m:
            return f"no result line in its output: {run.stdout.strip()[:160]!r}"
        exits = int(m.group(1))
        if exits != n + 1 or m.group(4) != "port-0xf4":
            return f"{exits} exits ending at {m.group(4)}; expected {n + 1} ending at port-0xf4"
        return None
    return Vmm("C loop", command, check)


def kvmloop_seconds(run: Run) -> Optional[float]:
    """The C loop's own timing of its KVM_RUN loop (excludes process start, VM set-up and teardown)."""
    m = KVMLOOP_LINE.search(run.stdout)
    return float(m.group(5)) if m else None


def qemu_vmm(binary: str) -> Vmm:
    def command(image: Path, mib: int) -> list[str]:
        return [binary, "-enable-kvm", "-machine", "pc", "-m", str(mib), "-bios", str(image), "-nographic",
                "-nodefaults", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-no-reboot"]

    def check(run: Run, n: int) -> Optional[str]:
        # isa-debug-exit ends QEMU with (value << 1) | 1; the guest writes 0.
        return None if run.returncode == 1 and not run.timed_out else describe_failure(run, "1 (isa-debug-exit, value 0)")
    return Vmm("QEMU", command, check)


# ---- statistics and formatting ----------------------------------------------------------------------------------

def median(xs: list[float]) -> Optional[float]:
    return statistics.median(xs) if xs else None


def fmt_num(x: Optional[float], digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def fmt_ratio(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def verdict(ok: Optional[bool]) -> str:
    return {True: "**met**", False: "**not met**", None: "**not measured**"}[ok]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table: the first column and any "note" column left-aligned, numbers right-aligned."""
    align = ["---" if i == 0 or h.startswith("note") else "--:" for i, h in enumerate(header)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


# ---- benchmark 1: exit round trips -------------------------------------------------------------------------------

@dataclass
class ExitResult:
    vmm: str
    t0: list[float] = field(default_factory=list)          # wall seconds, N = 0
    tn: list[float] = field(default_factory=list)          # wall seconds, N = big
    loop0: list[float] = field(default_factory=list)       # C loop only: its own KVM_RUN-loop timing
    loopn: list[float] = field(default_factory=list)
    cpu0: list[float] = field(default_factory=list)        # user + system seconds, N = 0
    cpun: list[float] = field(default_factory=list)
    failure: Optional[str] = None

    def rate(self, n: int) -> Optional[float]:
        a, b = median(self.t0), median(self.tn)
        return n / (b - a) if a is not None and b is not None and b > a and not self.failure else None

    def cpu_us_per_exit(self, n: int) -> Optional[float]:
        a, b = median(self.cpu0), median(self.cpun)
        return (b - a) * 1e6 / n if a is not None and b is not None and b > a and not self.failure else None

    def loop_rate(self, n: int) -> Optional[float]:
        a, b = median(self.loop0), median(self.loopn)
        return n / (b - a) if a is not None and b is not None and b > a and not self.failure else None


def bench_exits(kind: str, vmms: list[Vmm], images: Path, n: int, runs: int, timeout: float) -> list[ExitResult]:
    """Interleaves the VMMs and both image sizes run by run, so slow drift of the host hits all of them alike."""
    results = {v.name: ExitResult(v.name, failure=v.unavailable) for v in vmms}
    for rep in range(runs):
        for vmm in vmms:
            res = results[vmm.name]
            if res.failure:
                continue
            for count, samples, loop_samples, cpu_samples in ((0, res.t0, res.loop0, res.cpu0), (n, res.tn, res.loopn, res.cpun)):
                image = images / f"{kind}-{count}.bin"
                run = run_process(vmm.command(image, BENCH_MEMORY_MIB), timeout if count else min(timeout, 60))
                problem = vmm.check(run, count)
                if problem:
                    res.failure = f"{image.name}: {problem}"
                    print(f"  {vmm.name}: {res.failure}", file=sys.stderr)
                    break
                samples.append(run.seconds)
                cpu_samples.append(run.cpu_seconds)
                if (s := kvmloop_seconds(run)) is not None:
                    loop_samples.append(s)
            if not res.failure:
                print(f"  {kind} run {rep + 1}/{runs} {vmm.name}: T(0) = {res.t0[-1]:.3f} s, T({n:,}) = {res.tn[-1]:.3f} s",
                      file=sys.stderr)
    return list(results.values())


def exits_section(kind: str, title: str, results: list[ExitResult], n: int) -> list[str]:
    by = {r.vmm: r for r in results}
    c_rate = by["C loop"].rate(n) if "C loop" in by else None
    rows = []
    for r in results:
        rate = r.rate(n)
        if r.failure:
            rows.append([r.vmm, "—", "—", "—", "—", "—", f"not measured: {r.failure}", "—"])
            continue
        spread = f"{min(r.tn):.3f}–{max(r.tn):.3f}" if r.tn else "n/a"
        rows.append([r.vmm, fmt_num(median(r.t0), 3), fmt_num(median(r.tn), 3), spread, fmt_num(rate),
                     fmt_num(1e6 / rate, 2) if rate else "n/a",
                     fmt_ratio(rate / c_rate) if rate and c_rate else "n/a", fmt_num(r.cpu_us_per_exit(n), 2)])
    lines = [f"## {title}", ""]
    lines += table(["VMM", "T(N=0) s", f"T(N={n:,}) s", f"T(N={n:,}) min–max", "exits/s", "µs/exit", "vs C loop",
                    "CPU µs/exit"], rows)
    cs, qemu = by.get("csvmm"), by.get("QEMU")
    cs_rate = cs.rate(n) if cs else None
    q_rate = qemu.rate(n) if qemu else None
    ok = None if not (cs_rate and c_rate and q_rate) else (cs_rate >= TARGET_EXITS_VS_C * c_rate and cs_rate > q_rate)
    detail = ""
    if cs_rate and c_rate and q_rate:
        detail = f" (csvmm = {cs_rate / c_rate:.3f} × C loop, {cs_rate / q_rate:.3f} × QEMU)"
    lines += ["", f"Target: csvmm ≥ {TARGET_EXITS_VS_C} × C loop and ahead of QEMU on exits/s: {verdict(ok)}{detail}."]
    cpu = {name: r.cpu_us_per_exit(n) for name, r in by.items()}
    if cpu.get("csvmm") and cpu.get("C loop") and cpu.get("QEMU"):
        lines += [f"By CPU time per exit: csvmm {cpu['csvmm']:.2f} µs, C loop {cpu['C loop']:.2f} µs, QEMU {cpu['QEMU']:.2f} µs "
                  f"(csvmm's throughput at equal CPU = {cpu['C loop'] / cpu['csvmm']:.3f} × C loop, "
                  f"{cpu['QEMU'] / cpu['csvmm']:.3f} × QEMU)."]
    lines += ["CPU µs/exit: the same difference taken over the process's user + system time (wait4). Other work on the "
              "machine stretches wall time (see the min–max column) far more than CPU time, so when the spread is "
              "wide this column is the better comparison."]
    c = by.get("C loop")
    if c and (lr := c.loop_rate(n)):
        lines += [f"Cross-check: the C loop's own timer around its KVM_RUN loop gives {lr:,.0f} exits/s "
                  f"({1e6 / lr:.2f} µs/exit), the wall-time difference {fmt_num(c.rate(n))}."]
    lines.append("")
    return lines


# ---- benchmark 2: process start to first KVM_RUN -----------------------------------------------------------------

STRACE_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\d+\.\d+)\s+(.*?)(?:\s+<(\d+\.\d+)>)?$")
IOCTL_REQUEST = re.compile(r"^ioctl\(\d+,\s*([A-Za-z0-9_]+)")


@dataclass
class TraceSummary:
    """What an strace -f -ttt -T log says about start-up."""
    first_run_ms: float          # first execve → first ioctl(…, KVM_RUN, …)
    ioctls: int                  # ioctls made before it
    slowest: str                 # the slowest of them, "REQUEST x.y ms"


def summarize_trace(trace: str) -> Optional[TraceSummary]:
    start = None
    count, slowest_name, slowest_s = 0, "none", 0.0
    for line in trace.splitlines():
        m = STRACE_LINE.match(line)
        if not m:
            continue
        ts, call = float(m.group(2)), m.group(3)
        if start is None:
            if call.startswith("execve("):
                start = ts
            continue
        if not call.startswith("ioctl("):
            continue
        if "KVM_RUN" in call or f"{KVM_RUN:#x}" in call.lower():
            return TraceSummary((ts - start) * 1000.0, count, f"{slowest_name} {slowest_s * 1000:.1f} ms")
        count += 1
        if m.group(4) and float(m.group(4)) > slowest_s and (req := IOCTL_REQUEST.match(call)):
            slowest_name, slowest_s = req.group(1), float(m.group(4))
    return None


@dataclass
class StartupResult:
    vmm: str
    traced_ms: list[float] = field(default_factory=list)
    traces: list[TraceSummary] = field(default_factory=list)
    untraced_s: list[float] = field(default_factory=list)    # whole run of the N = 0 image, no strace
    rss_kib: list[int] = field(default_factory=list)
    failure: Optional[str] = None


def measure_maxrss(maxrss: Path, cmd: list[str], timeout: float, workdir: Path) -> tuple[Run, Optional[int]]:
    """Runs cmd under the maxrss spawner (see bench/maxrss.c for why not Python's own wait4); returns the run and KiB."""
    out = workdir / "maxrss.txt"
    out.unlink(missing_ok=True)
    run = run_process([str(maxrss), str(out)] + cmd, timeout)
    try:
        return run, int(out.read_text().strip())
    except (OSError, ValueError):
        return run, None


def bench_startup(vmms: list[Vmm], image: Path, runs: int, timeout: float, workdir: Path, maxrss: Path) -> list[StartupResult]:
    results = {v.name: StartupResult(v.name, failure=v.unavailable) for v in vmms}
    for rep in range(runs):
        for vmm in vmms:
            res = results[vmm.name]
            if res.failure:
                continue
            cmd = vmm.command(image, STARTUP_MEMORY_MIB)
            trace_file = workdir / f"strace-{vmm.name.replace(' ', '-')}-{rep}.txt"
            traced = run_process(STRACE + ["-o", str(trace_file), "--"] + cmd, timeout)
            problem = vmm.check(traced, 0)
            summary = summarize_trace(trace_file.read_text(errors="replace")) if trace_file.exists() else None
            if problem or summary is None:
                res.failure = f"under strace: {problem or 'no execve → KVM_RUN pair in ' + trace_file.name}"
                print(f"  {vmm.name}: {res.failure}", file=sys.stderr)
                continue
            ms = summary.first_run_ms
            res.traced_ms.append(ms)
            res.traces.append(summary)
            plain = run_process(cmd, timeout)
            if (problem := vmm.check(plain, 0)):
                res.failure = problem
                print(f"  {vmm.name}: {problem}", file=sys.stderr)
                continue
            res.untraced_s.append(plain.seconds)
            rss_run, kib = measure_maxrss(maxrss, cmd, timeout, workdir)
            if (problem := vmm.check(rss_run, 0)) or kib is None:
                res.failure = f"under bench/maxrss: {problem or 'no result'}"
                print(f"  {vmm.name}: {res.failure}", file=sys.stderr)
                continue
            res.rss_kib.append(kib)
            print(f"  start-up run {rep + 1}/{runs} {vmm.name}: first KVM_RUN at {ms:.1f} ms (strace), "
                  f"run {plain.seconds * 1000:.1f} ms, peak RSS {kib / 1024:.1f} MiB", file=sys.stderr)
    return list(results.values())


def startup_sections(results: list[StartupResult], image_name: str, rss_floor_kib: Optional[int]) -> list[str]:
    by = {r.vmm: r for r in results}
    lines = [f"## Process start → first KVM_RUN ({STARTUP_MEMORY_MIB} MiB guest)", ""]
    rows = []
    for r in results:
        if r.failure:
            rows.append([r.vmm, "—", "—", "—", f"not measured: {r.failure}"])
            continue
        # The run whose time is the median (upper one for an even count) describes the ioctls.
        mid = sorted(range(len(r.traced_ms)), key=lambda i: r.traced_ms[i])[len(r.traced_ms) // 2]
        rows.append([r.vmm, fmt_num(median(r.traced_ms), 1), f"{min(r.traced_ms):.1f}–{max(r.traced_ms):.1f}",
                     fmt_num(median(r.untraced_s) * 1000 if r.untraced_s else None, 1),
                     f"{r.traces[mid].ioctls} ioctls before KVM_RUN; slowest: {r.traces[mid].slowest}"])
    lines += table(["VMM", "execve → first KVM_RUN, ms (strace)", "min–max ms",
                    f"whole run of {image_name}, ms (no strace)", "note (median run)"], rows)
    cs = by.get("csvmm")
    cs_ms = median(cs.traced_ms) if cs and not cs.failure else None
    lines += ["", f"Target: csvmm ≤ {TARGET_STARTUP_MS:.0f} ms: {verdict(None if cs_ms is None else cs_ms <= TARGET_STARTUP_MS)}"
              + (f" ({cs_ms:.1f} ms)." if cs_ms is not None else "."),
              "Measured with `" + " ".join(STRACE) + "`: the time from the execve to the first ioctl whose request is "
              "KVM_RUN (0xae80). strace stops the traced process at every traced syscall (seccomp-bpf limits that to "
              "execve and ioctl, but every KVM set-up ioctl still pays a stop and a log write), so the absolute numbers "
              "are upper bounds, inflated most for the VMM that makes the most ioctls. The untraced whole-run column "
              "(start to exit of a guest that ends at once) bounds it from the other side without strace.",
              "The C loop sets up the same VM (512 MiB memslot, irqchip, PIT) and nothing else: its time is this host's "
              "floor. In the emulating kvm_pvm the first KVM_SET_USER_MEMORY_REGION alone costs several ms whatever the "
              "slot's size.", ""]

    lines += [f"## Peak RSS ({STARTUP_MEMORY_MIB} MiB guest running {image_name})", ""]
    q = by.get("QEMU")
    q_rss = median(q.rss_kib) if q and not q.failure and q.rss_kib else None
    rows = []
    for r in results:
        if r.failure or not r.rss_kib:
            rows.append([r.vmm, "—", "—", f"not measured: {r.failure}"])
            continue
        rss = median(r.rss_kib)
        rows.append([r.vmm, f"{rss / 1024:.1f}", fmt_ratio(rss / q_rss) if q_rss else "n/a", ""])
    lines += table(["VMM", "ru_maxrss, MiB (median)", "vs QEMU", "note"], rows)
    cs_rss = median(cs.rss_kib) if cs and not cs.failure and cs.rss_kib else None
    ok = None if cs_rss is None or q_rss is None else cs_rss <= TARGET_RSS_VS_QEMU * q_rss
    lines += ["", f"Target: csvmm ≤ {TARGET_RSS_VS_QEMU} × QEMU: {verdict(ok)}"
              + (f" ({cs_rss / q_rss:.3f} × QEMU)." if ok is not None else "."),
              "ru_maxrss of the VMM process (resident pages; guest RAM counts once touched, and this guest touches "
              "almost none of it), collected by bench/maxrss.c, a small spawner: a process forked from Python would "
              "inherit Python's ~17 MiB high-water mark until its execve. Measurement floor (`/bin/true` under the "
              f"spawner): {fmt_num(rss_floor_kib / 1024 if rss_floor_kib else None, 1)} MiB.", ""]
    return lines


# ---- machine description -----------------------------------------------------------------------------------------

def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine_description(qemu: str, csvmm: Path, root: Path) -> list[str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    modules = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm"))
    kind = ("emulating, nested: see bench/README.md, "This host"" if "kvm_pvm" in modules
            else "hardware virtualization" if {"kvm_intel", "kvm_amd"} & set(modules) else "unknown")
    commit = first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {model}, {os.cpu_count()} CPUs; kernel {platform.release()}; KVM modules: {', '.join(modules) or 'none'} ({kind})",
        f"- csvmm: {csvmm} (NativeAOT) at commit {commit} plus the working tree; QEMU: {first_line([qemu, '--version'])}; "
        f"C loop: bench/kvmloop.c, {first_line(['gcc', '--version'])}, -O2",
    ]


def load_average() -> str:
    """The 1-minute load average, or "?"."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


# ---- micro-benchmark report --------------------------------------------------------------------------------------

MICRO_HEADING = "## Micro-benchmarks (BenchmarkDotNet)"


def append_micro(results_md: Path, report_dir: Path) -> str:
    """Replaces the micro-benchmark section of results.md with BenchmarkDotNet's GitHub-markdown reports."""
    reports = sorted(report_dir.glob("*-report-github.md"))
    if not reports:
        raise SystemExit(f"bench.py: no BenchmarkDotNet reports (*-report-github.md) in {report_dir}")
    text = results_md.read_text() if results_md.exists() else "# csvmm benchmarks\n"
    before, _, rest = text.partition("\n" + MICRO_HEADING)
    after = ""   # sections written by other benchmarks (kernel boot, disk) after the micro section are kept
    if rest:
        cut = rest.find("\n## ")
        after = rest[cut:] if cut >= 0 else ""
    text = before.rstrip() + "\n"
    section = ["", MICRO_HEADING, "",
               f"Run {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `bench/run.sh --micro` "
               "(ShortRun job: 1 launch, 3 warm-ups, 3 iterations: the times are indicative; the Allocated column, from "
               "[MemoryDiagnoser], is exact, and \"-\" there means 0 B per operation).", ""]
    for report in reports:
        section += [f"### {report.name.removesuffix('-report-github.md').rsplit('.', 1)[-1]}", ""]
        section += [line.rstrip() for line in report.read_text().splitlines()]
        section.append("")
    text += "\n".join(section) + (("\n" + after.lstrip("\n")) if after else "")
    results_md.write_text(text)
    return "\n".join(section)


# ---- main --------------------------------------------------------------------------------------------------------

def probe_csvmm(vmm: Vmm, image: Path, n: int) -> None:
    """Marks csvmm unavailable (with the reason) unless it runs a small guest to its end."""
    if not Path(vmm.command(image, BENCH_MEMORY_MIB)[0]).exists():
        vmm.unavailable = "out/csvmm does not exist (run ./build.sh)"
        return
    run = run_process(vmm.command(image, BENCH_MEMORY_MIB), 30)
    if (problem := vmm.check(run, n)):
        vmm.unavailable = f"cannot run {image.name} yet: {problem}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    vm = sub.add_parser("vmm", help="run the VMM benchmarks and write the report")
    vm.add_argument("--images", type=Path, required=True)
    vm.add_argument("--kvmloop", type=Path, required=True)
    vm.add_argument("--maxrss", type=Path, required=True, help="the bench/maxrss.c spawner")
    vm.add_argument("--csvmm", type=Path, required=True)
    vm.add_argument("--qemu", default="qemu-system-x86_64")
    vm.add_argument("--n", type=int, default=1_000_000, help="exits per measured run (an image pio-N.bin must exist)")
    vm.add_argument("--probe-n", type=int, default=1000, help="small image used to check that csvmm works")
    vm.add_argument("--runs", type=int, default=5)
    vm.add_argument("--timeout", type=float, default=90, help="seconds allowed per VMM process")
    vm.add_argument("--only", choices=["exits", "startup"], help="run one benchmark only")
    vm.add_argument("--output", type=Path, required=True)
    vm.add_argument("--workdir", type=Path, required=True)
    vm.add_argument("--root", type=Path, required=True)
    mi = sub.add_parser("micro-append", help="append BenchmarkDotNet's reports to the report")
    mi.add_argument("--reports", type=Path, required=True)
    mi.add_argument("--output", type=Path, required=True)
    args = ap.parse_args()

    if args.command == "micro-append":
        print(append_micro(args.output, args.reports))
        return 0

    if args.runs < 1 or args.n < 1:
        ap.error("--runs and --n must be at least 1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    csvmm = csvmm_vmm(args.csvmm)
    probe_csvmm(csvmm, args.images / f"pio-{args.probe_n}.bin", args.probe_n)
    if csvmm.unavailable:
        print(f"bench.py: csvmm not measured: {csvmm.unavailable}", file=sys.stderr)
    vmms = [csvmm, kvmloop_vmm(args.kvmloop, args.timeout), qemu_vmm(args.qemu)]

    started = time.perf_counter()
    load_at_start = load_average()
    report = ["# csvmm benchmarks", ""] + machine_description(args.qemu, args.csvmm, args.root)
    report += [f"- Settings: N = {args.n:,} exits, {args.runs} run{'s' if args.runs != 1 else ''} of each VMM and image "
               "(interleaved), median reported; "
               "wall time by Python's time.perf_counter around each process; exits/s = N / (T(N) − T(0)), so "
               "process start-up and teardown cancel out. Exit-benchmark guests have 32 MiB of RAM.",
               "- This host's KVM emulates real- and protected-mode guest code (~2 M instructions/s), so an exit's round "
               "trip is dominated by KVM itself; on hardware KVM every number here will be different (see bench/README.md).",
               ""]
    raw: dict = {"n": args.n, "runs": args.runs}
    if args.only in (None, "exits"):
        for kind, title in (("pio", "Port-I/O exits (real mode, `out 0x80, al`)"),
                            ("mmio", "MMIO exits (32-bit protected mode, `mov [0xD0000000], eax`)")):
            print(f"bench.py: {title}", file=sys.stderr)
            results = bench_exits(kind, vmms, args.images, args.n, args.runs, args.timeout)
            report += exits_section(kind, title, results, args.n)
            raw[kind] = [asdict(r) for r in results]
    if args.only in (None, "startup"):
        print("bench.py: start-up and peak RSS", file=sys.stderr)
        results = bench_startup(vmms, args.images / "pio-0.bin", args.runs, min(args.timeout, 60), args.workdir, args.maxrss)
        _, floor = measure_maxrss(args.maxrss, ["/bin/true"], 10, args.workdir)
        report += startup_sections(results, "pio-0.bin", floor)
        raw["startup"] = [asdict(r) for r in results]
    report.append(f"_Benchmark run took {time.perf_counter() - started:.0f} s; 1-minute load average {load_at_start} at "
                  f"the start, {load_average()} at the end ({os.cpu_count()} CPUs), VMMs run at nice {os.nice(0)}: "
                  "anything else running on the machine inflates the wall times._")
    text = "\n".join(report) + "\n"
    # Keep the micro-benchmark section of an earlier `run.sh --micro` (it carries its own date).
    if args.output.exists() and (old := args.output.read_text()).find("\n" + MICRO_HEADING) >= 0:
        text += old[old.index("\n" + MICRO_HEADING):]
    args.output.write_text(text)
    (args.workdir / "raw.json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
