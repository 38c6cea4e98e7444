"""The emulated arm64 board: host tools, binfmt_misc, the cached Debian root (mmdebstrap), its mounts and
fake /proc/cpuinfo, commands run in it under QEMU (chroot), and edgepose's wheel built on the host and
installed on the board.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import common
from .common import HOST_PY, REPO, CheckError, Steps, clean_env, say, sh

SUITE = "bookworm"
#: packages of the root: Raspberry Pi OS Lite's Python plus what OpenCV's wheel needs
PACKAGES = ["python3", "python3-venv", "python3-pip", "ca-certificates", "libgl1", "libglib2.0-0"]
HOST_PACKAGES = {"mmdebstrap": "mmdebstrap", "qemu-aarch64-static": "qemu-user-static",
                 "qemu-x86_64-static": "qemu-user-static", "update-binfmts": "binfmt-support",
                 "arch-test": "arch-test"}  # fmt: skip
#: extras installed on the board (cpu: onnxruntime; eval: pycocotools; video: PyAV)
EXTRAS = "cpu,eval,video"
GUEST = "/opt/edgepose-check"  # work folder inside the root
VENV = "/opt/edgepose-venv"

#: what the fake /proc/cpuinfo says per QEMU CPU model (QEMU 7.2 shows the host's x86 cpuinfo, on
#: which ``import onnxruntime`` crashes); features as the real chips report them
CPUS = {
    "cortex-a76": {  # Raspberry Pi 5 (BCM2712)
        "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
        "variant": "0x4", "part": "0xd0b", "revision": "1",
    },
    "cortex-a72": {  # Raspberry Pi 4 (BCM2711: no crypto extensions)
        "features": "fp asimd evtstrm crc32 cpuid",
        "variant": "0x0", "part": "0xd08", "revision": "3",
    },
}  # fmt: skip


def ensure_host_tools(names: list[str]) -> None:
    missing = sorted({HOST_PACKAGES[n] for n in names if shutil.which(n) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise CheckError(f"install {' '.join(missing)} (Debian/Ubuntu: apt-get install {' '.join(missing)})")
    say(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(["apt-get", "update", "-qq"], timeout=300, env=env, capture=True)
    sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], timeout=600, env=env, capture=True)


# -- the arm64 root --------------------------------------------------------------------------------
def recipe() -> str:
    return f"mmdebstrap --variant=minbase --architectures=arm64 --include={','.join(PACKAGES)} {SUITE}"


def ensure_binfmt() -> None:
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], timeout=30)
    sh(["update-binfmts", "--enable", "qemu-aarch64"], timeout=30, check=False, capture=True)
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        raise CheckError("binfmt_misc has no enabled qemu-aarch64 entry; install qemu-user-static and binfmt-support "
                         "(a container needs the host's binfmt_misc, e.g. docker run --privileged)")  # fmt: skip
    if "flags: " in entry.read_text() and "F" not in entry.read_text().split("flags:")[1].split()[0]:
        raise CheckError("qemu-aarch64's binfmt entry lacks the F (fix-binary) flag that chroot needs")


def ensure_root(root: Path, steps: Steps) -> bool:
    """Build the root unless the cached one matches the recipe; returns whether it was built."""
    stamp = root / ".edgepose-root"
    want = hashlib.sha256(recipe().encode()).hexdigest()[:16]
    if stamp.is_file() and stamp.read_text().strip() == want:
        say(f"arm64 root cached at {root} (recipe {want})")
        return False
    tmp = root.with_name(root.name + ".tmp")
    with steps("build the arm64 root (mmdebstrap)"):
        shutil.rmtree(tmp, ignore_errors=True)
        if root.exists():
            shutil.rmtree(root)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        sh(["mmdebstrap", "--variant=minbase", "--architectures=arm64", f"--include={','.join(PACKAGES)}",
            SUITE, str(tmp)], timeout=1800, nice=True, capture=True)  # fmt: skip
        (tmp / ".edgepose-root").write_text(want + "\n")
        tmp.rename(root)
    return True


def mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f)


@contextlib.contextmanager
def board(root: Path, cpu: str):
    """proc, a fake arm64 /proc/cpuinfo, /sys and the data (read-only) mounted in the root; undone on exit."""
    info = CPUS[cpu]
    n = os.cpu_count() or 1
    text = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {info['features']}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {info['variant']}\nCPU part\t: {info['part']}\n"
        f"CPU revision\t: {info['revision']}\n\n"
        for i in range(n)
    )  # fmt: skip
    fake = root / "etc" / "edgepose-cpuinfo"
    fake.write_text(text)
    data = root / "mnt" / "data"
    data.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    try:
        for target, cmd in (
            (root / "proc", ["mount", "-t", "proc", "proc", str(root / "proc")]),
            (root / "proc" / "cpuinfo", ["mount", "--bind", str(fake), str(root / "proc" / "cpuinfo")]),
            # ONNX Runtime's cpuinfo reads /sys/devices/system/cpu/{possible,present}; without them it
            # gives up and MLAS falls back to generic kernels (no dot-product int8 on a Cortex-A76)
            (root / "sys", ["mount", "--rbind", "-o", "ro", "/sys", str(root / "sys")]),
            (data, ["mount", "--bind", "-o", "ro", str(common.DATA), str(data)]),
        ):
            if not mounted(target) or target.name == "cpuinfo":
                sh(cmd, timeout=30)
            done.append(target)
        for f in ("/etc/resolv.conf",):
            shutil.copy(f, root / "etc" / "resolv.conf")
        local_ca = Path("/usr/local/share/ca-certificates")
        if local_ca.is_dir() and any(local_ca.iterdir()):
            # the host's local CAs (a proxy's, say); update-ca-certificates is slow under emulation,
            # so it runs only when they changed
            dest = root / "usr" / "local" / "share" / "ca-certificates"
            shutil.copytree(local_ca, dest, dirs_exist_ok=True)
            digest = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(local_ca.rglob("*")) if f.is_file()))
            stamp = root / "etc" / "edgepose-ca.sha256"
            if not stamp.is_file() or stamp.read_text().strip() != digest.hexdigest():
                chroot(root, cpu, ["update-ca-certificates"], timeout=1800, capture=True)
                stamp.write_text(digest.hexdigest() + "\n")
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def chroot(root: Path, cpu: str, cmd: list[str], *, timeout: float, capture: bool = False,
           check: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
    env = clean_env(QEMU_CPU=cpu)
    return sh(["chroot", str(root), *cmd], timeout=timeout, env=env, capture=capture, check=check, nice=True)


def build_wheel(dest: Path) -> Path:
    """edgepose's wheel from the working tree (tracked and untracked, not ignored), built in a copy."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("edgepose-*.whl"):
        old.unlink()
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True).stdout.decode().split("\0")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgepose-wheel-") as tmp:
        for f in files:
            src = REPO / f
            if f and src.is_file():
                (Path(tmp) / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, Path(tmp) / f)
        sh([str(HOST_PY), "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest), tmp],
           timeout=600, capture=True)  # fmt: skip
    wheels = list(dest.glob("edgepose-*.whl"))
    if len(wheels) != 1:
        raise CheckError(f"expected one edgepose wheel in {dest}, found {wheels}")
    return wheels[0]


#: the board's versions as one JSON line; a package the extras did not install is null (``smoke``
#: installs ``cpu`` only: no PyAV)
VERSIONS = """import json, platform, importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                  "glibc": " ".join(platform.libc_ver()),
                  **{k: version(k) for k in ("edgepose", "onnxruntime", "numpy", "opencv-python-headless", "av")}}))
"""


def install_on_board(root: Path, cpu: str, wheel: Path, extras: str) -> dict:
    """venv + ``pip install 'edgepose[...]'`` from PyPI inside the root; returns the installed versions."""
    guest = root / GUEST.lstrip("/")
    (guest / "wheels").mkdir(parents=True, exist_ok=True)
    for old in (guest / "wheels").glob("*.whl"):
        old.unlink()
    shutil.copy2(wheel, guest / "wheels" / wheel.name)
    if not (root / VENV.lstrip("/") / "bin" / "python").exists():
        chroot(root, cpu, ["python3", "-m", "venv", VENV], timeout=600)
    pip = [f"{VENV}/bin/python", "-m", "pip"]
    chroot(root, cpu, [*pip, "uninstall", "-y", "-q", "edgepose"], timeout=600, capture=True, check=False)
    chroot(root, cpu, [*pip, "install", "-q", "--only-binary=:all:", f"{GUEST}/wheels/{wheel.name}[{extras}]"],
           timeout=1800)  # fmt: skip
    out = chroot(root, cpu, [f"{VENV}/bin/python", "-c", VERSIONS], timeout=600, capture=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
