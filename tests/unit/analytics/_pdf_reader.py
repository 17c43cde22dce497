"""A small, strict reader for the PDFs ``analytics.write_export`` writes (test helper).

No PDF library is in the environment (no pypdf, pdfminer or poppler), so this reads the
file the way a viewer does for text extraction: the xref table gives every object; each
page's ``/Font`` resources lead to a Type 0 font, its ``ToUnicode`` CMap, its
``CIDFontType2`` descendant (``/W``) and the embedded ``FontFile2``; the content streams
are scanned for ``Tf`` (font selection) and literal strings shown with ``Tj``, whose
2-byte glyph codes are mapped back to text through the CMap.  Anything unexpected (an
xref offset that is wrong, a code missing from the CMap or from ``/W``, a raw carriage
return inside a string) fails the test.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

_ESC = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}


@dataclass
class PdfFontInfo:
    """One Type 0 font of the file."""

    base_font: str
    to_unicode: dict[int, str]
    widths: dict[int, int]
    font_file: bytes  # the embedded TrueType (decompressed)
    length1: int


@dataclass
class PdfDoc:
    """What a PDF shows: pages, strings in order with the font resource they use."""

    pages: int
    runs: list[tuple[str, str]] = field(default_factory=list)  # (font resource, text)
    fonts: dict[str, PdfFontInfo] = field(default_factory=dict)
    info: bytes = b""
    codes: dict[str, set[int]] = field(default_factory=dict)  # font resource → codes shown

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.runs]


def _objects(data: bytes) -> dict[int, bytes]:
    assert data.startswith(b"%PDF-1.4\n") and data.rstrip().endswith(b"%%EOF")
    start = int(re.search(rb"startxref\n(\d+)\n%%EOF", data).group(1))  # type: ignore[union-attr]
    assert data[start : start + 4] == b"xref"
    head = re.match(rb"xref\n0 (\d+)\n", data[start:])
    assert head is not None
    count = int(head.group(1))
    entries = data[start + head.end() :].split(b"\n")[:count]
    objects: dict[int, bytes] = {}
    for number, entry in enumerate(entries[1:], start=1):
        offset = int(entry[:10])
        prefix = f"{number} 0 obj\n".encode()
        assert data[offset:].startswith(prefix), f"xref entry {number} is wrong"
        body_at = offset + len(prefix)
        length = re.match(rb"<< /Length (\d+)", data[body_at:])
        if length is not None and b">>\nstream\n" in data[body_at : body_at + 200]:
            stream_at = data.index(b">>\nstream\n", body_at) + len(b">>\nstream\n")
            end = stream_at + int(length.group(1))
            assert data[end:].startswith(b"\nendstream\nendobj\n"), (
                f"object {number}: wrong /Length"
            )
            objects[number] = data[body_at:end]
        else:
            end = data.index(b"\nendobj\n", body_at)
            objects[number] = data[body_at:end]
    return objects


def _stream(body: bytes) -> bytes:
    head, raw = body.split(b"\nstream\n", 1)
    assert b"/Filter /FlateDecode" in head
    return zlib.decompress(raw)


def _ref(body: bytes, key: bytes) -> int:
    m = re.search(rb"/" + key + rb" (\d+) 0 R", body)
    assert m is not None, f"no /{key.decode()} in {body[:200]!r}"
    return int(m.group(1))


def _to_unicode(cmap: bytes) -> dict[int, str]:
    out: dict[int, str] = {}
    for block in re.findall(rb"\d+ beginbfchar\n(.*?)\nendbfchar", cmap, re.DOTALL):
        for src, dst in re.findall(rb"<([0-9A-F]{4})> <([0-9A-F]+)>", block):
            out[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    return out


def _widths(w: bytes) -> dict[int, int]:
    out: dict[int, int] = {}
    for start, run in re.findall(rb"(\d+) \[([\d ]+)\]", w):
        for k, value in enumerate(run.split()):
            out[int(start) + k] = int(value)
    return out


def _font(objects: dict[int, bytes], number: int) -> PdfFontInfo:
    type0 = objects[number]
    assert b"/Subtype /Type0" in type0 and b"/Encoding /Identity-H" in type0
    base = re.search(rb"/BaseFont /(\S+)", type0).group(1).decode()  # type: ignore[union-attr]
    cid_no = int(re.search(rb"/DescendantFonts \[(\d+) 0 R\]", type0).group(1))  # type: ignore[union-attr]
    cid = objects[cid_no]
    assert b"/Subtype /CIDFontType2" in cid and b"/CIDToGIDMap /Identity" in cid
    widths = _widths(re.search(rb"/W (\[.*\]) >>", cid).group(1))  # type: ignore[union-attr]
    desc = objects[_ref(cid, b"FontDescriptor")]
    file_body = objects[_ref(desc, b"FontFile2")]
    length1 = int(re.search(rb"/Length1 (\d+)", file_body).group(1))  # type: ignore[union-attr]
    font_file = _stream(file_body)
    assert len(font_file) == length1
    return PdfFontInfo(
        base, _to_unicode(_stream(objects[_ref(type0, b"ToUnicode")])), widths, font_file, length1
    )


def _literal(data: bytes, i: int) -> tuple[bytes, int]:
    """The literal string starting at ``data[i] == '('``; returns (bytes, index after it)."""
    out = bytearray()
    depth = 1
    i += 1
    while True:
        c = data[i]
        if c == 0x5C:
            n = data[i + 1]
            if n in _ESC:
                out.append(_ESC[n])
                i += 2
            elif 0x30 <= n <= 0x37:
                digits = re.match(rb"[0-7]{1,3}", data[i + 1 : i + 4]).group(0)  # type: ignore[union-attr]
                out.append(int(digits, 8) & 0xFF)
                i += 1 + len(digits)
            else:
                out.append(n)
                i += 2
            continue
        assert c != 0x0D, "a raw carriage return inside a string (a viewer turns it into LF)"
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
        out.append(c)
        i += 1


def read_pdf(path: Path) -> PdfDoc:
    """Validate the structure of ``path`` and return what its pages show."""
    data = path.read_bytes()
    objects = _objects(data)
    pages_obj = objects[2]
    count = int(re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", pages_obj).group(1))  # type: ignore[union-attr]
    kids = [int(k) for k in re.findall(rb"(\d+) 0 R", pages_obj)]
    assert len(kids) == count
    doc = PdfDoc(pages=count, info=objects[5])
    for kid in kids:
        page = objects[kid]
        assert page.startswith(b"<< /Type /Page ")
        resources = re.search(rb"/Font << (.*?) >>", page).group(1)  # type: ignore[union-attr]
        for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", resources):
            if name.decode() not in doc.fonts:
                doc.fonts[name.decode()] = _font(objects, int(number))
        content = _stream(objects[_ref(page, b"Contents")])
        font = ""
        i = 0
        while i < len(content):
            if content[i] == 0x28:
                raw, i = _literal(content, i)
                assert len(raw) % 2 == 0, "glyph codes are 2 bytes"
                codes = [int.from_bytes(raw[k : k + 2], "big") for k in range(0, len(raw), 2)]
                info = doc.fonts[font]
                missing = [c for c in codes if c not in info.to_unicode or c not in info.widths]
                assert not missing, f"codes {missing} lack a ToUnicode entry or a /W width"
                doc.codes.setdefault(font, set()).update(codes)
                doc.runs.append((font, "".join(info.to_unicode[c] for c in codes)))
                continue
            m = re.compile(rb"/(F\d+) [\d.]+ Tf").match(content, i)
            if m is not None:
                font = m.group(1).decode()
                i = m.end()
                continue
            i += 1
    return doc
