/* Native scanning for edge_personalize.rewriter, and the key inputs of edge_personalize.replay.
 *
 * skip() consumes exactly what the rewriter's `_BORING` regex consumes (text, comments and
 * ordinary tags), optionally stopping earlier before a tag the caller must look at itself.
 * ifind() is a case-insensitive bytes.find for one or two lowercase needles.
 *
 * Both must agree byte for byte with the pure-Python code in rewriter.py: the tests compare
 * them on generated tag soup, and fuzz/checks.py compares them on whatever the fuzzer finds.
 *
 * key_inputs() encodes the request values a kept response is made from; its encoding differs
 * from the pure-Python one in replay.py, but the two must tell the same inputs apart.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <string.h>

/* Character classes, as in the `_BORING` and `_ATTRIBUTES` patterns. */
enum {
    WS = 1,         /* [\t\n\f\r ] */
    SEP = 2,        /* [\t\n\f\r /]: between attributes */
    NAME_END = 4,   /* [\t\n\f\r />]: ends a tag name */
    ANAME_END = 8,  /* [\t\n\f\r /=>]: ends an attribute name */
    VALUE_END = 16, /* [\t\n\f\r >]: ends an unquoted value */
};

#define SPACE (WS | SEP | NAME_END | ANAME_END | VALUE_END)

static const unsigned char cls[256] = {
    ['\t'] = SPACE,
    ['\n'] = SPACE,
    ['\f'] = SPACE,
    ['\r'] = SPACE,
    [' '] = SPACE,
    ['/'] = SEP | NAME_END | ANAME_END,
    ['>'] = NAME_END | ANAME_END | VALUE_END,
    ['='] = ANAME_END,
};

static inline int
is_letter(unsigned char c)
{
    return (unsigned char)((c | 0x20) - 'a') < 26;
}

/* ASCII only, as bytes.lower. */
static inline unsigned char
to_lower(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26 ? (unsigned char)(c + 32) : c;
}

/* Elements whose content is not markup; `_BORING` stops before their start and end tags. */
static const struct {
    const char *name;
    Py_ssize_t len;
} RAW_TEXT[] = {
    {"script", 6}, {"style", 5}, {"textarea", 8}, {"title", 5}, {"xmp", 3},
    {"iframe", 6}, {"noembed", 7}, {"noframes", 8}, {"noscript", 8}, {"plaintext", 9},
};

/* Whether s[0:n] lowercased equals the lowercase `word`. */
static inline int
equals_lower(const unsigned char *s, const unsigned char *word, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (to_lower(s[i]) != word[i]) {
            return 0;
        }
    }
    return 1;
}

static int
is_raw_text(const unsigned char *name, Py_ssize_t n)
{
    /* For each first letter, the lengths of the raw-text names that start with it: most tag
     * names are ruled out by these two lookups alone. */
    static const unsigned short lengths[26] = {
        ['i' - 'a'] = 1 << 6,
        ['n' - 'a'] = 1 << 7 | 1 << 8,
        ['p' - 'a'] = 1 << 9,
        ['s' - 'a'] = 1 << 5 | 1 << 6,
        ['t' - 'a'] = 1 << 5 | 1 << 8,
        ['x' - 'a'] = 1 << 3,
    };
    if (n < 3 || n > 9 || !(lengths[(name[0] | 0x20) - 'a'] & (1 << n))) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(RAW_TEXT) / sizeof(RAW_TEXT[0]); i++) {
        if (RAW_TEXT[i].len == n && equals_lower(name, (const unsigned char *)RAW_TEXT[i].name, n)) {
            return 1;
        }
    }
    return 0;
}

/* The index of the first byte at or after p that is in the class `ends`, or `end`. Every class
 * spanned holds `>`: from a position at or before `fence`, where there is one, the loop needs no
 * bound. Names and values are short: unrolled, it spends less on its own bookkeeping. */
static inline Py_ssize_t
span(const unsigned char *s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t fence, int ends)
{
    if (p <= fence) {
        for (;; p += 4) {
            if (cls[s[p]] & ends) {
                return p;
            }
            if (cls[s[p + 1]] & ends) {
                return p + 1;
            }
            if (cls[s[p + 2]] & ends) {
                return p + 2;
            }
            if (cls[s[p + 3]] & ends) {
                return p + 3;
            }
        }
    }
    while (p < end && !(cls[s[p]] & ends)) {
        p++;
    }
    return p;
}

