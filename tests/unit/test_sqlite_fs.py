"""A SQLite queue on a network file system is refused (its locks do not hold there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import ConfigError, Conveyor
from conveyor.backends import sqlite as sqlite_backend
from conveyor.backends.sqlite_fs import filesystem_type, network_filesystem

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
40 27 0:45 / /srv/shared rw,relatime - nfs4 fileserver:/export rw,vers=4.2
41 40 8:17 / /srv/shared/local rw,relatime - xfs /dev/sdb1 rw
42 27 0:46 / /mnt/my\\040share rw,relatime - cifs //nas/share rw
43 27 0:47 / /home/me/remote rw - fuse.sshfs me@host:/ rw
44 27 0:48 / /mnt/c rw - 9p drvfs rw
"""


@pytest.mark.parametrize("path, fstype, network", [
    ("/var/lib/app/tasks.db", "ext4", None),
    ("/srv/shared/q.db", "nfs4", "nfs4"),
    ("/srv/shared/local/q.db", "xfs", None),  # a local disk mounted inside the NFS share
    ("/srv/sharedness/q.db", "ext4", None),  # a prefix of the name is not inside it
    ("/mnt/my share/q.db", "cifs", "cifs"),  # mount points escape spaces as \040
    ("/home/me/remote/q.db", "fuse.sshfs", "fuse.sshfs"),
    ("/mnt/c/Users/q.db", "9p", "9p"),  # WSL 2's view of Windows drives
])
def test_the_longest_mount_point_names_the_file_system(path: str, fstype: str,
                                                        network: str | None) -> None:
    assert filesystem_type(path, MOUNTINFO) == fstype
    assert network_filesystem(path, MOUNTINFO) == network


def test_unreadable_mount_table_allows(tmp_path: Path) -> None:
    assert filesystem_type(str(tmp_path), "") is None
    assert network_filesystem(str(tmp_path), "garbage without separator") is None


def test_this_machines_temporary_directory_is_local(tmp_path: Path) -> None:
    assert network_filesystem(str(tmp_path)) is None
    Conveyor(f"sqlite:///{tmp_path / 'q.db'}").backend.queue_stats(0.0)


def test_a_file_on_a_network_file_system_is_refused_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "network_filesystem", lambda path: "nfs4")
    with pytest.raises(ConfigError) as info:
        Conveyor(f"sqlite:///{tmp_path / 'q.db'}")
    message = str(info.value)
    assert "network file system (nfs4)" in message and "network_fs=allow" in message
    app = Conveyor(f"sqlite:///{tmp_path / 'q.db'}?network_fs=allow")
    assert app.backend.queue_stats(0.0) == {}
    with pytest.raises(ConfigError, match="network_fs must be"):
        Conveyor(f"sqlite:///{tmp_path / 'q.db'}?network_fs=maybe")
