"""A FAKE `adb` client for tests: no Android device or emulator runs here.

Installed by tests/test_transport_adb.py as an executable named `adb` first on PATH. It emulates the
parts of the real client edgekit uses, with the real client's argument handling and messages:

- `adb devices`                         -> "List of devices attached" + "SERIAL\\tSTATE" lines
- `adb -s SERIAL get-state`             -> "device", or the real error text (not found / unauthorized / offline)
- `adb -s SERIAL features`              -> a feature list with shell_v2 (state "legacy": without it)
- `adb -s SERIAL shell [-T] [--] ARGS`  -> ARGS joined with spaces (as the real client does, no escaping)
                                           run by /bin/sh -c in the sandbox dir; exit status passed on
- `adb -s SERIAL push LOCAL REMOTE` / `pull REMOTE LOCAL` -> plain file copies (paths taken literally)

The device list is re-read from $FAKE_ADB_DEVICES (a file of "SERIAL STATE" lines) on every call, so a
test can unplug a device mid-run. Each call's argv is appended (JSON) to $FAKE_ADB_LOG when set.
"""

import json
import os
import shutil
import sys

FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,apex,abb,abb_exec,sendrecv_v2,push_sync"


def devices() -> dict:
    found = {}
    path = os.environ.get("FAKE_ADB_DEVICES", "")
    if path and os.path.isfile(path):
        with open(path) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 2:
                    found[parts[0]] = parts[1]
    return found


def fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def device_ready(serial: str) -> str:
    state = devices().get(serial)
    if state is None:
        fail(f"error: device '{serial}' not found")
    if state == "unauthorized":
        fail(
            "error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
            "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device."
        )
    if state == "offline":
        fail("error: device offline")
    return state


def shell(state: str, args: list) -> None:
    # getopt("+e:ntTx") like the real client: options until the first non-option or "--".
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "--":
            break
        if opt == "-e":
            args.pop(0)
        elif opt not in ("-n", "-t", "-T", "-x"):
            fail(f"adb shell: invalid option -- '{opt[1:]}'")
    if state == "legacy":  # no shell protocol v2: the real client refuses -T
        fail("error: device only supports allocating a pty")
    command = " ".join(args)  # the real client does not escape: the device shell parses this line
    sandbox = os.environ.get("FAKE_ADB_SANDBOX") or os.getcwd()
    os.chdir(sandbox)
    sys.stdout.flush()
    os.execv("/bin/sh", ["sh", "-c", command])


def main(argv: list) -> None:
    log = os.environ.get("FAKE_ADB_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps(argv) + "\n")
    serial = None
    if len(argv) >= 2 and argv[0] == "-s":
        serial, argv = argv[1], argv[2:]
    if not argv:
        fail("adb: usage: no command specified")
    command, rest = argv[0], argv[1:]
    if command == "devices":
        print("List of devices attached")
        for name, state in devices().items():
            print(f"{name}\t{'device' if state == 'legacy' else state}")
        print()
        return
    if serial is None:
        fail(
            "error: more than one device/emulator"
            if len(devices()) > 1
            else "error: no devices/emulators found"
        )
    state = device_ready(serial)
    if command == "get-state":
        print("device")
    elif command == "features":
        print(FEATURES.replace("shell_v2,", "") if state == "legacy" else FEATURES)
    elif command == "shell":
        shell(state, rest)
    elif command == "push" and len(rest) == 2:
        local, remote = rest
        if not os.path.isfile(local):
            fail(f"adb: error: cannot stat '{local}': No such file or directory")
        os.makedirs(os.path.dirname(remote) or "/", exist_ok=True)
        shutil.copyfile(local, remote)
        print(f"{local}: 1 file pushed, 0 skipped. 1.0 MB/s ({os.path.getsize(local)} bytes in 0.001s)")
    elif command == "pull" and len(rest) == 2:
        remote, local = rest
        if not os.path.isfile(remote):
            fail(f"adb: error: failed to stat remote object '{remote}': No such file or directory")
        shutil.copyfile(remote, local)
        print(f"{remote}: 1 file pulled, 0 skipped. 1.0 MB/s ({os.path.getsize(remote)} bytes in 0.001s)")
    else:
        fail(f"adb: unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
