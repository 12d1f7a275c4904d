"""Step 1 of verify, the layout: a bundle folder, or the one folder of a .tar.gz, of plain regular files within the
size and count limits. An archive's entries are checked from their raw headers before tarfile reads them, and again
as tarfile sees them before anything is extracted; a folder is walked without following links and sized before any
file is read."""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import EdgesmithError, require

MAX_UNPACKED = 4 * 2**30  # a bundle of a BERT-family encoder is far smaller; refuses decompression bombs before extracting
MAX_MEMBERS = 1000  # a bundle holds a few dozen files; empty entries weigh nothing against MAX_UNPACKED
MAX_NAME = 1024  # bytes of one entry's path: edgesmith's are under 100
# GNU long-name and PAX headers: tarfile reads each whole into memory before any entry is seen, so a 131 KB archive
# holding a 128 MB name took 8.8 GB and a minute; a bundle's entries need none over a few hundred bytes
MAX_EXTENSION_HEADER = 64 * 2**10
EXTENSION_HEADERS = (b"L", b"K", b"x", b"g")  # GNU long name and link, PAX per-entry and global records
# Entry kinds the walk lets through to tarfile: files, folders, and the links and devices refused later by name.
# Sparse (S, and PAX GNU.sparse records), Solaris X, multi-volume M and V entries make tarfile read maps or sizes
# the raw headers do not show, so the walk and tarfile would part ways: none is in a bundle.
ENTRY_KINDS = (b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7")
# PAX records that change an entry's size or layout away from its raw header (tarfile writes `size` only past 8 GiB)
PAX_REFUSED = re.compile(rb"(?:^|\n)\d+ (size|GNU\.sparse[^=]*)=")


def extract(archive: Path, dest: Path) -> Path:
    """The bundle folder inside a .tar.gz, extracted under dest once every entry is checked."""
    try:
        _scan_headers(archive)
        with tarfile.open(archive, "r:gz") as tar:
            members = _first_members(tar)
            top = _check_members(members)
            tar.extractall(dest, members=members, filter="data")  # the members were checked; the data filter is a second guard
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, RecursionError) as err:
        raise EdgesmithError(f"not a readable .tar.gz ({first_line(err)}); pass a bundle folder or .tar.gz made by edgesmith") from None
    require((dest / top).is_dir(), f"the archive holds a file {top!r}, not a bundle folder; pass a .tar.gz made by edgesmith")
    return dest / top


