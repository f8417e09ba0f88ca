"""The TensorRT bundle built and timed on a device through the runner.

TensorRT cannot run here, so `trtexec` is a FAKE (a shell script named as such): it writes a stand-in
engine for `--saveEngine` and a `--exportTimes` file for `--loadEngine`, printing the banner lines of a
real TensorRT 10.3 run on a Jetson Orin (tests/data). Everything else is real: the bundle from
`edgekit export`, its build.sh, the local transport, the device agent and the manifest update.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgekit.resources import demo_paths

BANNER = Path(__file__).parent / "data" / "trtexec_10.3.0_jetson_orin.log"

FAKE_TRTEXEC = r"""#!/bin/sh
# FAKE trtexec for tests: no TensorRT here.
echo build >> "$(dirname "$0")/calls"
for a in "$@"; do
  case "$a" in
    --saveEngine=*) printf 'fake engine' > "${a#--saveEngine=}" ;;
    --exportTimes=*) times="${a#--exportTimes=}" ;;
    --loadEngine=*) load=1 ;;
  esac
done
if [ -n "${load:-}" ] && [ -n "${times:-}" ]; then
  python3 -c 'import json,sys; json.dump([{"latencyMs": 1.0 + i / 100.0, "computeMs": 1.0} for i in range(50)], open(sys.argv[1], "w"))' "$times"
fi
cat "$(dirname "$0")/banner.log"
"""


def test_bundle_builds_on_device_and_engine_comes_home(tmp_path: Path, run_cli, monkeypatch) -> None:
    fake_dir = tmp_path / "fakebin"
    fake_dir.mkdir()
    fake = fake_dir / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    (fake_dir / "banner.log").write_text(BANNER.read_text())
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[devices.orin]\ntransport = "local"\ntarget = "jetson-orin-nano"\nworkdir = "{tmp_path / "device"}"\n'
    )
    paths = demo_paths()
    code, out, err = run_cli(
        "export",
        paths["model"],
        "--target",
        "jetson-orin-nano",
        "--int8",
        "--calib",
        paths["calib"],
        "-o",
        tmp_path / "arts",
        "--json",
    )
    assert code == 0, err
    artifact = Path(json.loads(out)["artifact"])
    results = tmp_path / "results.jsonl"
    code, out, err = run_cli(
        "bench", artifact, "--devices", devices, "--iterations", "50", "-o", results, "--json"
    )
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["status"] == "ok" and record["runtime"]["name"] == "trtexec"
    assert record["latency_ms"]["min"] == 1.0 and record["latency_ms"]["max"] == 1.49
    manifest = json.loads((artifact / "manifest.json").read_text())
    build = manifest["details"]["device_builds"]["orin"]
    assert build["tensorrt"] == "10.3.0" and build["gpu"]["compute_capability"] == "8.7"
    engine = artifact / build["engine"]
    assert engine.read_bytes() == b"fake engine"
    assert any(f["path"] == build["engine"] for f in manifest["files"])
    calls = (fake_dir / "calls").read_text().split()
    assert len(calls) == 2  # one build, one timed run

    # the second run uses the engine that came home: no second build
    code, out, err = run_cli(
        "bench", artifact, "--devices", devices, "--iterations", "50", "-o", results, "--json"
    )
    assert code == 0, err
    assert len((fake_dir / "calls").read_text().split()) == 3