/* The index of the first `c` in s[p:end], or -1. Quoted values and text between tags are
 * mostly short: a plain loop finds those before a call to memchr would have set up. */
static inline Py_ssize_t
find_byte(const unsigned char *s, Py_ssize_t p, Py_ssize_t end, unsigned char c)
{
#if defined(__SSE2__)
    /* One 16-byte compare finds most quotes and tag starts without a loop to mispredict. */
    if (p + 16 <= end) {
        __m128i block = _mm_loadu_si128((const __m128i *)(s + p));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, _mm_set1_epi8((char)c)));
        if (mask) {
            return p + __builtin_ctz(mask);
        }
        p += 16;
        if (p + 16 <= end) {
            block = _mm_loadu_si128((const __m128i *)(s + p));
            mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, _mm_set1_epi8((char)c)));
            if (mask) {
                return p + __builtin_ctz(mask);
            }
            p += 16;
        }
        if (p >= end) {
            return -1;
        }
        const unsigned char *found = memchr(s + p, c, (size_t)(end - p));
        return found == NULL ? -1 : found - s;
    }
#endif
    Py_ssize_t stop = end - p > 16 ? p + 16 : end;
    for (; p + 4 <= stop; p += 4) {
        if (s[p] == c) {
            return p;
        }
        if (s[p + 1] == c) {
            return p + 1;
        }
        if (s[p + 2] == c) {
            return p + 2;
        }
        if (s[p + 3] == c) {
            return p + 3;
        }
    }
    for (; p < stop; p++) {
        if (s[p] == c) {
            return p;
        }
    }
    if (p >= end) {
        return -1;
    }
    const unsigned char *found = memchr(s + p, c, (size_t)(end - p));
    return found == NULL ? -1 : found - s;
}

typedef struct {
    const unsigned char *tag; /* stop before a start or end tag of this name */
    Py_ssize_t tag_len;
    const unsigned char *attr; /* stop before a start tag with an attribute of this name */
    Py_ssize_t attr_len;
} Stops;

/* The end of the tag opening at s[i] (a '<') if `_BORING`'s tag alternative matches it within
 * `end` and no stop applies, else -1. */
static Py_ssize_t
match_tag(const unsigned char *s, Py_ssize_t i, Py_ssize_t end, Py_ssize_t fence, const Stops *stops)
{
    Py_ssize_t k = i + 1;
    int closing = 0;
    if (k < end && s[k] == '/') {
        closing = 1;
        k++;
    }
    if (k >= end || !is_letter(s[k])) {
        return -1;
    }
    Py_ssize_t p = span(s, k + 1, end, fence, NAME_END);
    /* The regex's lookahead wants the name followed by a delimiter; a name cut by `end` fails
     * later anyway, for want of a `>`. */
    if (is_raw_text(s + k, p - k)) {
        return -1;
    }
    if (stops->tag != NULL && p - k == stops->tag_len && equals_lower(s + k, stops->tag, p - k)) {
        return -1;
    }
    const int check_attr = stops->attr != NULL && !closing;
    for (;;) {
        if (p >= end) {
            return -1;
        }
        unsigned char c = s[p];
        if (c == '>') {
            return p + 1;
        }
        if (cls[c] & SEP) {
            p++;
            continue;
        }
        if (c == '=') {
            return -1; /* no attribute starts with `=`, and nothing else may follow */
        }
        Py_ssize_t name = p;
        p = span(s, p + 1, end, fence, ANAME_END);
        if (check_attr && p - name == stops->attr_len && equals_lower(s + name, stops->attr, p - name)) {
            return -1;
        }
        /* An optional `= value`, all or nothing: when it does not match, the name ends here. */
        Py_ssize_t q = p;
        if (q + 1 < end && s[q] == '=' && (s[q + 1] == '"' || s[q + 1] == '\'')) {
            q++; /* the usual name="value", without looking for spaces around `=` */
        }
        else {
            while (q < end && (cls[s[q]] & WS)) {
                q++;
            }
            if (q >= end || s[q] != '=') {
                continue;
            }
            q++;
            while (q < end && (cls[s[q]] & WS)) {
                q++;
            }
            if (q >= end) {
                continue;
            }
        }
        c = s[q];
        if (c == '"' || c == '\'') {
            /* A quote opens a value only here, right after `=`; unterminated, it is no value. */
            Py_ssize_t close = find_byte(s, q + 1, end, c);
            if (close >= 0) {
                p = close + 1;
            }
        }
        else if (cls[c] & VALUE_END) {
            p = q; /* an empty value */
        }
        else {
            p = span(s, q + 1, end, fence, VALUE_END);
        }
    }
}

