"""The child process that runs one answer file, and how it is isolated.

``Child`` starts ``python -I -B runner.py ANSWER ...`` (``runner.py`` of this package, executed by
path from a private copy: it imports the standard library and torch, never ``course_lib``) and
talks to it in frames: an 8-byte big-endian length and a ``torch.save`` payload that
``torch.load(weights_only=True)`` accepts (the message protocol is in ``runner``'s docstring).
Replies are read by a thread into a queue, so every wait has a deadline; requests are written by
another, so a child that stops reading cannot block the grader. A reply larger than its request
plus ``REPLY_ALLOWANCE`` ends the child unread. A lost child (time limit, exit, crash, a guard)
raises ``ChildLost`` with the flag that says why.

Isolation, strongest first (``isolation()`` is the level in force; reports and gradebooks name it):

1. ``NAMESPACES``: ``unshare -rnmpf`` puts the child in its own user, mount, process and network
   namespaces; ``_SANDBOX_SCRIPT`` mounts a tmpfs root holding only python, torch (read-only), the
   runner's copy, the answer file (read-only) and a scratch folder, and chroots into it;
2. ``NETWORK_ONLY``: ``unshare -rn`` where mounts are not allowed;
3. ``HOOK_ONLY``: the runner's audit hook alone (it runs at every level).

The levels a machine supports are probed once (``supported_levels``); a level whose child does
not start is dropped for the rest of the run, and ``set_isolation`` caps the level (``--isolation``).
"""
from __future__ import annotations

import functools
import io
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from course_lib.grading import runner as _runner
from course_lib.grading.base import (CRASH, EXIT, FORBIDDEN_IMPORT, MEMORY, NETWORK, SANDBOX, TIMEOUT, ChildLost,
                                     GradingError, Limits)

RUNNER = Path(__file__).resolve().parent / "runner.py"
_EXIT_STATUS_FLAGS = {_runner.FORBIDDEN: FORBIDDEN_IMPORT, _runner.NETWORK: NETWORK, _runner.SANDBOX: SANDBOX}
MAX_REPLY_BYTES = 256 * 2**20
# A reply may be this much larger than its request (which it echoes: the arguments come back) plus a
# fixed allowance: no check expects more, and reading a larger one would only cost the grader memory.
REPLY_ALLOWANCE = 4 * 2**20


# How a child is isolated, strongest first (``isolation()`` says which is in force here). The
# audit hook of ``runner`` runs at every level; it is the only guard at the last one.
NAMESPACES = "namespaces"   # own mount, process and network namespaces; a filesystem of python, torch,
#                             the answer and a scratch folder only (Linux, unprivileged user namespaces)
NETWORK_ONLY = "network namespace"
HOOK_ONLY = "audit hook"
ISOLATION_TEXT = {
    NAMESPACES: "namespaces: the answer sees only python, torch, its own file and a scratch folder (mount, "
                "process and network namespaces) + audit hook",
    NETWORK_ONLY: "network namespace (unshare -rn) + audit hook; files guarded by the audit hook only",
    HOOK_ONLY: "audit hook only (no namespaces on this system)",
}
_DEMOTED: set[str] = set()  # a level whose child did not start here: never tried again in this process

# Run by ``unshare -rnmpf --kill-child sh -c SCRIPT sh ROOT [MODE PATH]... -- COMMAND...`` as root of a
# new user namespace: a tmpfs at ROOT gets the MODE entries (``ro``/``rw``/``dev``: bind-mount PATH at
# ROOT/PATH, read-only for ro; ``link``: copy the symlink PATH; ``hide``: an empty read-only tmpfs over
# ROOT/PATH where it exists, so a forbidden folder inside a bound one is empty), a fresh /proc of the
# new process namespace (the grader's own processes are not in it), then COMMAND runs chrooted in ROOT.
_SANDBOX_SCRIPT = r"""set -eu
root=$1; shift
mount -t tmpfs -o mode=0755,size=8m kd-grading "$root"
while [ "$1" != "--" ]; do
  mode=$1; src=$2; shift 2
  dst=$root$src
  if [ "$mode" = hide ]; then
    if [ -d "$dst" ]; then mount -t tmpfs -o ro,size=4k,mode=0555 hidden "$dst"; fi
    continue
  fi
  if [ ! -e "$src" ] && [ ! -L "$src" ]; then continue; fi
  if [ "$mode" = link ]; then mkdir -p "$(dirname "$dst")"; ln -s "$(readlink "$src")" "$dst"; continue; fi
  if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; [ -e "$dst" ] || : > "$dst"; fi
  mount --rbind "$src" "$dst"
  if [ "$mode" = ro ]; then
    mount -o remount,bind,ro "$dst" 2>/dev/null || mount -o remount,bind,ro,nosuid,nodev "$dst"
  fi
done
shift
mkdir -p "$root/proc"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
exec chroot "$root" "$@"
"""


