"""The fault run (issue 19): a fleet of three sshd devices on loopback - board-0 dies mid-run, board-1
changes its host key, board-2 stays healthy - benchmarked with `edgekit bench`, then a second pass that
is SIGTERMed halfway. Afterwards:

- no process of edgekit's is left (the bench, its local children, the agents on the "devices");
- results.jsonl parses line by line (nothing half-written) and holds at most one ok record per
  (artifact, device) pair, and one record per pair each pass finished;
- after the devices are back (board-0 restarted, board-1's new key in known_hosts), `--resume`
  completes the rest: every pair has exactly one ok record.

Run: `python benchmarks/bench_faults.py [--artifacts 4] [--iterations 300]` (needs sshd and ssh-keygen).
Exit 0 when every check holds; the summary is printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import ssh_device, write_devices  # noqa: E402
from tests.report_helpers import artifact  # noqa: E402
from tests.sshd import keygen, known_hosts_line, make_sshd, require_sshd  # noqa: E402


def _records(results: Path) -> tuple[list[dict], list[str]]:
    good, bad = [], []
    if not results.is_file():
        return good, bad
    for line in results.read_text(encoding="utf-8").splitlines():
        try:
            good.append(json.loads(line))
        except ValueError:
            bad.append(line[:80])
    return good, bad


def _left_over(marker: str) -> list[str]:
    """Live processes whose command line names this run's folder (agents, benches), sshd daemons aside."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marker in cmd and "sshd_config" not in cmd and "sshd:" not in cmd:
            out.append(f"{entry.name}: {cmd[:160]}")
    return out


def _bench(
    arts: list[Path], devices: Path, results: Path, iterations: int, resume: bool, env: dict
) -> subprocess.Popen:
    argv = [sys.executable, "-m", "edgekit", "bench", *map(str, arts), "--devices", str(devices)]
    for name in ("board-0", "board-1", "board-2"):
        argv += ["--device", name]
    argv += ["--iterations", str(iterations), "--warmup", "5", "-o", str(results), "--timeout", "60"]
    if resume:
        argv.append("--resume")
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_records(results: Path, count: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_records(results)[0]) >= count:
            return
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    require_sshd()
    root = Path(tempfile.mkdtemp(prefix="ekfault-"))
    marker = str(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEKIT_CACHE_DIR": str(root / "cache")}
    summary: dict = {"root": str(root), "checks": {}}
    servers = []
    try:
        client = keygen(root / "client_key")
        servers = [make_sshd(root / f"sshd-{i}", Path(f"{client}.pub")).start() for i in range(3)]
        known = root / "known_hosts"
        known.write_text("".join(known_hosts_line(s) for s in servers))
        blocks = [
            ssh_device(
                f"board-{i}", s.port, client, known, "x86-cpu", root / f"work-{i}", python=sys.executable
            )
            for i, s in enumerate(servers)
        ]
        devices = write_devices(root / "devices.toml", *blocks)
        arts = [
            artifact(root / "arts" / f"m{i}.x86-cpu.fp32", width=96 + 16 * i, depth=3)
            for i in range(args.artifacts)
        ]
        results = root / "results.jsonl"
        pairs = len(arts) * 3

        # pass 1: board-0 dies after the first records, board-1 comes back with another host key
        started = time.perf_counter()
        first = _bench(arts, devices, results, args.iterations, False, env)
        _wait_records(results, 2, first, 300)
        servers[0].kill()
        servers[1].kill()
        (servers[1].host_key).unlink()
        Path(str(servers[1].host_key) + ".pub").unlink()
        keygen(servers[1].host_key, "new host key")
        servers[1].start()
        out1, err1 = first.communicate(timeout=900)
        recs1, _ = _records(results)
        summary["pass1"] = {
            "exit": first.returncode,
            "records": len(recs1),
            "by_status": Counter(f"{r['device']['name']}:{r['status']}:{r.get('error_kind')}" for r in recs1),
            "wall_s": round(time.perf_counter() - started, 1),
        }

        # pass 2 (--resume): SIGTERM halfway through what is left
        ok_before = {(r["artifact"]["name"], r["device"]["name"]) for r in recs1 if r["status"] == "ok"}
        second = _bench(arts, devices, results, args.iterations, True, env)
        _wait_records(results, len(recs1) + 1, second, 300)
        second.send_signal(signal.SIGTERM)
        out2, err2 = second.communicate(timeout=120)
        time.sleep(2.0)  # agents on the "devices" notice their closed stdin
        recs2, bad2 = _records(results)
        summary["pass2"] = {
            "exit": second.returncode,
            "records": len(recs2) - len(recs1),
            "stderr_tail": err2[-300:],
        }
        left = _left_over(marker)
        summary["checks"]["no edgekit process left after SIGTERM"] = not left
        summary["left_over"] = left
        summary["checks"]["nothing half-written"] = not bad2
        oks = Counter((r["artifact"]["name"], r["device"]["name"]) for r in recs2 if r["status"] == "ok")
        summary["checks"]["at most one ok record per pair"] = all(v == 1 for v in oks.values())
        summary["checks"]["SIGTERM exits 143"] = second.returncode == 143

        # the devices are back: --resume completes the rest
        servers[0].start()
        known.write_text("".join(known_hosts_line(s) for s in servers))
        third = _bench(arts, devices, results, args.iterations, True, env)
        out3, err3 = third.communicate(timeout=900)
        recs3, bad3 = _records(results)
        oks = Counter((r["artifact"]["name"], r["device"]["name"]) for r in recs3 if r["status"] == "ok")
        summary["resume"] = {
            "exit": third.returncode,
            "records": len(recs3) - len(recs2),
            "stderr_tail": err3[-300:],
        }
        redone = [p for p in ok_before if oks[p] != 1]
        summary["checks"]["--resume completes every pair, one ok record each"] = (
            len(oks) == pairs and all(v == 1 for v in oks.values()) and not redone and not bad3
        )
        summary["checks"]["no edgekit process left at the end"] = not _left_over(marker)
    finally:
        for server in servers:
            server.kill()
    print(json.dumps(summary, indent=2, default=str))
    ok = all(summary["checks"].values())
    if ok:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