/* The end of the comment opening at s[i] (`<!--`) if it closes within `end`, else -1: the
 * first `>` that ends `-->` or `--!>` starting at i + 2 or later (`<!-->` and `<!--->` are
 * whole comments). */
static Py_ssize_t
match_comment(const unsigned char *s, Py_ssize_t i, Py_ssize_t end)
{
    Py_ssize_t q = i + 4;
    for (;;) {
        Py_ssize_t gt = find_byte(s, q, end, '>');
        if (gt < 0) {
            return -1;
        }
        if (s[gt - 1] == '-' && s[gt - 2] == '-') {
            return gt + 1;
        }
        if (s[gt - 1] == '!' && gt - 3 >= i + 2 && s[gt - 2] == '-' && s[gt - 3] == '-') {
            return gt + 1;
        }
        q = gt + 1;
    }
}

static Py_ssize_t
scan(const unsigned char *s, Py_ssize_t pos, Py_ssize_t end, const Stops *stops)
{
    /* A `>` near `end` for span(), or -1: looked for among the last 64 bytes only, so that a call
     * costs no more than that, however often it is made on bytes without one. */
    Py_ssize_t fence = end - 1;
    while (fence >= pos && fence >= end - 64 && s[fence] != '>') {
        fence--;
    }
    if (fence < pos || s[fence] != '>') {
        fence = -1;
    }
    Py_ssize_t p = pos;
    while (p < end) {
        if (s[p] != '<') {
            p = find_byte(s, p, end, '<');
            if (p < 0) {
                return end;
            }
        }
        if (p + 1 >= end) {
            return p; /* what follows `<` is not known yet */
        }
        unsigned char c = s[p + 1];
        Py_ssize_t next;
        if (is_letter(c) || c == '/') {
            next = match_tag(s, p, end, fence, stops);
        }
        else if (c == '!') {
            next = p + 3 < end && s[p + 2] == '-' && s[p + 3] == '-' ? match_comment(s, p, end) : -1;
        }
        else if (c == '?') {
            next = -1;
        }
        else {
            next = p + 1; /* `<` before anything else is text */
        }
        if (next < 0) {
            return p;
        }
        p = next;
    }
    return p;
}

/* An optional lowercase name argument: None, or bytes. */
static int
optional_name(PyObject *arg, const char *what, const unsigned char **name, Py_ssize_t *len)
{
    if (arg == Py_None) {
        *name = NULL;
        *len = 0;
        return 0;
    }
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes or None, not %.200s", what, Py_TYPE(arg)->tp_name);
        return -1;
    }
    *name = (const unsigned char *)PyBytes_AS_STRING(arg);
    *len = PyBytes_GET_SIZE(arg);
    return 0;
}

/* Clamps pos and end into the buffer the way re's match(buf, pos, endpos) does. */
static void
clamp(Py_ssize_t size, Py_ssize_t *pos, Py_ssize_t *end)
{
    if (*pos < 0) {
        *pos = 0;
    }
    if (*pos > size) {
        *pos = size;
    }
    if (*end > size) {
        *end = size;
    }
    if (*end < *pos) {
        *end = *pos;
    }
}

PyDoc_STRVAR(skip_doc,
"skip(buf, pos, end, stop_tag=None, stop_attr=None, /) -> int\n\n"
"Where the run of text, comments and ordinary tags that starts at buf[pos] ends, looking no\n"
"further than buf[end]: the same as the rewriter's `_BORING.match(buf, pos, end).end()`.\n"
"With `stop_tag` (a lowercase tag name) the run also stops before any start or end tag of\n"
"that name; with `stop_attr` (a lowercase attribute name) before any start tag carrying that\n"
"attribute.");