def _scan_headers(archive: Path) -> None:
    """Walks the raw 512-byte tar headers of the decompressed stream, holding none but PAX records: refuses entry
    kinds and PAX records that would make tarfile read what the raw headers do not show, extension headers (long
    names, PAX records) larger than MAX_EXTENSION_HEADER or chained past what tarfile writes, more than MAX_MEMBERS
    entries and more than MAX_UNPACKED bytes, before tarfile reads anything whole."""
    entries = total = chained = 0
    with gzip.open(archive, "rb") as stream:
        while len(header := stream.read(512)) == 512 and header != bytes(512):
            size, kind = tarfile.nti(header[124:136]), header[156:157]  # nti: octal or base-256; a TarError on garbage
            require(size >= 0, "an archive entry has a negative size; pass a .tar.gz made by edgesmith")
            require(kind in EXTENSION_HEADERS or kind in ENTRY_KINDS, f"an archive entry is of tar type {ascii(kind)}, which "
                    "no bundle holds (sparse, multi-volume or vendor entries); refusing to extract it")
            if kind in EXTENSION_HEADERS:
                chained += 1
                require(size <= MAX_EXTENSION_HEADER and chained <= 3, f"an archive entry carries a {size:,}-byte name or "
                        f"extended header ({chained} in a row), and a bundle's names are short; refusing to extract it")
                if kind in (b"x", b"g"):
                    records = stream.read(size)
                    require(not PAX_REFUSED.search(records), "an archive entry's PAX records set its size or a sparse "
                            "layout, which no bundle needs; refusing to extract it")
                    stream.seek(-len(records) % 512, os.SEEK_CUR)  # read already: only the padding is left
                    continue
            else:
                # tarfile skips data only after a file (for the others it reads the next block as a header, whatever
                # the size field says), and reads a \0 entry named with a trailing '/' as a folder
                name = header[:100].split(b"\0", 1)[0]
                holds_data = kind in (b"0", b"7") or (kind == b"\0" and not name.endswith(b"/"))
                require(holds_data or size == 0, "an archive entry that is not a file (a folder, link or device) declares "
                        f"{size:,} bytes of data; refusing to extract it")
                chained, entries, total = 0, entries + 1, total + size
                require(entries <= MAX_MEMBERS, f"the archive holds over {MAX_MEMBERS} entries, and a bundle a few dozen "
                        "files; refusing to extract it")
                require(total <= MAX_UNPACKED, f"the archive unpacks to over {MAX_UNPACKED / 2**30:.0f} GiB, verify's limit "
                        "for a bundle; refusing to extract it")
            stream.seek(-(-size // 512) * 512, os.SEEK_CUR)  # over the entry's data, decompressed but not kept


def _first_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's entries, read one header at a time: refuses past MAX_MEMBERS before holding or writing them all
    (50,000 empty files pack into 300 KB)."""
    members = []
    for m in tar:
        members.append(m)
        require(len(members) <= MAX_MEMBERS, f"the archive holds over {MAX_MEMBERS} entries, and a bundle a few dozen "
                "files; refusing to extract it")
    return members


def _check_members(members: list[tarfile.TarInfo]) -> str:
    """The archive's one top-level name; refuses links, special files and names that leave the folder."""
    require(bool(members), "the archive is empty; pass a .tar.gz made by edgesmith")
    for m in members:
        require(safe_name(m.name), f"archive entry {shown(m.name)} leaves the bundle folder or is not a plain printable name "
                f"(ASCII, no ':' or '\\', at most {MAX_NAME} bytes); refusing to extract it")
        require(not (m.issym() or m.islnk()), f"archive entry {shown(m.name)} is a link; a bundle holds only regular files")
        require(m.isfile() or m.isdir(), f"archive entry {shown(m.name)} is not a regular file; a bundle holds only regular files")
    total = sum(m.size for m in members)
    require(total <= MAX_UNPACKED, f"the archive unpacks to {total / 2**30:.1f} GiB, over verify's {MAX_UNPACKED / 2**30:.0f} GiB "
            "limit for a bundle; refusing to extract it")
    tops = sorted({PurePosixPath(m.name).parts[0] for m in members})
    require(len(tops) == 1, f"the archive holds {len(tops)} top-level entries ({', '.join(map(shown, tops[:3]))}); a bundle archive holds one folder")
    return tops[0]


def safe_name(name: str) -> bool:
    """A plain relative path that stays inside its folder (no '..', no absolute or Windows-style path), short, and
    printable ASCII: verify prints the names it checked, and a newline, a terminal escape or a look-alike colon
    (U+A789) in one could forge a line of its output. edgesmith names every file in ASCII."""
    p = PurePosixPath(name)
    return (bool(p.parts) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and ":" not in name
            and name.isascii() and name.isprintable() and len(name.encode()) <= MAX_NAME)


def shown(name: str) -> str:
    """A name from the bundle as an error may print it: escaped, and clipped."""
    return ascii(name[:80]) + ("..." if len(name) > 80 else "")


def regular_files(folder: Path) -> set[str]:
    """Relative names of every file under folder; refuses links, which could point outside the bundle."""
    found, total = set(), 0
    for root, dirs, files in os.walk(folder):  # never follows a linked folder: it is refused below
        for name in dirs + files:
            p = Path(root) / name
            rel = p.relative_to(folder).as_posix()
            require(safe_name(rel), f"{shown(rel)} is not a plain printable file name (ASCII, no ':' or '\\', at most "
                    f"{MAX_NAME} bytes); a bundle's "
                    "files are named by edgesmith, remove it")
            require(not p.is_symlink(), f"{rel} is a symbolic link; a bundle holds only regular files, copy it without links")
            if name in files:
                require(p.is_file(), f"{rel} is not a regular file; a bundle holds only regular files")
                # A second name elsewhere on the disk could change the file behind the manifest's back.
                require(p.stat().st_nlink == 1, f"{rel} is a hard link; copy the bundle with plain copies (cp -r, tar)")
                total += p.stat().st_size  # sizes before any read: a sparse file costs nothing on disk, hours to hash
                require(total <= MAX_UNPACKED, f"the bundle's files add up to over {MAX_UNPACKED / 2**20:,.0f} MiB, verify's "
                        "limit for a bundle (a BERT-family bundle is far smaller); refusing to read them")
                require(len(found) < MAX_MEMBERS, f"the bundle holds over {MAX_MEMBERS} files, and a bundle a few dozen; "
                        "refusing to read it")
                found.add(rel)
    return found


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
