"""The OS sandbox the model's programs run in: is one available here, and what argv wraps one.

Why: the model is not trusted (any sender can talk it into a tool call), and ordinary text
programs execute or write by design (`sed e`, `find -exec`, `tar --checkpoint-action`, ...).
Filtering arguments cannot be the wall, so every program the model runs sees only what it may
touch, enforced by the kernel. On Linux that is bubblewrap (`bwrap`), which gives the child:

- a mount namespace whose root is an empty tmpfs, remounted read-only, holding only: the
  system's programs and libraries (`/usr`, `/bin`, `/lib*`, read-only), the few `/etc` files
  programs need (`alternatives`, `ld.so.cache`, `localtime`, `passwd`, `group`; no other
  part of `/etc`), a fresh `/proc` and a minimal `/dev`, a private `/tmp` (a tmpfs of
  `Limits.tmp_bytes`), and the workspace path with only the `tools.model_read` folders bound
  read-only and the `tools.model_write` folders read-write. The rest of the workspace
  (`config.yaml`, `data/` with the store, `skills/`), the user's home, `/root` and every
  other file are not there at all;
- new user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`): no network but a
  loopback of its own, no other process visible; every capability dropped, no new privileges
  (bwrap sets NO_NEW_PRIVS), no further user namespaces;
- `--die-with-parent` and a PID namespace: when the runner kills bwrap's process group at the
  time limit, the namespace's init dies and the kernel kills everything inside;
- `--new-session`, so a program cannot push keystrokes into a terminal (TIOCSTI);
- resource limits set by `prlimit` *inside* the sandbox (CPU seconds, file size, address
  space, processes). Inside, because RLIMIT_NPROC counts processes per user namespace: set
  before bwrap it would count every process of the user (measured: bwrap then fails with
  "Creating new namespace failed" for a user with more processes than the limit). The kernel
  does not apply RLIMIT_NPROC to uid 0, so a gateway run as root gets the other limits only.

There is no weaker fallback: where bwrap is missing or cannot create namespaces (macOS,
Windows, a container without user namespaces) `find_sandbox()` says why, and the model is
given no command tool at all. macOS Seatbelt (`sandbox-exec`) is not used: it is deprecated and
no macOS machine was at hand to test a profile on.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group")
_PROBE_TIMEOUT = 10.0
_INSTALL = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`, Fedora: "
            "`sudo dnf install bubblewrap`)")


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits inside the sandbox; each applies to every process in it
    (processes: to all of them together)."""

    cpu_seconds: float | None = 30  # None: unlimited (a long-lived child: the browser)
    file_bytes: int = 64 * 1024 * 1024
    memory_bytes: int | None = 1024 * 1024 * 1024  # address space; None: unlimited
    processes: int = 64
    tmp_bytes: int = 64 * 1024 * 1024

    def prlimit_args(self) -> list[str]:
        cpu = "unlimited" if self.cpu_seconds is None else max(1, math.ceil(self.cpu_seconds))
        memory = "unlimited" if self.memory_bytes is None else self.memory_bytes
        return [f"--cpu={cpu}", f"--fsize={self.file_bytes}", f"--as={memory}",
                f"--nproc={self.processes}"]


class Sandbox:
    """bubblewrap: builds the argv that runs a program with only the given folders visible."""

    kind = "bubblewrap"

    def __init__(self, bwrap: str, prlimit: str, version: str = "") -> None:
        self.bwrap = bwrap
        self.prlimit = prlimit
        self.version = version

    def shows(self, program: str) -> bool:
        """True if `program` (an absolute path) is inside the system folders bound read-only,
        so it exists in the sandbox as the same file."""
        real = os.path.realpath(program)
        return any(real.startswith(os.path.realpath(d) + os.sep) for d in _SYSTEM
                   if os.path.isdir(d))

    def wrap(self, argv: Sequence[str], *, root: Path, read: Sequence[str] = (),
             write: Sequence[str] = (), keep: Sequence[str] = (),
             limits: Limits | None = None, share_net: bool = False,
             show: Sequence[str] = ()) -> list[str]:
        """The argv that runs `argv` in the sandbox with cwd `root` (the workspace) showing
        only `read` (read-only) and `write` (read-write) folders, given relative to `root`;
        `keep` folders stay read-only even inside a writable one. `share_net` keeps the
        machine's network (the browser: its own proxy checks every request); `show` binds
        more absolute paths read-only at their place (the Python and code a child needs).

        A folder listed in both is writable; a missing read folder is left out; a folder
        that is a symlink is bound from where it leads, at its name in the workspace."""
        limits = limits or Limits()
        root = Path(os.path.realpath(root))
        out = [self.bwrap, "--unshare-all", *(["--share-net"] if share_net else []),
               "--unshare-user", "--disable-userns",
               "--die-with-parent", "--new-session", "--cap-drop", "ALL",
               "--hostname", "moltbot-sandbox"]
        for path in (*_SYSTEM, *_ETC):
            if os.path.islink(path):
                out += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                out += ["--ro-bind", path, path]
        out += ["--proc", "/proc", "--dev", "/dev",
                "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
                "--size", "65536", "--tmpfs", str(root)]
        # after the tmpfs mounts: Python or the code may live under /tmp (a checkout there, a
        # virtual environment made by a test run), which the private /tmp would hide
        out += [arg for path in show if os.path.exists(path)
                for arg in ("--ro-bind", path, path)]
        modes = {folder: "--ro-bind-try" for folder in read}
        modes.update({folder: "--bind" for folder in write})
        modes.update({folder: "--ro-bind-try" for folder in keep})
        for folder in sorted(modes, key=lambda f: len(Path(f).parts)):  # parents first
            out += [modes[folder], os.path.realpath(root / folder), str(root / folder)]
        out += ["--remount-ro", str(root), "--remount-ro", "/", "--chdir", str(root),
                "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
                "--", self.prlimit, *limits.prlimit_args(), "--", *argv]
        return out


