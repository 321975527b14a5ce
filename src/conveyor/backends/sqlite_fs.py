"""Is a SQLite file on a local disk? SQLite's locking relies on POSIX locks and shared memory
(WAL's -shm file) that network file systems do not provide faithfully: two machines, or even
two processes, can both believe they hold the write lock, and the queue gets corrupted. So the
SQLite backend refuses a file on a network file system unless told `?network_fs=allow`.

Linux only (it reads /proc/self/mountinfo); elsewhere the check finds nothing and allows.
"""

from __future__ import annotations

import os

#: File system types (as /proc/self/mountinfo names them) whose locking SQLite cannot trust.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs",
    "lustre", "gpfs", "davfs", "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone",
    "fuse.gcsfuse", "fuse.cephfs", "fuse.davfs2", "fuse.juicefs",
})

MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """Mount points escape spaces and a few other bytes as octal (\\040)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the file system holding `path` (the mount with the longest matching mount
    point), or None when it cannot be told. `mountinfo` is the text of /proc/self/mountinfo;
    read from the system when not given."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, right.split()[0]
    return best_type


def network_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The network file system type holding `path`, or None when it is local (or unknown)."""
    fstype = filesystem_type(path, mountinfo)
    if fstype is None:
        return None
    return fstype if fstype in NETWORK_FILESYSTEMS or fstype.startswith("nfs") else None