static PyObject *
skip(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_Format(PyExc_TypeError, "skip() takes from 3 to 5 positional arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "skip() argument 1 must be bytes, not %.200s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Stops stops;
    if (optional_name(nargs > 3 ? args[3] : Py_None, "stop_tag", &stops.tag, &stops.tag_len) < 0
        || optional_name(nargs > 4 ? args[4] : Py_None, "stop_attr", &stops.attr, &stops.attr_len) < 0) {
        return NULL;
    }
    clamp(PyBytes_GET_SIZE(args[0]), &pos, &end);
    return PyLong_FromSsize_t(scan((const unsigned char *)PyBytes_AS_STRING(args[0]), pos, end, &stops));
}

/* --- ifind ------------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *text;
    Py_ssize_t len;
} Needle;

static inline int
needle_at(const unsigned char *s, Py_ssize_t i, Py_ssize_t size, const Needle *needle)
{
    return needle->text != NULL && i + needle->len <= size && equals_lower(s + i, needle->text, needle->len);
}

#if defined(__GNUC__) && (defined(__SSE2__) || defined(__aarch64__))
#define HAVE_VECTORS 1
typedef unsigned char u8x16 __attribute__((vector_size(16)));

static inline u8x16
load16(const unsigned char *p)
{
    u8x16 v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline u8x16
splat16(unsigned char c)
{
    u8x16 v;
    memset(&v, c, sizeof(v));
    return v;
}

static inline int
any16(u8x16 v)
{
    uint64_t halves[2];
    memcpy(halves, &v, sizeof(halves));
    return (halves[0] | halves[1]) != 0;
}

/* A needle's first and last byte in every lane, and what to OR a text byte with to compare it
 * in either case (0x20 for a letter), made once per search. */
typedef struct {
    u8x16 first, first_fold, last, last_fold;
    Py_ssize_t last_at;
} Ends;

static inline Ends
ends_of(const Needle *needle)
{
    unsigned char first = needle->text[0], last = needle->text[needle->len - 1];
    Ends ends = {
        .first = splat16(first),
        .first_fold = splat16(is_letter(first) ? 0x20 : 0),
        .last = splat16(last),
        .last_fold = splat16(is_letter(last) ? 0x20 : 0),
        .last_at = needle->len - 1,
    };
    return ends;
}

/* Lanes where the block may start the needle: its first and last byte match, letters in either case. */
static inline u8x16
candidates(const unsigned char *p, const Ends *ends)
{
    u8x16 a = (u8x16)((load16(p) | ends->first_fold) == ends->first);
    u8x16 b = (u8x16)((load16(p + ends->last_at) | ends->last_fold) == ends->last);
    return a & b;
}
#endif

#ifdef HAVE_VECTORS
static inline u8x16
lane_hits(const unsigned char *p, const Ends *one, const Ends *other)
{
    u8x16 hits = candidates(p, one);
    if (other != NULL) {
        hits |= candidates(p, other);
    }
    return hits;
}

/* One bit per lane of `hits`, lane 0 lowest. */
static inline unsigned
lane_bits(u8x16 hits)
{
#if defined(__SSE2__)
    __m128i lanes;
    memcpy(&lanes, &hits, sizeof(lanes));
    return (unsigned)_mm_movemask_epi8(lanes);
#else
    unsigned char lanes[16];
    memcpy(lanes, &hits, sizeof(lanes));
    unsigned bits = 0;
    for (int k = 0; k < 16; k++) {
        bits |= lanes[k] ? 1u << k : 0;
    }
    return bits;
#endif
}

/* The first lane of `hits`, the 16 bytes from s[i], where a needle starts, or -1. */
static inline Py_ssize_t
first_hit(const unsigned char *s, Py_ssize_t i, Py_ssize_t size, u8x16 hits, const Needle *one, const Needle *other)
{
    for (unsigned bits = lane_bits(hits); bits != 0; bits &= bits - 1) {
        Py_ssize_t j = i + __builtin_ctz(bits);
        if (needle_at(s, j, size, one) || needle_at(s, j, size, other)) {
            return j;
        }
    }
    return -1;
}
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* find_first's search, which the compiler makes twice: for one needle (`two` is 0, `other` is
 * not looked at) and for two, so that neither tests for the other in its loop. */