@dataclass(frozen=True)
class SandboxStatus:
    """Whether the model's programs can be sandboxed here; if not, `reason` says why and
    `fix` what to do."""

    sandbox: Sandbox | None
    reason: str = ""
    fix: str = ""

    @property
    def available(self) -> bool:
        return self.sandbox is not None

    def describe(self) -> str:
        """One sentence for `moltbot doctor`, the log and the console."""
        if self.sandbox is not None:
            version = f" {self.sandbox.version}" if self.sandbox.version else ""
            return (f"sandbox: {self.sandbox.kind}{version} works here; the model's command "
                    "tool runs in it")
        return f"no sandbox for the model's programs: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        """For the console: the sentence, with the fix when there is one."""
        fix = f"; to fix: {self.fix}" if self.fix else ""
        return {"available": self.available, "detail": self.describe() + fix}


def doctor_check(command_offered: bool) -> tuple[bool, str, str]:
    """`moltbot doctor`'s line: fails only when config.yaml offers the model a command tool
    that it cannot be given here."""
    status = find_sandbox()
    if status.available:
        return (True, status.describe(), "")
    if not command_offered:
        return (True, status.describe() + " (the model is offered no command tool)", "")
    return (False, status.describe() + "; so the model gets no command tool, although "
                   "tools.offer_to_model lists it",
            f"{status.fix}, or remove command from tools.offer_to_model in config.yaml")


@functools.cache
def find_sandbox() -> SandboxStatus:
    """Find bubblewrap and prove that it can build the sandbox here, once per process.

    The probe runs `true` with exactly the options of a real run, so a kernel or container
    that forbids any of them (user namespaces above all) is found now, with bwrap's own
    words, rather than at the model's first call."""
    if not sys.platform.startswith("linux"):
        return SandboxStatus(None, f"this is {sys.platform}: only Linux has one (bubblewrap); "
                                   "macOS Seatbelt is not supported yet",
                             "run the gateway on Linux to give the model a command tool")
    bwrap, prlimit, true = (shutil.which(p) for p in ("bwrap", "prlimit", "true"))
    if bwrap is None:
        return SandboxStatus(None, "bwrap is not installed", _INSTALL)
    if prlimit is None or true is None:
        return SandboxStatus(None, "prlimit or true is not installed",
                             "install util-linux and coreutils")
    sandbox = Sandbox(bwrap, prlimit)
    if not sandbox.shows(prlimit):
        return SandboxStatus(None, f"prlimit is at {prlimit}, outside the system folders the "
                                   f"sandbox shows ({', '.join(_SYSTEM)})",
                             "install util-linux from the system's packages")
    probe = sandbox.wrap([true], root=Path("/tmp/moltbot-sandbox-probe"),
                         limits=Limits(cpu_seconds=5))
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=_PROBE_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return SandboxStatus(None, f"bwrap ({bwrap}) could not run ({e})", _INSTALL)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return SandboxStatus(None, f"bwrap cannot build the sandbox here ({said[0][:300]})",
                             "allow unprivileged user namespaces (sysctl "
                             "kernel.unprivileged_userns_clone=1 and user.max_user_namespaces "
                             "above 0; in a container, a seccomp profile that permits them) "
                             "and use bubblewrap 0.8 or later")
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                                 timeout=_PROBE_TIMEOUT).stdout.split()[-1:]
    except (OSError, subprocess.TimeoutExpired):
        version = []
    return SandboxStatus(Sandbox(bwrap, prlimit, version[0] if version else ""))
