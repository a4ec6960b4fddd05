"""Compressed input files, checked whole before a run: Beam reads a truncated one as a shorter file.

Beam's `ReadFromText` decompresses a file by its extension (`.gz`, `.bz2`, `.deflate`,
`.xz`/`.lzma`, `.zst`/`.zstd`) with its `CompressedFile`, which stops at the end of the
compressed bytes without asking whether the compressed stream ended there: a gzip file cut
in half scores the rows of its first half, and the run finishes as if that were all.
Bytes that do not decompress at all do raise, but inside the pipeline, after the outputs'
temporary directories are made, and as zlib's bare "Error -3 while decompressing data"
without the file's name. The first looks like a good run, the second does not say which
file is bad, so `check_decompresses(path)` reads the whole file once before the pipeline starts, with the
decompressors Beam uses (concatenated gzip or bzip2 members read on as Beam reads them),
and raises `UnreadableInput` naming the file.

It streams: 64 KiB of compressed bytes at a time, each decompressed and dropped, so memory
stays at one chunk's output (at most the format's ratio times 64 KiB, where Beam's reader
takes 16 MiB at a time), whatever the file's size. The price is one more decompression
pass over each compressed input, small next to scoring its rows.

The score command checks local files only: for `gs://` inputs the same check would
download every object to the machine that launches the job (for Dataflow, the laptop),
so there a corrupt file fails the pipeline with Beam's message and a truncated one is read
as far as it goes (docs/offline-scoring.md says so).
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Protocol

import zstandard
from apache_beam.io.filesystem import CompressionTypes

_CHUNK = 64 * 1024


class UnreadableInput(ValueError):
    """A compressed input file that does not decompress to the end of its compressed stream."""


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


def compression_of(path: str) -> str | None:
    """The compression Beam reads `path` with (its extension: "gzip", "bzip2"...), None for plain text."""
    compression = CompressionTypes.detect_compression_type(path)
    return None if compression == CompressionTypes.UNCOMPRESSED else str(compression)


def check_decompresses(path: str) -> None:
    """Decompress all of the local file `path` if it is compressed; `UnreadableInput` if it cannot be."""
    compression = compression_of(path)
    if compression is None:
        return
    decompressor = _decompressor(compression)
    size = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                while chunk:
                    if decompressor.eof:  # another member follows: Beam reads it on
                        decompressor = _decompressor(compression)
                    decompressor.decompress(chunk)
                    chunk = decompressor.unused_data if decompressor.eof else b""
    except Exception as exc:  # noqa: BLE001 - zlib.error, OSError, LZMAError, ZstdError: the data is bad
        raise UnreadableInput(f"{path} is not readable {compression} data: {exc}") from None
    if size == 0:
        raise UnreadableInput(f"{path} is empty: an empty file is no {compression} data")
    if not decompressor.eof:
        raise UnreadableInput(
            f"{path} is cut short: its {compression} data ends before the end of its compressed stream"
        )


def _decompressor(compression: str) -> _Decompressor:
    # The ones Beam's CompressedFile makes (apache_beam/io/filesystem.py).
    if compression == CompressionTypes.GZIP:
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if compression == CompressionTypes.DEFLATE:
        return zlib.decompressobj()
    if compression == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor()
    if compression == CompressionTypes.LZMA:
        return lzma.LZMADecompressor()
    if compression == CompressionTypes.ZSTD:
        zstd: _Decompressor = zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()
        return zstd
    raise ValueError(f"no decompressor for {compression}")