static ALWAYS_INLINE Py_ssize_t
search(const unsigned char *s, Py_ssize_t pos, Py_ssize_t size, const Needle *one, const Needle *other, const int two)
{
    Py_ssize_t i = pos;
#ifdef HAVE_VECTORS
    Py_ssize_t longest = two && other->len > one->len ? other->len : one->len;
    const Ends one_ends = ends_of(one);
    const Ends other_ends = two ? ends_of(other) : one_ends;
    const Ends *also = two ? &other_ends : NULL;
    /* 64 bytes a step while no lane could start a needle, as in most of a page. */
    for (; i + 64 + longest - 1 <= size; i += 64) {
        u8x16 hits[4];
        for (int k = 0; k < 4; k++) {
            hits[k] = lane_hits(s + i + 16 * k, &one_ends, also);
        }
        if (!any16(hits[0] | hits[1] | hits[2] | hits[3])) {
            continue;
        }
        for (int k = 0; k < 4; k++) {
            Py_ssize_t found = first_hit(s, i + 16 * k, size, hits[k], one, other);
            if (found >= 0) {
                return found;
            }
        }
    }
    for (; i + 16 + longest - 1 <= size; i += 16) {
        Py_ssize_t found = first_hit(s, i, size, lane_hits(s + i, &one_ends, also), one, other);
        if (found >= 0) {
            return found;
        }
    }
#endif
    for (; i < size; i++) {
        if (needle_at(s, i, size, one) || needle_at(s, i, size, other)) {
            return i;
        }
    }
    return -1;
}

static Py_ssize_t
find_first(const unsigned char *s, Py_ssize_t pos, Py_ssize_t size, const Needle *one, const Needle *other)
{
    return other->text != NULL ? search(s, pos, size, one, other, 1) : search(s, pos, size, one, other, 0);
}

static int
needle_arg(PyObject *arg, const char *what, Needle *needle)
{
    if (optional_name(arg, what, &needle->text, &needle->len) < 0) {
        return -1;
    }
    if (needle->text != NULL && needle->len == 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be empty", what);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(ifind_doc,
"ifind(buf, pos, needle, other=None, /) -> int\n\n"
"The lowest index from `pos` on where `needle` or `other` (lowercase bytes) occurs in buf\n"
"in any ASCII case, or -1: the same as min of buf.lower().find(needle, pos) and\n"
"buf.lower().find(other, pos), ignoring -1, without lowering a copy of buf.");

static PyObject *
ifind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4) {
        PyErr_Format(PyExc_TypeError, "ifind() takes 3 or 4 positional arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "ifind() argument 1 must be bytes, not %.200s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Needle one, other;
    if (args[2] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "ifind() needle must be bytes, not None");
        return NULL;
    }
    if (needle_arg(args[2], "needle", &one) < 0 || needle_arg(nargs > 3 ? args[3] : Py_None, "other", &other) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (pos < 0) {
        pos += size; /* as bytes.find reads a negative start */
        if (pos < 0) {
            pos = 0;
        }
    }
    if (pos > size) {
        return PyLong_FromSsize_t(-1);
    }
    return PyLong_FromSsize_t(find_first((const unsigned char *)PyBytes_AS_STRING(args[0]), pos, size, &one, &other));
}

/* --- key_inputs -------------------------------------------------------------------------- */

/* Records are a tag byte, the length (in seven-bit groups, least significant first, the top bit
 * set on all but the last) and that many bytes: so no two different sets of inputs give the
 * same encoding, and a small request's inputs fit one block of the hash. Written to a buffer on
 * the stack, on the heap once they outgrow it. */
typedef struct {
    unsigned char *data;
    Py_ssize_t size, capacity;
    unsigned char stack[512];
} Buffer;

static int
reserve(Buffer *buf, Py_ssize_t more)
{
    Py_ssize_t needed = buf->size + more;
    if (needed <= buf->capacity) {
        return 1;
    }
    Py_ssize_t capacity = needed * 2;
    unsigned char *grown = buf->data == buf->stack ? PyMem_Malloc(capacity) : PyMem_Realloc(buf->data, capacity);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (buf->data == buf->stack) {
        memcpy(grown, buf->stack, buf->size);
    }
    buf->data = grown;
    buf->capacity = capacity;
    return 1;
}

static int
put(Buffer *buf, char tag, const void *data, Py_ssize_t len)
{
    if (reserve(buf, 11 + len) < 0) {
        return -1;
    }
    buf->data[buf->size++] = (unsigned char)tag;
    size_t length = (size_t)len;
    while (length >= 0x80) {
        buf->data[buf->size++] = (unsigned char)(length | 0x80);
        length >>= 7;
    }
    buf->data[buf->size++] = (unsigned char)length;
    if (len) {
        memcpy(buf->data + buf->size, data, len);
        buf->size += len;
    }
    return 1;
}

/* A str as its kind and code units: the same text always has the same kind (the narrowest that
 * holds it), and no encoding can fail on it (lone surrogates included). */
static int
put_str(Buffer *buf, PyObject *text)
{
    if (!PyUnicode_CheckExact(text)) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return -1;
    }
#endif
    int kind = PyUnicode_KIND(text);
    return put(buf, (char)('0' + kind), PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text) * kind);
}

