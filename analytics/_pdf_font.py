"""The Unicode font of the streamed PDF writer: DejaVu Sans Condensed, embedded as a subset.

The PDF exports print company, branch, consumer and meter names that are mostly Russian,
so the standard (non-embedded) PDF fonts, limited to Windows-1252, cannot be used.  The
writer embeds DejaVu Sans Condensed (regular and bold; shipped in ``analytics/fonts/``
with its licence) as a Type 0 font with a ``CIDFontType2`` descendant:

* text strings hold 2-byte glyph ids (``Identity-H`` encoding; the subset keeps the
  original glyph ids, so ``/CIDToGIDMap /Identity`` holds);
* ``/W`` gives the advance width of every glyph used, ``/ToUnicode`` maps the glyph ids
  back to text so it can be searched and copied;
* the embedded ``FontFile2`` is a subset (fontTools) holding only the glyphs used.

A page is written as soon as it is full, so the glyphs used are known only after the last
page: :class:`PdfFont` records them as text is encoded, and the font objects are written
after the pages (PDF refers to objects by number, the xref table comes last).  What grows
with the document is the set of distinct characters, never the pages.

Why Condensed: its digits (572/1000 em) are about as wide as Helvetica's (556), which the
column layout was tuned for; regular DejaVu Sans (636) fits ~10 % less per page width.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

FontStyle = Literal["regular", "bold"]

#: Font files in ``analytics/fonts/`` per style (DejaVu 2.37, unchanged; licence in LICENSE).
FONT_FILES: Final[dict[str, str]] = {
    "regular": "DejaVuSansCondensed.ttf",
    "bold": "DejaVuSansCondensed-Bold.ttf",
}
_SPACE_LIKE: Final = frozenset({0x09, 0x0A, 0x0D})  # a cell stays on one line
_ESCAPES: Final = {0x28: "\\(", 0x29: "\\)", 0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n"}


@dataclass(frozen=True)
class FontMetrics:
    """What the writer needs from one font file, read once per process.

    Attributes
    ----------
    name
        PostScript name (``DejaVuSansCondensed``).
    data
        The TrueType file.
    cmap
        Unicode code point → glyph id.
    widths
        Advance width per glyph id, in 1/1000 em, rounded as written to ``/W`` (so
        layout and viewer agree exactly).
    bbox, ascent, descent, cap_height, stem_v
        Font descriptor values, in 1/1000 em.
    """

    name: str
    data: bytes
    cmap: dict[int, int]
    widths: tuple[int, ...]
    bbox: tuple[int, int, int, int]
    ascent: int
    descent: int
    cap_height: int
    stem_v: int


@functools.cache
def font_metrics(style: FontStyle) -> FontMetrics:
    """Load the shipped font of ``style`` and read its metrics (cached per process)."""
    from fontTools.ttLib import TTFont

    data = resources.files("analytics").joinpath("fonts", FONT_FILES[style]).read_bytes()
    font = TTFont(io.BytesIO(data), lazy=True)
    scale = 1000 / font["head"].unitsPerEm
    order = font.getGlyphOrder()
    ids = {name: i for i, name in enumerate(order)}
    cmap = {cp: ids[name] for cp, name in font.getBestCmap().items()}
    metrics = font["hmtx"].metrics
    widths = tuple(round(metrics[name][0] * scale) for name in order)
    head = font["head"]
    cap = font["glyf"]["H"].yMax if "H" in ids else font["hhea"].ascent
    weight = font["OS/2"].usWeightClass
    return FontMetrics(
        name=font["name"].getDebugName(6),
        data=data,
        cmap=cmap,
        widths=widths,
        bbox=(
            round(head.xMin * scale),
            round(head.yMin * scale),
            round(head.xMax * scale),
            round(head.yMax * scale),
        ),
        ascent=round(font["hhea"].ascent * scale),
        descent=round(font["hhea"].descent * scale),
        cap_height=round(cap * scale),
        stem_v=50 + int((weight / 65) ** 2),  # the usual estimate from the weight class
    )


class _Codes(dict[int, str]):
    """Code point → the glyph's 2-byte code as an escaped PDF literal, for ``str.translate``.

    Filled on first use of a character (``__missing__``), which is also where the font
    learns which glyphs the document uses.
    """

    def __init__(self, font: PdfFont) -> None:
        super().__init__()
        self._font = font

    def __missing__(self, cp: int) -> str:
        gid = self._font.glyph(cp)
        code = "".join(_ESCAPES.get(b, chr(b)) for b in (gid >> 8, gid & 0xFF))
        self[cp] = code
        return code


class _Advances(dict[str, int]):
    """Character → advance width in 1/1000 em (filled on first use)."""

    def __init__(self, font: PdfFont) -> None:
        super().__init__()
        self._font = font

    def __missing__(self, char: str) -> int:
        width = self._font.metrics.widths[self._font.resolve(ord(char))]
        self[char] = width
        return width


class PdfFont:
    """One embedded font of one document: encodes and measures text, records the glyphs used.

    Characters the font lacks print as ``?``; tabs and line breaks as spaces.
    """

    def __init__(self, style: FontStyle) -> None:
        self.metrics = font_metrics(style)
        self.used: dict[int, str] = {}  # glyph id → the text it stands for (ToUnicode)
        self._codes = _Codes(self)
        self.advance = _Advances(self)
        self._question = self.metrics.cmap.get(ord("?"), 0)
        self._space = self.metrics.cmap.get(ord(" "), 0)

    def resolve(self, cp: int) -> int:
        """The glyph id that prints code point ``cp`` (without recording it)."""
        if cp in _SPACE_LIKE:
            return self._space
        return self.metrics.cmap.get(cp) or self._question

    def glyph(self, cp: int) -> int:
        """The glyph id for ``cp``, recorded as used with the text it stands for."""
        gid = self.resolve(cp)
        if gid not in self.used:
            if cp in _SPACE_LIKE:
                self.used[gid] = " "
            elif gid == self._question and cp != ord("?"):
                self.used[gid] = "?"
            else:
                self.used[gid] = chr(cp)
        return gid

    def encode(self, text: str) -> bytes:
        """``text`` as the bytes of a PDF literal string (escaped, without the parentheses)."""
        return text.translate(self._codes).encode("latin-1")

    def width(self, text: str) -> int:
        """Advance width of ``text`` in 1/1000 em (no kerning, as the PDF prints it)."""
        return sum(map(self.advance.__getitem__, text))

    # --- the objects written after the last page ---------------------------------------
    def subset(self) -> bytes:
        """The TrueType file reduced to the glyphs used (glyph ids kept, so CID = GID)."""
        from fontTools import subset
        from fontTools.ttLib import TTFont

        font = TTFont(io.BytesIO(self.metrics.data), lazy=True)
        options = subset.Options()
        options.retain_gids = True  # CID = original glyph id: codes were written on the fly
        options.layout_features = []  # no shaping in a PDF table: GSUB/GPOS are not needed
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "MATH"]
        options.name_IDs = ["*"]  # keep the copyright and licence records
        options.notdef_outline = True
        subsetter = subset.Subsetter(options)
        subsetter.populate(gids=sorted({0, *self.used}))
        subsetter.subset(font)
        out = io.BytesIO()
        font.save(out)
        return out.getvalue()

    def tag(self) -> str:
        """The six-letter subset tag (``ABCDEF+``), derived from the glyphs used."""
        digest = hashlib.sha256(
            (self.metrics.name + ",".join(map(str, sorted(self.used)))).encode()
        ).digest()
        return "".join(chr(ord("A") + b % 26) for b in digest[:6])

    def widths_array(self) -> str:
        """``/W`` entries: runs of consecutive glyph ids with their widths."""
        parts: list[str] = []
        run: list[int] = []
        start = prev = -2
        for gid in sorted(self.used):
            if gid != prev + 1 and run:
                parts.append(f"{start} [{' '.join(map(str, run))}]")
                run = []
            if not run:
                start = gid
            run.append(self.metrics.widths[gid])
            prev = gid
        if run:
            parts.append(f"{start} [{' '.join(map(str, run))}]")
        return "[" + " ".join(parts) + "]"

    def to_unicode(self) -> bytes:
        """The ToUnicode CMap: each glyph id used → its text (UTF-16BE)."""
        lines = [
            "/CIDInit /ProcSet findresource begin",
            "12 dict begin",
            "begincmap",
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            "/CMapName /Adobe-Identity-UCS def",
            "/CMapType 2 def",
            "1 begincodespacerange",
            "<0000> <FFFF>",
            "endcodespacerange",
        ]
        entries = sorted(self.used.items())
        for lo in range(0, len(entries), 100):  # at most 100 entries per block
            block = entries[lo : lo + 100]
            lines.append(f"{len(block)} beginbfchar")
            lines += [
                f"<{gid:04X}> <{text.encode('utf-16-be').hex().upper()}>" for gid, text in block
            ]
            lines.append("endbfchar")
        lines += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
        return "\n".join(lines).encode("ascii")

    def objects(self, first: int) -> tuple[bytes, list[tuple[int, bytes]]]:
        """The Type 0 font dict and its four objects, numbered from ``first``.

        Returns the Type 0 dict body and ``(number, body)`` for the CIDFont, the font
        descriptor, the ``FontFile2`` stream and the ``ToUnicode`` stream.
        """
        cid, desc, file_no, cmap_no = first, first + 1, first + 2, first + 3
        m = self.metrics
        name = f"{self.tag()}+{m.name}"
        font_file = self.subset()
        packed = zlib.compress(font_file, 6)
        cmap = zlib.compress(self.to_unicode(), 6)
        type0 = (
            f"<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H "
            f"/DescendantFonts [{cid} 0 R] /ToUnicode {cmap_no} 0 R >>"
        ).encode()
        bodies = [
            (
                cid,
                (
                    f"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} "
                    "/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
                    f"/FontDescriptor {desc} 0 R /CIDToGIDMap /Identity /DW {m.widths[0]} "
                    f"/W {self.widths_array()} >>"
                ).encode(),
            ),
            (
                desc,
                (
                    f"<< /Type /FontDescriptor /FontName /{name} /Flags 32 "
                    f"/FontBBox [{' '.join(map(str, m.bbox))}] /ItalicAngle 0 /Ascent {m.ascent} "
                    f"/Descent {m.descent} /CapHeight {m.cap_height} /StemV {m.stem_v} "
                    f"/FontFile2 {file_no} 0 R >>"
                ).encode(),
            ),
            (
                file_no,
                f"<< /Length {len(packed)} /Filter /FlateDecode /Length1 {len(font_file)} >>\nstream\n".encode()
                + packed
                + b"\nendstream",
            ),
            (
                cmap_no,
                f"<< /Length {len(cmap)} /Filter /FlateDecode >>\nstream\n".encode()
                + cmap
                + b"\nendstream",
            ),
        ]
        return type0, bodies


def pdf_text_string(text: str) -> str:
    """A PDF text string (document information) in UTF-16BE with a byte-order mark."""
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"
