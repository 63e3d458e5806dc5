"""Find marked fragments in a stream of HTML bytes and replace their inner HTML.

Bytes in, bytes out: nothing here knows about ASGI. The tokenizer follows the HTML tokenizer
only as far as it must to tell a real `data-personalize` attribute from the same text inside a
comment, a raw-text element (`<script>`, `<style>`, `<textarea>`, `<title>` ...), another
attribute's value or escaped text. Everything it does not replace is passed through byte for byte.

Runs of text, comments and ordinary tags are skipped by `edge_personalize._speedups`, a small C
extension built when the package is installed, or else by a regex that does the same many times
slower. The output is the same either way. Set `EDGE_PERSONALIZE_PURE_PYTHON=1` to use the
regex even where the extension is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape

from edge_personalize.native import speedups

__all__ = ["DEFAULT_MAX_SLOT_BYTES", "MARKER", "MarkupTooCostly", "SlotCallback", "SlotRewriter"]

MARKER = b"data-personalize"
DEFAULT_MAX_SLOT_BYTES = 256 * 1024

SlotCallback = Callable[[str, bytes], bytes | None]

# Attributes tokenized as HTML does: a quote only opens a value right after `=`, so
# `<a title="x>y">` is one tag. Possessive quantifiers keep matching linear on hostile input,
# and an unterminated quoted value makes a match fail (wait for more bytes) instead of ending
# the tag early.
_ATTRIBUTES = (
    rb"(?:[\t\n\f\r /]++"
    rb"|[^\t\n\f\r />=][^\t\n\f\r /=>]*+"
    rb"(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:\"[^\"]*+\"|'[^']*+'|[^\t\n\f\r >\"'][^\t\n\f\r >]*+|(?=[\t\n\f\r >])))?+"
    rb")*+"
)
_TAG = re.compile(rb"<(/?)([A-Za-z][^\t\n\f\r />]*+)(" + _ATTRIBUTES + rb")>")
# A run of text, comments and ordinary tags: nothing in it can open a slot or change the
# tokenizer's state, so it is skipped in one regex match instead of token by token. It must
# agree with `_scan` on every construct it consumes, and stops before anything else.
_BORING = re.compile(
    rb"(?:[^<]++"
    rb"|</?(?!(?i:script|style|textarea|title|xmp|iframe|noembed|noframes|noscript|plaintext)[\t\n\f\r />])"
    rb"[A-Za-z][^\t\n\f\r />]*+" + _ATTRIBUTES + rb">"
    rb"|<!(?=--)(?s:.*?)--!?>"
    rb"|<(?=[^A-Za-z/!?]))*+"
)
_ATTR = re.compile(
    rb"([^\t\n\f\r />=][^\t\n\f\r /=>]*)"
    rb"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"|'([^']*)'|([^\t\n\f\r >]*)))?"
)
_COMMENT_END = re.compile(rb"--!?>")
# Where a run of text ends when no `>` follows to end a tag or a comment: a `<` that might begin one.
_UNENDED = re.compile(rb"<(?:[A-Za-z/!?]|\Z)")
_LETTERS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_VOID = frozenset(b"area base br col embed hr img input keygen link meta param source track wbr".split())
# Elements whose content is text up to their own end tag: markup inside them is not markup.
_RAW_TEXT = frozenset(b"script style textarea title xmp iframe noembed noframes noscript".split())
_RAW_END = {tag: re.compile(rb"</" + re.escape(tag) + rb"[\t\n\f\r />]", re.IGNORECASE) for tag in _RAW_TEXT}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BODY_END = b"</body"
_EDGE = len(MARKER) - 1  # enough bytes on either side of a chunk edge to hold any cut marker or `</body`
_PROBE = 4096  # of the next chunk, joined to a construct cut by the end of one sent on untokenized
# A tag that fails after reading far is text, and the next `<` inside it is tried again: how much
# such reading a page may cost (this, and so many times its own size) before it is given up on
# (`MarkupTooCostly`).
_RETRY_ALLOWANCE = 2 * 1024 * 1024
_RETRY_FACTOR = 8

_DATA, _COMMENT, _BOGUS, _RAW, _PLAINTEXT = range(5)

# skip(buf, pos, end, stop_tag, stop_attr): `_BORING.match(buf, pos, end).end()`, also stopping
# before tags named `stop_tag` and start tags carrying a `stop_attr` attribute.
_Skip = Callable[[bytes, int, int, bytes | None, bytes | None], int]
# ifind(buf, pos, needle, other): the first of two lowercase needles in any ASCII case, or -1.
_Find = Callable[[bytes, int, bytes, bytes | None], int]


def _find_or_size(buf: bytes, sub: bytes, start: int) -> int:
    found = buf.find(sub, start)
    return len(buf) if found < 0 else found


_speedups = speedups()
_NATIVE: tuple[_Skip, _Find] | None = None if _speedups is None else (_speedups.skip, _speedups.ifind)


@dataclass(slots=True)
class _OpenSlot:
    name: str
    tag: bytes
    start: int  # where the inner HTML begins, as an offset into the current buffer
    depth: int = 1


class MarkupTooCostly(RuntimeError):
    """Tokenizing this page's markup would take many times longer than reading it (see
    `_RETRY_ALLOWANCE`): `release()` gives the bytes held back, and the rest passes through."""


def _slot_name(attrs: bytes) -> str | None:
    for match in _ATTR.finditer(attrs):
        if match.group(1).lower() == MARKER:
            value = next((v for v in match.group(2, 3, 4) if v is not None), b"")
            name = unescape(value.decode("utf-8", "replace")).strip()
            return name or None
    return None


class SlotRewriter:
    """Incremental rewriter: `feed()` chunks, then `close()`; each returns the bytes ready to send.

    `on_slot(name, default_inner_html)` is called once per slot, in document order, and returns
    the replacement inner HTML or None to keep the default. A slot whose end tag is not found
    within `max_slot_bytes` of its start, or not at all, is passed through unchanged. A slot
    inside another slot is content of the outer one. `before_body_end` is inserted once: before
    the first `</body>` outside a slot, or at the end of a document that has none. On markup so
    malformed that tokenizing it would take many times longer than reading it, `feed()` and
    `close()` raise `MarkupTooCostly`, with nothing of that chunk sent: call `release()`.
    """

    def __init__(
        self,
        on_slot: SlotCallback,
        *,
        max_slot_bytes: int = DEFAULT_MAX_SLOT_BYTES,
        before_body_end: bytes | None = None,
    ) -> None:
        self._on_slot = on_slot
        self._insert = before_body_end
        self._max = max_slot_bytes
        self._buf = b""
        self._pos = 0
        self._state = _DATA
        self._raw_end: re.Pattern[bytes] | None = None
        self._slot: _OpenSlot | None = None
        self._sniffed = False
        self._passthrough = False
        self._sent = 0  # of self._buf, the bytes already sent on
        # Bytes sent on but not tokenized yet (see `_run`), and their last few bytes.
        self._unscanned: list[bytes] = []
        self._unscanned_from = 0  # of the first of them, the bytes already tokenized
        self._unscanned_size = 0
        self._edge = b""
        self._fed = 0
        self._retried = 0  # bytes read by tag tries that failed
        self._watching = False  # for markup no `>` closes (see `_scan`)
        self.slots_seen = 0

    def feed(self, chunk: bytes) -> bytes:
        return self._run(chunk, final=False)

    def close(self, chunk: bytes = b"") -> bytes:
        """Feed the last chunk (if any) and return everything still held back."""
        return self._run(chunk, final=True)

    def release(self) -> bytes:
        """Give up rewriting: the bytes held back so far, unchanged; later chunks pass through."""
        held, self._buf, self._slot, self._passthrough = self._buf[self._sent :], b"", None, True
        self._unscanned, self._unscanned_from = [], 0
        return held

    def _run(self, chunk: bytes, *, final: bool) -> bytes:
        if self._passthrough:
            return chunk
        self._fed += len(chunk)
        buf = self._buf + chunk if self._buf else chunk
        if not self._sniffed:
            if len(buf) < 2 and not final:
                self._buf = buf
                return b""
            self._sniffed = True
            # UTF-16 and UTF-32 pages are not ASCII-compatible: never touch them.
            if buf.startswith(_UTF16_BOMS):
                self._passthrough = True
                self._buf = b""
                return buf
        sent = self._sent  # how much of buf went out already
        if self._slot is None and self._nothing_to_find(buf):
            if final:
                # Fast path: nothing left that could be a slot or the end of the body.
                self._buf, self._pos, self._sent = b"", 0, 0
                self._unscanned, self._unscanned_from, self._unscanned_size, self._edge = [], 0, 0, b""
                return buf[sent:] + self._take_insert()
            if len(buf) <= self._max < self._unscanned_size + len(buf):
                self._tokenize_sent(self._max - len(buf))
            if self._unscanned_size + len(buf) <= self._max:
                # Nothing in this chunk either: send it on untouched, and tokenize it only when a
                # later chunk needs the state it leaves the tokenizer in, so a page without slots
                # is never tokenized at all. At most one cap's worth is kept for that, as for an
                # open slot: on a longer page the oldest of it is tokenized to make room. Only what
                # may begin the `</body` the insertion goes before is held back.
                cut = len(buf)
                if self._insert is not None:
                    lt = buf.rfind(b"<", max(0, cut - len(_BODY_END) + 1))
                    if lt >= 0 and _BODY_END.startswith(buf[lt:].lower()):
                        cut = lt
                assert self._pos == 0  # outside a slot, a scan always leaves buf at the tokenizer's position
                rest = buf[:cut]
                self._unscanned.append(rest)
                self._unscanned_size += len(rest)
                self._edge = (self._edge + rest[-_EDGE:])[-_EDGE:]
                self._buf, self._pos, self._sent = buf[cut:], 0, 0
                return buf[sent:cut]
        if self._unscanned:
            # Catch up from where tokenizing stopped.
            sent = self._unscanned_size
            self._unscanned[0] = self._unscanned[0][self._unscanned_from :]
            buf = b"".join([*self._unscanned, buf])
            self._unscanned, self._unscanned_from, self._unscanned_size, self._edge = [], 0, 0, b""
        out: list[bytes] = []
        flushed = self._scan(buf, out, final, sent)
        slot = self._slot
        if final:
            out.append(buf[flushed:])
            out.append(self._take_insert())
            self._buf, self._pos, self._sent, self._slot = b"", 0, 0, None
            return b"".join(out)
        # Hold back what may still change: an open slot, or a construct cut by the chunk edge. A
        # construct that began in bytes already sent is read again with the next chunk, and its
        # bytes are not sent twice. (No slot is open then: none began in those bytes.)
        keep = slot.start if slot is not None else self._pos
        if keep > flushed:
            out.append(buf[flushed:keep])
            flushed = keep
        self._buf = buf[keep:]
        self._sent = flushed - keep
        self._pos -= keep
        if slot is not None:
            slot.start -= keep
        return b"".join(out)

    def _scan(self, buf: bytes, out: list[bytes], final: bool, flushed: int) -> int:
        """Tokenize from self._pos; returns how much of buf is already sent or in `out`."""
        pos = self._pos
        size = len(buf)
        lowered: bytes | None = None
        next_marker = next_body_end = -1
        # Once a tag has failed, what follows may be markup no `>` closes: from then on the first `>`
        # ahead is kept at hand (size if none; pos only grows), and what it cannot end is not read.
        watching = self._watching
        next_gt = -1
        skip = _NATIVE[0] if _NATIVE is not None else None
        while pos < size:
            slot = self._slot
            if slot is not None and pos - slot.start > self._max:
                self._slot = None  # too large to hold: keep its default content
                continue
            state = self._state
            if state == _DATA:
                # The run of text, comments and ordinary tags from pos, up to `end` (none inside a
                # slot without the C scanner: there every token is looked at).
                end = pos
                if skip is not None:
                    # The same runs as `_BORING` below, cut short before the tags that matter here
                    # instead of at the next marker. Inside a slot, only tags of the slot's name
                    # count, and nothing past its cap is skipped: from there on the slot is given
                    # up and what follows is read as outside it.
                    end = min(size, pos + self._max)
                    if slot is not None:
                        end = min(end, slot.start + self._max + 1)
                elif slot is None:
                    # Up to the next marker or `</body`, each looked for again only once passed (a
                    # search to the end for every `<` before it would take quadratic time); tokens
                    # from there on are looked at one by one.
                    if lowered is None:
                        lowered = buf.lower()
                    if next_marker < pos:
                        next_marker = _find_or_size(lowered, MARKER, pos)
                    next_stop = next_marker
                    if self._insert is not None:
                        if next_body_end < pos:
                            next_body_end = _find_or_size(lowered, _BODY_END, pos)
                        next_stop = min(next_stop, next_body_end)
                    # At most one cap's worth at a time: a tag longer than the cap is text to the
                    # tokenizer below, and so it must be here, whatever the chunking.
                    end = min(next_stop, pos + self._max)
                if end > pos:
                    if watching and next_gt < pos:
                        next_gt = _find_or_size(buf, b">", pos)
                    if watching and next_gt >= end:
                        # Nothing before `end` can end a tag or a comment: the run is the text up to the
                        # first `<` that might begin one, found without reading each such `<` to `end`.
                        run = _UNENDED.search(buf, pos, end)
                        pos = run.start() if run is not None else end
                    elif skip is None:
                        run = _BORING.match(buf, pos, end)
                        pos = run.end() if run is not None else pos  # it always matches, if only the empty string
                    elif slot is None:
                        pos = skip(buf, pos, end, b"body" if self._insert is not None else None, MARKER)
                    else:
                        pos = skip(buf, pos, end, slot.tag, None)
                j = buf.find(b"<", pos)
                if j < 0:
                    pos = size
                    break
                pos = j
                if slot is not None and j - slot.start > self._max:
                    continue  # the text ran past the cap: the loop's first check gives the slot up
                if j + 1 >= size:
                    if final:
                        pos = size
                    break
                c = buf[j + 1]
                if c in _LETTERS or c == 0x2F:  # letter or "/"
                    limit = j + self._max
                    if watching and next_gt < j:
                        next_gt = _find_or_size(buf, b">", j)
                    # A tag ends at a `>`: without one before `limit` it is not tried at all, since each
                    # such try reads on to `limit` (many of them would take quadratic time).
                    tried = not watching or (next_gt < limit and next_gt < size)
                    m = _TAG.match(buf, j, limit) if tried else None
                    if m is None:
                        watching = self._watching = True
                        if c == 0x2F and j + 2 < size and buf[j + 2] not in _LETTERS:
                            self._state = _BOGUS  # `</` + non-letter is a bogus comment
                            pos = j + 2
                        elif final or size >= limit:
                            pos = j + 1  # never a tag: text, and the next `<` is tried, inside what was read
                            if tried:
                                self._retried += min(limit, size) - j
                                if self._retried > _RETRY_ALLOWANCE + _RETRY_FACTOR * self._fed:
                                    raise MarkupTooCostly(f"{self._retried} bytes reread for {self._fed}")
                        else:
                            break  # the tag may continue in the next chunk
                        continue
                    pos = m.end()
                    tag = m.group(2).lower()
                    closing = m.group(1) == b"/"
                    if slot is not None:
                        if tag == slot.tag:
                            if not closing:
                                slot.depth += 1
                            else:
                                slot.depth -= 1
                                if slot.depth == 0:
                                    flushed = self._close_slot(buf, out, flushed, slot, j)
                    elif closing and tag == b"body" and self._insert is not None:
                        out.append(buf[flushed:j])
                        out.append(self._take_insert())
                        flushed = j
                    elif not closing and tag not in _VOID and tag not in _RAW_TEXT:
                        attrs = m.group(3)
                        if MARKER in attrs.lower() and not attrs.endswith(b"/"):
                            name = _slot_name(attrs)
                            if name is not None:
                                self._slot = _OpenSlot(name, tag, pos)
                                self.slots_seen += 1
                    if not closing and tag in _RAW_TEXT:
                        self._state = _RAW
                        self._raw_end = _RAW_END[tag]
                    elif not closing and tag == b"plaintext":
                        self._state = _PLAINTEXT
                elif c == 0x21:  # "!"
                    if buf.startswith(b"<!--", j):
                        self._state = _COMMENT
                        pos = j + 2  # `<!-->` and `<!--->` are whole comments
                    elif size - j < 4 and not final and b"<!--".startswith(buf[j:]):
                        break
                    else:
                        self._state = _BOGUS
                        pos = j + 2
                elif c == 0x3F:  # "?"
                    self._state = _BOGUS
                    pos = j + 2
                else:
                    pos = j + 1
            elif state == _COMMENT:
                m = _COMMENT_END.search(buf, pos)
                if m is None:
                    pos = size if final else max(pos, size - 3)
                    break
                pos = m.end()
                self._state = _DATA
            elif state == _BOGUS:
                k = buf.find(b">", pos)
                if k < 0:
                    pos = size
                    break
                pos = k + 1
                self._state = _DATA
            elif state == _RAW:
                assert self._raw_end is not None
                m = self._raw_end.search(buf, pos)
                if m is None:
                    pos = size if final else max(pos, size - len(self._raw_end.pattern))
                    break
                pos = m.start()
                self._state = _DATA
            else:  # _PLAINTEXT: the rest of the document is text
                pos = size
        if self._slot is not None and pos - self._slot.start > self._max:
            self._slot = None
        self._pos = pos
        return flushed

    def _tokenize_sent(self, keep: int) -> None:
        """Tokenize the oldest of the bytes sent on untokenized until at most `keep` of them are left
        (none of them holds a marker or `</body`: nothing is replaced or inserted), carrying the
        tokenizer's state past them. Each chunk is tokenized where it lies; only a construct cut
        by a chunk's end is read again joined with the start of the next one."""
        held = self._pos
        chunks = self._unscanned
        while self._unscanned_size > keep and len(chunks) > 1:
            head, start = chunks[0], self._unscanned_from
            self._pos = start
            self._scan(head, [], False, len(head))
            cut = self._pos  # where a construct cut by the end of `head` begins, or its end
            rest = head[cut:]
            joined = rest + chunks[1][:_PROBE]
            self._pos = 0
            self._scan(joined, [], False, len(joined))
            chunks.pop(0)
            if self._pos < len(rest):
                # Still cut, even with the start of the next chunk: read it with all of that chunk.
                chunks[0] = rest + chunks[0]
                self._unscanned_from = self._pos
            else:
                self._unscanned_from = self._pos - len(rest)
            self._unscanned_size -= len(head) - start - len(rest) + self._pos
        self._pos = held

    def _nothing_to_find(self, buf: bytes) -> bool:
        """Whether nothing from self._pos on, nor across the edge with the unscanned bytes, could be a
        slot or the end of the body."""
        edge = self._edge + buf[:_EDGE] if self._edge else b""
        if _NATIVE is not None:
            body_end = _BODY_END if self._insert is not None else None
            return _NATIVE[1](buf, self._pos, MARKER, body_end) < 0 and _NATIVE[1](edge, 0, MARKER, body_end) < 0
        return not self._holds_a_stop(buf.lower(), self._pos) and not self._holds_a_stop(edge.lower(), 0)

    def _holds_a_stop(self, lowered: bytes, pos: int) -> bool:
        return lowered.find(MARKER, pos) >= 0 or (self._insert is not None and lowered.find(_BODY_END, pos) >= 0)

    def _take_insert(self) -> bytes:
        insert, self._insert = self._insert, None
        return insert or b""

    def _close_slot(self, buf: bytes, out: list[bytes], flushed: int, slot: _OpenSlot, end: int) -> int:
        self._slot = None
        if end - slot.start > self._max:
            return flushed
        replacement = self._on_slot(slot.name, buf[slot.start : end])
        if replacement is None:
            return flushed
        out.append(buf[flushed : slot.start])
        out.append(replacement)
        return end