static int
put_bytes(Buffer *buf, char tag, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        return 0;
    }
    return put(buf, tag, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
}

/* A header: a tuple of two bytes. Nothing here may run Python code (a subclass's __hash__ or
 * __eq__ could change the headers while they are read), hence the exact types. */
static int
header_parts(PyObject *header, PyObject **name, PyObject **value)
{
    if (!PyTuple_CheckExact(header) || PyTuple_GET_SIZE(header) != 2) {
        return 0;
    }
    *name = PyTuple_GET_ITEM(header, 0);
    *value = PyTuple_GET_ITEM(header, 1);
    return PyBytes_CheckExact(*name) && PyBytes_CheckExact(*value);
}

/* The request's headers whose names are in `wanted`, in their order, each name and value under
 * its own tag, then an end tag; 0 when one is named `refuse` or a header is not a pair of bytes. */
static int
put_headers(Buffer *buf, PyObject *headers, PyObject *wanted, PyObject *refuse)
{
    PyObject *items;
    if (PyTuple_CheckExact(headers)) {
        items = Py_NewRef(headers);
    } else if (PyList_CheckExact(headers)) {
        items = PyList_AsTuple(headers); /* a snapshot: nothing can change it while it is read */
        if (items == NULL) {
            return -1;
        }
    } else {
        return 0;
    }
    int done = 1;
    for (Py_ssize_t i = 0; done == 1 && i < PyTuple_GET_SIZE(items); i++) {
        PyObject *name, *value;
        if (!header_parts(PyTuple_GET_ITEM(items, i), &name, &value)) {
            done = 0;
            break;
        }
        int found = PySet_Contains(wanted, name);
        if (found < 0) {
            done = -1;
            break;
        }
        if (found == 0) {
            continue;
        }
        if (PyBytes_GET_SIZE(name) == PyBytes_GET_SIZE(refuse)
            && memcmp(PyBytes_AS_STRING(name), PyBytes_AS_STRING(refuse), PyBytes_GET_SIZE(name)) == 0) {
            done = 0;
            break;
        }
        done = put(buf, 'n', PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name));
        if (done == 1) {
            done = put(buf, 'v', PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
        }
    }
    Py_DECREF(items);
    return done == 1 ? put(buf, 'e', NULL, 0) : done;
}

PyDoc_STRVAR(key_inputs_doc,
"key_inputs(wanted, refuse, headers, path, query, client, /) -> bytes | None\n\n"
"An encoding of the request values a kept response is made from, in which no two different\n"
"sets of inputs give the same bytes: the request's headers whose names are in `wanted` (a set\n"
"of lowercase bytes), in their order, and the path, query and client. None when a request\n"
"header is named `refuse`, or when an input is not what servers give (str path and client,\n"
"bytes query, a list or tuple of (bytes, bytes) tuples): such a response is made afresh.");

static PyObject *
key_inputs(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "key_inputs() takes 6 positional arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyFrozenSet_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "key_inputs() needs a frozenset of names and a bytes name to refuse");
        return NULL;
    }
    Buffer buf = {.size = 0, .capacity = sizeof buf.stack};
    buf.data = buf.stack;
    int done = put_headers(&buf, args[2], args[0], args[1]);
    if (done == 1) {
        done = put_str(&buf, args[3]);
    }
    if (done == 1) {
        done = put_bytes(&buf, 'q', args[4]);
    }
    if (done == 1) {
        done = put_str(&buf, args[5]);
    }
    PyObject *result = done < 0 ? NULL : done == 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)buf.data, buf.size);
    if (buf.data != buf.stack) {
        PyMem_Free(buf.data);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"skip", (PyCFunction)(void (*)(void))skip, METH_FASTCALL, skip_doc},
    {"ifind", (PyCFunction)(void (*)(void))ifind, METH_FASTCALL, ifind_doc},
    {"key_inputs", (PyCFunction)(void (*)(void))key_inputs, METH_FASTCALL, key_inputs_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "edge_personalize._speedups",
    .m_doc = "Native code for edge_personalize.rewriter and .replay; their pure-Python code is the reference.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module_def);
}