def _system_entries() -> list[tuple[str, str]]:
    """What every sandboxed child needs besides its answer: the system's libraries, python, torch."""
    entries = []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr"):
        if os.path.islink(top):
            entries.append(("link", top))
        elif os.path.isdir(top):
            entries.append(("ro", top))
    python = Path(os.path.realpath(sys.executable))
    torch_site = Path(torch.__file__).resolve().parents[1]
    for path in (Path(sys.base_prefix).resolve(), python.parent, torch_site, Path("/etc/ld.so.cache")):
        entries.append(("ro", str(path)))
    entries += [("dev", d) for d in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")]
    return entries


@functools.cache
def supported_levels() -> tuple[str, ...]:
    """The isolation levels this machine supports (probed once; each probe takes well under a second)."""
    exe = shutil.which("unshare") if sys.platform.startswith("linux") else None
    if not exe or not shutil.which("chroot") or not shutil.which("mount"):
        levels: tuple[str, ...] = ()
    else:
        levels = ()
        root = tempfile.mkdtemp(prefix="kd-grading-probe-")
        try:
            command = [exe, "-rnmpf", "--kill-child", "sh", "-c", _SANDBOX_SCRIPT, "sh", root,
                       *[x for e in _system_entries() for x in e], "--",
                       os.path.realpath(sys.executable), "-I", "-c", "import os; os.stat('/proc/self')"]
            if _quiet_ok(command):
                levels += (NAMESPACES,)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if _quiet_ok([exe, "-rn", "true"]):
            levels += (NETWORK_ONLY,)
    return levels + (HOOK_ONLY,)


def _quiet_ok(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


LEVELS = (NAMESPACES, NETWORK_ONLY, HOOK_ONLY)
_CAP: list[str] = []  # set_isolation(): the strongest level to use (for tests, or a system whose namespaces misbehave)


def set_isolation(level: str | None) -> None:
    """Use at most ``level`` (a key of ``ISOLATION_TEXT``; ``None``: the strongest available)."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"isolation must be one of {LEVELS}, got {level!r}")
    _CAP[:] = [] if level is None else [level]


def isolation() -> str:
    """The isolation a grading child gets on this machine now (a key of ``ISOLATION_TEXT``): the
    strongest level that is supported, allowed by ``set_isolation`` and has not failed to start."""
    weakest_allowed = LEVELS.index(_CAP[0]) if _CAP else 0
    return next(level for level in supported_levels()
                if level not in _DEMOTED and LEVELS.index(level) >= weakest_allowed)


def network_isolation() -> str:
    """How the child is kept off the network (and, with namespaces, off the file system) here."""
    return ISOLATION_TEXT[isolation()]


def _child_env(workdir: str) -> dict[str, str]:
    keep = ("PATH", "LD_LIBRARY_PATH", "SYSTEMROOT", "WINDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", CUDA_VISIBLE_DEVICES="",
               HOME=workdir, TMPDIR=workdir, TEMP=workdir, TMP=workdir, XDG_CACHE_HOME=workdir,
               MPLCONFIGDIR=workdir)
    return env


def _read_exact(stream, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _frame(message) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    return struct.pack(">Q", len(data)) + data


class Child:
    """One child process running ``runner.py`` on one answer file.

    Replies are read by a thread into a queue, so every wait has a deadline (on every platform);
    requests are written by another thread, so a child that stops reading cannot block us.
    """

    def __init__(self, answer: Path, limits: Limits, forbidden: list[Path]):
        while True:
            level = isolation()
            try:
                self._start(answer, limits, forbidden, level)
                return
            except GradingError as e:
                if level == HOOK_ONLY:
                    raise
                _DEMOTED.add(level)  # e.g. a namespace where torch cannot load: go on one level down
                print(f"grading: the child did not start under {level!r}; using a weaker isolation from now "
                      f"on ({str(e)[:2000]})", file=sys.stderr, flush=True)

    def _start(self, answer: Path, limits: Limits, forbidden: list[Path], level: str):
        self.limits, self.isolation = limits, level
        self.base = Path(tempfile.mkdtemp(prefix="kd-grading-"))
        self.workdir = str(self.base / "work")
        runner = self.base / "runner" / RUNNER.name  # a copy: the package folder itself is off limits
        for folder in (self.workdir, runner.parent):
            os.mkdir(folder)
        shutil.copyfile(RUNNER, runner)
        self._stderr = tempfile.TemporaryFile()
        cpu = int(limits.startup_limit + limits.file_time_limit + 30)
        python = sys.executable
        prefix: list[str] = []
        if level == NAMESPACES:
            python = os.path.realpath(sys.executable)
            # hide first (a forbidden folder inside a bound one, e.g. an installed course_lib), then the
            # answer's own file (its folder, which may sit in a forbidden one, holds only that file)
            entries = [*_system_entries(), *(("hide", str(root)) for root in forbidden),
                       ("ro", str(runner.parent)), ("ro", str(answer)), ("rw", self.workdir)]
            os.mkdir(self.base / "root")
            prefix = [shutil.which("unshare") or "unshare", "-rnmpf", "--kill-child", "sh", "-c", _SANDBOX_SCRIPT,
                      "sh", str(self.base / "root"), *[x for e in entries for x in e], "--"]
        elif level == NETWORK_ONLY:
            prefix = [shutil.which("unshare") or "unshare", "-rn"]
        command = [*prefix, python, "-I", "-B", str(runner), str(answer),
                   "--workdir", self.workdir, "--memory-mb", str(int(limits.memory_limit)),
                   "--cpu-seconds", str(cpu), "--sys-path", str(Path(torch.__file__).resolve().parents[1])]
        for root in forbidden:
            command += ["--forbid", str(root)]
        group = ({"start_new_session": True} if os.name == "posix"
                 else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)})
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                         cwd=self.workdir, env=_child_env(self.workdir), **group)
        except OSError as e:
            shutil.rmtree(self.base, ignore_errors=True)
            raise GradingError(f"the grading process could not be started: {e}") from e
        self.reply_limit = REPLY_ALLOWANCE
        self._inbox: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()
        try:
            ready = self.receive(time.monotonic() + limits.startup_limit, "starting python and torch")
        except ChildLost as lost:
            tail = self._stderr_tail()
            self.close()
            raise GradingError(f"the grading process did not start ({lost.message}):\n{tail}") from None
        if "ready" not in ready:
            self.close()
            raise GradingError(f"the grading process did not start: unexpected reply {sorted(ready)}")

    # -- threads
    def _read(self):
        stream = self.proc.stdout
        try:
            while True:
                head = _read_exact(stream, 8)
                if head is None:
                    break
                (size,) = struct.unpack(">Q", head)
                if size > min(self.reply_limit, MAX_REPLY_BYTES):
                    self._inbox.put(("too large", f"a reply of {size / 2**20:.1f} MiB where this call expects at "
                                                  f"most {min(self.reply_limit, MAX_REPLY_BYTES) / 2**20:.1f} MiB"))
                    break
                data = _read_exact(stream, size)
                if data is None:
                    break
                try:
                    message = torch.load(io.BytesIO(data), weights_only=True)
                except Exception as e:  # noqa: BLE001 - anything unreadable ends the session
                    self._inbox.put(("garbled", f"an unreadable reply ({type(e).__name__})"))
                    break
                if not isinstance(message, dict):
                    self._inbox.put(("garbled", f"a reply of type {type(message).__name__}"))
                    break
                self._inbox.put(("message", message))
        except (OSError, ValueError):
            pass
        finally:
            self._inbox.put(("eof", None))

    def _write(self):
        while True:
            data = self._outbox.get()
            if data is None:
                return
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                return

    # -- requests
    def receive(self, deadline: float, what: str) -> dict:
        """The next reply; ``ChildLost`` when none comes before ``deadline`` or the child is gone."""
        try:
            kind, message = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            raise ChildLost(TIMEOUT, f"timed out: {what} (the process was stopped)") from None
        if kind == "message":
            if "exit" in message:
                self.kill()
                raise ChildLost(EXIT, f"the answer ended the process: {str(message['exit'])[:200]}")
            return message
        if kind == "too large":
            self.kill()
            raise ChildLost(MEMORY, f"the answer returned {message} (the process was stopped)")
        if kind == "garbled":
            self.kill()
            raise ChildLost(CRASH, f"the answer wrote {message} to the grader's channel")
        raise self._lost()

    def request(self, message: dict, deadline: float, what: str) -> dict:
        self._next_id += 1
        message = dict(message, id=self._next_id)
        frame = _frame(message)
        self.reply_limit = REPLY_ALLOWANCE + 3 * len(frame)
        self._outbox.put(frame)
        reply = self.receive(deadline, what)
        if reply.get("id") != self._next_id:
            self.kill()
            raise ChildLost(CRASH, "the answer wrote an unexpected reply to the grader's channel")
        return reply

    def _lost(self) -> ChildLost:
        """Why the child is gone: its exit status, and the guard's own message if it left one."""
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self.proc.returncode
        reason = next((line[len("grader: "):] for line in reversed(self._stderr_tail().splitlines())
                       if line.startswith("grader: ")), "")
        if status in _EXIT_STATUS_FLAGS:
            flag = _EXIT_STATUS_FLAGS[status]
            default = {FORBIDDEN_IMPORT: "used course_lib", NETWORK: "used the network",
                       SANDBOX: "did something answers may not do"}[flag]
            return ChildLost(flag, f"stopped by the grader: {reason or default}")
        if status is not None and status < 0:
            name = _signal_name(-status)
            if name == "SIGXCPU":
                return ChildLost(TIMEOUT, "used up its CPU time (the process was stopped)")
            if name == "SIGXFSZ":
                return ChildLost(SANDBOX, "wrote a file larger than 64 MiB (the process was stopped)")
            if name == "SIGKILL":
                return ChildLost(CRASH, "the process was killed (out of memory?)")
            return ChildLost(CRASH, f"the process crashed ({name})")
        if status is not None and status > 255:  # Windows: an NTSTATUS such as 0xC0000005
            return ChildLost(CRASH, f"the process crashed (status {status:#x})")
        return ChildLost(EXIT, f"the answer ended the process (exit status {status})")

    def _stderr_tail(self, size: int = 4000) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - size))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def kill(self):
        """Kill the child and anything it started (its process group)."""
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def close(self):
        self.kill()
        self._outbox.put(None)
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
