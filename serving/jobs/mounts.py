"""Which filesystem holds a path, read from /proc/mounts (to refuse a job store on tmpfs).

Hand-written because the standard library has no call for it (`os.statvfs` does not name
the filesystem type) and psutil would be a dependency for a dozen lines.
"""

from __future__ import annotations

from pathlib import Path


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (from /proc/mounts), or None if unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = str(path.resolve() if path.exists() else path.absolute())
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), fields[2])
    return best[1] if best else None
