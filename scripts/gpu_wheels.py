"""Download the wheels the GPU machine lacks (scripts/gpu-carried-packages.txt) for CPython 3.12 on
manylinux x86_64, trim the pip Triton server's wheel to what Python 3.12 needs, and check that
they and the working tree fit in one device call (64 MiB carried in all).

    python scripts/gpu_wheels.py --dest build/gpu-wheels

Each wheel's tags are checked against CPython 3.12 / manylinux x86_64 (pip is asked for exactly
those, and the file names are checked again after the download). The ``nvidia-pytriton`` wheel
bundles Python-backend stubs for Python 3.8-3.13 and a private ``libpython3.13`` (~32 MB) that
only the 3.13 stub loads; the GPU machine runs Python 3.12, so those are dropped from the wheel
(its RECORD rewritten to match) and the carried set fits the call with the repository.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRIED = ROOT / "scripts" / "gpu-carried-packages.txt"
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CARRY_LIMIT_BYTES = 64 * 2**20  # one device call: working tree + carried paths
KEEP_STUB = f"python_backend_stubs/{PYTHON_VERSION}/"


def carried_requirements(path: Path = CARRIED) -> list[str]:
    """``name==version`` lines of the carried list (comments dropped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            out.append(requirement)
    return out


def wheel_fits_python312(name: str) -> bool:
    """A wheel file name whose tags CPython 3.12 on manylinux x86_64 accepts."""
    match = re.match(r"^.+?-[^-]+(?:-\d[^-]*)?-([^-]+)-([^-]+)-([^-]+)\.whl$", name)
    if not match:
        return False
    pythons, abis, platforms = (set(part.split(".")) for part in match.groups())
    platform_ok = any(p == "any" or (p.startswith("manylinux") and p.endswith("x86_64")) for p in platforms)
    pure = "none" in abis and bool(pythons & {"py3", "py312", "cp312"})
    native = "cp312" in abis and "cp312" in pythons
    # an abi3 wheel built for CPython 3.X runs on every CPython >= 3.X
    stable = "abi3" in abis and any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= 12 for p in pythons)
    return platform_ok and (pure or native or stable)


def download(requirements: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", PYTHON_VERSION, "--implementation", "cp", *platform_args,
                    "--dest", str(dest), *requirements], check=True)


def _dropped(member: str) -> bool:
    """Files of the pytriton wheel that Python 3.12 never loads."""
    if "python_backend_stubs/" in member and KEEP_STUB not in member:
        return True
    return bool(re.search(r"nvidia_pytriton\.libs/libpython3[^/]*\.so", member))


def trim_pytriton(wheel: Path) -> tuple[int, int]:
    """Rewrite the nvidia-pytriton wheel without other Pythons' stubs and their libpython;
    returns (bytes before, bytes after)."""
    before = wheel.stat().st_size
    with zipfile.ZipFile(wheel) as src:
        members = [m for m in src.infolist() if not _dropped(m.filename)]
        if len(members) == len(src.infolist()):
            return before, before
        record_name = next(m.filename for m in members if m.filename.endswith(".dist-info/RECORD"))
        rows = [row for row in csv.reader(io.StringIO(src.read(record_name).decode("utf-8")))
                if row and not _dropped(row[0])]
        record = io.StringIO()
        csv.writer(record, lineterminator="\n").writerows(rows)
        tmp = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
            for member in members:
                data = record.getvalue().encode() if member.filename == record_name else src.read(member)
                out.writestr(member, data)
    tmp.replace(wheel)
    return before, wheel.stat().st_size


def tree_bytes() -> int:
    """Bytes of the working tree that travels with a device call (tracked + untracked, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", default=str(ROOT / "build" / "gpu-wheels"))
    args = p.parse_args(argv)
    dest = Path(args.dest)
    for old in dest.glob("*.whl"):
        old.unlink()
    download(carried_requirements(), dest)
    wheels = sorted(dest.glob("*.whl"))
    wrong = [w.name for w in wheels if not wheel_fits_python312(w.name)]
    if wrong:
        print(f"gpu-wheels: not installable on CPython {PYTHON_VERSION} manylinux x86_64: {wrong}", file=sys.stderr)
        return 1
    for wheel in wheels:
        if wheel.name.startswith("nvidia_pytriton-"):
            before, after = trim_pytriton(wheel)
            print(f"gpu-wheels: {wheel.name} trimmed to the Python {PYTHON_VERSION} stub: "
                  f"{before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
    carried = sum(w.stat().st_size for w in wheels)
    tree = tree_bytes()
    for wheel in wheels:
        print(f"gpu-wheels: {wheel.stat().st_size / 2**20:6.1f} MiB  {wheel.name}")
    print(f"gpu-wheels: carried {carried / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB "
          f"= {(carried + tree) / 2**20:.1f} MiB of the {CARRY_LIMIT_BYTES / 2**20:.0f} MiB one device call carries")
    if carried + tree > CARRY_LIMIT_BYTES:
        print("gpu-wheels: too large for one device call", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
