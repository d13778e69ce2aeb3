/*
 * redact.c: what of a string is a secret, and the Lua functions over it
 * (transcript.secret, transcript.redact, transcript.line_redactor).  See
 * include/runbook/redact.h for the rules.
 *
 * One scanner serves both questions, "is there anything to hide?" and
 * "hide it": it walks the string once, stopping only at the few bytes that
 * can start something secret (= : - _ A x e), and each rule there looks
 * just far enough around to decide.  Without a mask it returns at the
 * first hit, so the common case (nothing to hide) costs one pass and no
 * allocation; with a mask it marks every byte to hide, and the output
 * prints each run of marked bytes as one "***".  Marking instead of
 * replacing means overlapping matches are hidden whole and a "***"
 * already written is never matched again.
 */
#include "runbook/redact.h"
#include "runbook/host.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <lauxlib.h>

#define REDACTOR_MT  "runbook.transcript.redactor"
#define LINES_MT     "runbook.transcript.line_redactor"
#define REDACTOR_KEY "runbook.redactor"    /* registry key of this state's redactor */

#define KEY_MAX 128        /* longest key name looked back over */
#define PART_MAX 32        /* longest word part of a key compared */

/* ---- the secrets of a run -------------------------------------------- */

/*
 * A run may mark tens of thousands of values (each line of a secret file),
 * and every string shown or recorded is searched for all of them: a list
 * would cost one search per secret per string, and one comparison per
 * secret held per add.  They are kept in a trie instead, walked from each
 * position of a text only as far as the text matches some secret, so
 * neither cost grows with their number.
 *
 * The trie steps 4 bytes at a time.  An edge is (node, next 4 bytes) -> the
 * child, in one open-addressing hash table, so a node holds no array of
 * children.  A secret's last len % 4 bytes are a "tail" of its node, in
 * the same table (so are secrets under 4 bytes, tails of the root).  A
 * secret that shares its path with no other past some node hangs there
 * whole as a "leaf" (its copy is compared with memcmp), and an edge may
 * span many steps where no path branches (its bytes are compared in the
 * copy of a secret below it).  So a 1 MB secret costs one entry, and so
 * does the same value without its final newline (both are marked), not
 * 250,000 nodes; nodes exist only where paths part or a secret ends.  The
 * table is also the set that keeps one copy of a value marked twice.
 * Every position of a text asks the root for its 4-byte window: a bitmap
 * over those windows answers "no" for most of them without a probe.
 */

#define TERM 1u                          /* a secret ends at this node */
#define TAIL(r) (1u << (r))              /* one ends r (1..3) bytes past it */
#define TAILS (TAIL(1) | TAIL(2) | TAIL(3))
#define LEAF 0x80000000u                 /* an edge's value: a leaf, not a node */
#define EMPTY UINT64_MAX
#define MAX_NODES ((1u << 30) - 1)       /* a node id takes 30 bits of a key */
#define KEY(node, tag, bytes) (((uint64_t)(node) << 34) | ((uint64_t)(tag) << 32) | (bytes))
#define FILTER_MIN_BITS 16

typedef struct secret {
    char *p;
    size_t len;
} secret;

/* The edge into a node spans the bytes [parent's depth, depth) of the
 * leaf src (and of every secret below). */
typedef struct node {
    size_t depth;
    uint32_t src;
    unsigned char flags;      /* TERM and TAIL */
} node;

struct rb_redactor {
    uint64_t *keys;           /* KEY(node, 0, 4 bytes): an edge; KEY(node, r, r bytes): a tail */
    uint32_t *vals;           /* an edge's child node, or LEAF | index in leaves */
    size_t slots, used;       /* slots is a power of 2, at most half used */
    unsigned shift;           /* 64 - log2(slots) */
    node *nodes;              /* node 0 is the root */
    size_t n_nodes, cap_nodes;
    secret *leaves;
    size_t n_leaves, cap_leaves;
    uint64_t *filter;         /* a bit per hash of each root edge's 4 bytes */
    unsigned filter_bits;
    size_t root_edges;
    size_t count;             /* distinct secrets held */
    size_t longest;           /* the longest secret ever added */
};

static uint32_t load4(const char *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}

static uint32_t load_tail(const char *p, size_t r)
{
    uint32_t x = 0;
    memcpy(&x, p, r);
    return x;
}

static size_t slot_of(const rb_redactor *r, uint64_t key)
{
    size_t mask = r->slots - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> r->shift);

    while (r->keys[i] != key && r->keys[i] != EMPTY)
        i = (i + 1) & mask;
    return i;
}

static const uint32_t *find(const rb_redactor *r, uint64_t key)
{
    size_t i = slot_of(r, key);
    return r->keys[i] == key ? &r->vals[i] : NULL;
}

/* Only after reserve(): never grows the table. */
static void put(rb_redactor *r, uint64_t key, uint32_t val)
{
    size_t i = slot_of(r, key);

    r->keys[i] = key;
    r->vals[i] = val;
    r->used++;
}

static size_t filter_index(const rb_redactor *r, uint32_t bytes)
{
    return (size_t)((uint32_t)(bytes * 0x2545F491u) >> (32 - r->filter_bits));
}

static int filter_has(const rb_redactor *r, uint32_t bytes)
{
    size_t i = filter_index(r, bytes);
    return (int)((r->filter[i / 64] >> (i % 64)) & 1);
}

static void filter_set(rb_redactor *r, uint32_t bytes)
{
    size_t i = filter_index(r, bytes);
    r->filter[i / 64] |= 1ull << (i % 64);
}

/* Rebuilt from the table with 16 bits or more per root edge, so it stays
 * sparse.  A failed allocation keeps the old one: still right, only
 * fuller. */
static void filter_grow(rb_redactor *r)
{
    unsigned bits = r->filter_bits ? r->filter_bits : FILTER_MIN_BITS;

    while (bits < 32 && ((size_t)1 << bits) < 16 * r->root_edges)
        bits++;
    if (bits == r->filter_bits)
        return;
    uint64_t *f = calloc(((size_t)1 << bits) / 64, sizeof *f);
    if (!f)
        return;
    free(r->filter);
    r->filter = f;
    r->filter_bits = bits;
    for (size_t i = 0; i < r->slots; i++)
        if (r->keys[i] != EMPTY && (r->keys[i] >> 32) == 0)
            filter_set(r, (uint32_t)r->keys[i]);
}

static int table_grow(rb_redactor *r)
{
    size_t slots = r->slots ? 2 * r->slots : 64, old = r->slots;
    uint64_t *keys = malloc(slots * sizeof *keys), *ok = r->keys;
    uint32_t *vals = malloc(slots * sizeof *vals), *ov = r->vals;

    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, slots * sizeof *keys);
    r->keys = keys;
    r->vals = vals;
    r->slots = slots;
    r->used = 0;
    for (r->shift = 64; slots > 1; slots /= 2)
        r->shift--;
    for (size_t i = 0; i < old; i++)
        if (ok[i] != EMPTY)
            put(r, ok[i], ov[i]);
    free(ok);
    free(ov);
    return 0;
}

static int grow_array(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? 2 * *cap : 16;
    void *q = realloc(*p, cap2 * size);
    if (!q)
        return -1;
    *p = q;
    *cap = cap2;
    return 0;
}

/* Room for one step of an add (two entries, a node, a leaf), taken before
 * anything changes: an add that fails leaves every secret findable. */
static int reserve(rb_redactor *r)
{
    if ((r->used + 2) * 2 > r->slots && table_grow(r) != 0)
        return -1;
    if (r->n_nodes >= MAX_NODES || r->n_leaves >= LEAF)
        return -1;
    if (grow_array((void **)&r->nodes, &r->cap_nodes, r->n_nodes + 1, sizeof(node)) != 0)
        return -1;
    return grow_array((void **)&r->leaves, &r->cap_leaves, r->n_leaves + 1, sizeof(secret));
}

rb_redactor *rb_redactor_new(void)
{
    rb_redactor *r = calloc(1, sizeof(rb_redactor));

    if (r && (reserve(r) != 0 || !(r->filter = calloc(((size_t)1 << FILTER_MIN_BITS) / 64, 8)))) {
        rb_redactor_free(r);
        return NULL;
    }
    if (r) {
        r->filter_bits = FILTER_MIN_BITS;
        r->nodes[r->n_nodes++] = (node){ 0, 0, 0 };     /* the root */
    }
    return r;
}

void rb_redactor_free(rb_redactor *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_leaves; i++)
        free(r->leaves[i].p);
    free(r->leaves);
    free(r->nodes);
    free(r->keys);
    free(r->vals);
    free(r->filter);
    free(r);
}

/* A secret that ends rest (0..3) bytes past node n, at p. */
static int end_at(rb_redactor *r, uint32_t n, const char *p, size_t rest)
{
    if (rest == 0) {
        if (r->nodes[n].flags & TERM)
            return 0;
        r->nodes[n].flags |= TERM;
    } else {
        uint64_t key = KEY(n, rest, load_tail(p, rest));
        if (find(r, key))
            return 0;
        put(r, key, 0);
        r->nodes[n].flags |= TAIL(rest);
    }
    r->count++;
    return 0;
}

/* A new leaf for value under the edge key, which is absent. */
static int hang_leaf(rb_redactor *r, uint64_t key, const char *value, size_t len)
{
    char *copy = malloc(len);

    if (!copy)
        return -1;
    memcpy(copy, value, len);
    r->leaves[r->n_leaves] = (secret){ copy, len };
    put(r, key, LEAF | (uint32_t)r->n_leaves++);
    r->count++;
    if ((key >> 32) == 0) {
        r->root_edges++;
        filter_set(r, (uint32_t)key);
        filter_grow(r);
    }
    return 0;
}

/* Where a and b (alen, blen long) first differ, from from on. */
static size_t common(const char *a, size_t alen, const char *b, size_t blen, size_t from)
{
    size_t n = alen < blen ? alen : blen, i = from;

    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* A new node at depth d on the edge at slot i, above what the edge led
 * to (child: a leaf or a node); the leaf src spans the new edge's bytes. */
static uint32_t split(rb_redactor *r, size_t i, uint32_t child, uint32_t src, size_t d)
{
    uint32_t m = (uint32_t)r->n_nodes++;
    const secret *a = &r->leaves[src];
    size_t rest = a->len - d;

    r->nodes[m] = (node){ d, src, 0 };
    r->vals[i] = m;
    if (!(child & LEAF) || rest >= 4)
        put(r, KEY(m, 0, load4(a->p + d)), child);
    else if (rest == 0)
        r->nodes[m].flags |= TERM;
    else {
        put(r, KEY(m, rest, load_tail(a->p + d, rest)), 0);
        r->nodes[m].flags |= TAIL(rest);
    }
    return m;
}

/* One step of an add below node n for value (len bytes), whose edge at
 * slot i exists: the node to go on from, after splitting the edge where
 * value leaves it, or UINT32_MAX when value is already held.  Both go on
 * below the last 4-byte step they share whole. */
static uint32_t descend(rb_redactor *r, size_t i, uint32_t n, const char *value, size_t len)
{
    uint32_t v = r->vals[i];
    size_t d = r->nodes[n].depth;

    if (v & LEAF) {
        const secret *a = &r->leaves[v & ~LEAF];
        if (a->len == len && memcmp(a->p, value, len) == 0)
            return UINT32_MAX;
        return split(r, i, v, v & ~LEAF, common(a->p, a->len, value, len, d + 4) & ~(size_t)3);
    }
    const node *m = &r->nodes[v];
    size_t c = common(r->leaves[m->src].p, m->depth, value, len, d + 4);
    if (c == m->depth)
        return v;
    return split(r, i, v, m->src, c & ~(size_t)3);
}

int rb_redactor_add(rb_redactor *r, const char *value, size_t len)
{
    uint32_t n = 0;

    if (len == 0)
        return 0;
    if (len > r->longest)
        r->longest = len;       /* an over-estimate if the add fails: harmless */
    for (;;) {
        size_t d = r->nodes[n].depth;
        if (reserve(r) != 0)
            return -1;
        if (len - d < 4)
            return end_at(r, n, value + d, len - d);
        uint64_t key = KEY(n, 0, load4(value + d));
        size_t i = slot_of(r, key);
        if (r->keys[i] == EMPTY)
            return hang_leaf(r, key, value, len);
        if ((n = descend(r, i, n, value, len)) == UINT32_MAX)
            return 0;
    }
}

size_t rb_redactor_longest(const rb_redactor *r)
{
    return r ? r->longest : 0;
}

/* The length of the longest secret s[0..len) starts with, 0 when none: a
 * longer secret wins over one that is its prefix, so it is hidden whole. */
static size_t longest_at(const rb_redactor *r, const char *s, size_t len)
{
    size_t best = 0, d = 0;
    uint32_t n = 0;

    for (;;) {
        unsigned f = r->nodes[n].flags;
        size_t rest = len - d;
        if (f & TERM)
            best = d;
        for (size_t t = rest < 3 ? rest : 3; t > 0 && (f & TAILS); t--)
            if ((f & TAIL(t)) && find(r, KEY(n, t, load_tail(s + d, t)))) {
                best = d + t;
                break;
            }
        if (rest < 4)
            return best;
        uint32_t c = load4(s + d);
        const uint32_t *v = n == 0 && !filter_has(r, c) ? NULL : find(r, KEY(n, 0, c));
        if (!v)
            return best;
        if (*v & LEAF) {
            const secret *a = &r->leaves[*v & ~LEAF];
            return a->len <= len && memcmp(s + d + 4, a->p + d + 4, a->len - d - 4) == 0 ? a->len : best;
        }
        const node *m = &r->nodes[*v];
        if (m->depth > len || memcmp(s + d + 4, r->leaves[m->src].p + d + 4, m->depth - d - 4) != 0)
            return best;
        n = *v;
        d = m->depth;
    }
}

/* The first position from i on where a secret may start: the root's
 * filter says no for most, without a probe (every position when the root
 * has tails: secrets under 4 bytes are rare).  len when none. */
static size_t next_start(const rb_redactor *r, const char *s, size_t len, size_t i)
{
    const uint64_t *f = r->filter;
    unsigned shift = 32 - r->filter_bits;

    if (r->nodes[0].flags & TAILS)
        return i;
    for (; i + 4 <= len; i++) {
        uint32_t h = (uint32_t)(load4(s + i) * 0x2545F491u) >> shift;
        if ((f[h / 64] >> (h % 64)) & 1)
            return i;
    }
    return len;
}

/* ---- character classes ------------------------------------------------ */

/* ASCII only, and no locale: a byte of UTF-8 text is never a letter here. */
static int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_blank(unsigned char c) { return c == ' ' || c == '\t'; }
/* NUL too: /proc/PID/environ separates its K=V entries with it. */
static int is_eol(unsigned char c) { return c == '\n' || c == '\r' || c == '\0'; }
static int is_b64url(unsigned char c) { return is_alnum(c) || c == '_' || c == '-'; }
static int is_key_char(unsigned char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; }

/* What may stand before a bare key ("@name=" or "a/b.c:" is no key), the
 * marks a YAML, curl -v or config line, or a line of output shown behind
 * runbook's "    | ", may start with, and what ends a word and a command
 * of a shell command line: tables, as these are asked at every '=' and
 * ':' and at every byte walked back over a command line. */
#define BOUNDARY 1
#define LINE_MARK 2
#define WORD_END 4
#define COMMAND_END 8
#define B BOUNDARY
#define W WORD_END
#define C (WORD_END | COMMAND_END)
static const unsigned char char_class[256] = {
    [' '] = B | W, ['\t'] = B | W, ['\n'] = B | C, ['\r'] = B | C, ['\f'] = B,
    ['\v'] = B, ['\0'] = B | C, ['"'] = B | W, ['\''] = B | W, ['?'] = B,
    ['&'] = B | C, [';'] = B | C, [','] = B, ['('] = B | C, [')'] = C, ['{'] = B,
    ['['] = B, ['|'] = B | LINE_MARK | C, ['$'] = B, ['`'] = B | C,
    ['<'] = B | LINE_MARK, ['>'] = B | LINE_MARK, ['*'] = B | LINE_MARK,
    ['+'] = B | LINE_MARK, ['#'] = B | LINE_MARK, ['-'] = LINE_MARK,
};
#undef B
#undef W
#undef C
/* strchr finds the terminator too: a NUL byte of the text is in no set. */
static int in_set(unsigned char c, const char *set) { return c != '\0' && strchr(set, c) != NULL; }
static char lower(unsigned char c) { return (char)(is_upper(c) ? c | 0x20 : c); }

/* ---- key names -------------------------------------------------------- */

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* One lower-case word part of a key (DB_PASSWORD -> "db", "password";
 * apiKey -> "api", "key") says it holds a secret, given the part before. */
static int part_is_secret(const char *p, size_t n, const char *prev)
{
    static const char *const inside[] = { "password", "passwd", "passphrase", "secret",
        "credential", "cookie", "signature", "apikey", "privatekey", "accesskey",
        "sessionkey", "signingkey", "masterkey", "encryptionkey", "dockerconfigjson", "dockercfg", NULL };
    static const char *const whole[] = { "pass", "auth", "authorization", NULL };
    static const char *const key_after[] = { "api", "private", "access", "session",
        "secret", "signing", "master", "encryption", "client", "auth", "tls", NULL };

    for (const char *const *w = inside; *w; w++)
        if (strstr(p, *w))
            return 1;
    return in_list(p, whole) || ends_with(p, n, "token") ||
           (strcmp(p, "key") == 0 && in_list(prev, key_after));
}

/* A last part that says the value is about the secret, not the secret:
 * PASSWORD_FILE=/run/secrets/db, SECRET_NAME, TOKEN_URL, TOKEN_TTL. */
static int part_is_about(const char *p)
{
    static const char *const about[] = { "file", "path", "dir", "stdin", "name", "url", "uri",
        "length", "len", "min", "max", "ttl", "timeout", "type", "expiry", "expires",
        "count", "size", "env", "policy", "rotation", "provider", "store", NULL };
    return in_list(p, about);
}

/* The next word part of name from *i: a run of letters and digits, split
 * before an upper-case letter that follows a lower-case one (camelCase). */
static size_t next_part(const char *name, size_t len, size_t *i, char *part)
{
    size_t n = 0;

    while (*i < len && !is_alnum((unsigned char)name[*i]))
        (*i)++;
    while (*i < len && is_alnum((unsigned char)name[*i])) {
        unsigned char c = (unsigned char)name[*i];
        if (n > 0 && is_upper(c) && !is_upper((unsigned char)name[*i - 1]) &&
            !is_digit((unsigned char)name[*i - 1]))
            break;
        if (n < PART_MAX - 1)
            part[n++] = lower(c);
        (*i)++;
    }
    part[n] = '\0';
    return n;
}

/* Every secret word above holds one of these three-letter stems: most
 * names (status, request_id, PORT) hold none, and this look costs one
 * pass with no splitting into parts.  Each three bytes are compared as one
 * number, lower-cased by setting 0x20 (which makes a letter of no other
 * byte, and every stem is letters). */
#define STEM(a, b, c) ((uint32_t)(a) << 16 | (uint32_t)(b) << 8 | (uint32_t)(c))
static int has_secret_stem(const char *name, size_t len)
{
    /* the stems' first letters, either case: most bytes of a name skip the switch */
    static const unsigned char FIRST[256] = {
        ['p'] = 1, ['s'] = 1, ['c'] = 1, ['k'] = 1, ['a'] = 1, ['t'] = 1, ['d'] = 1,
        ['P'] = 1, ['S'] = 1, ['C'] = 1, ['K'] = 1, ['A'] = 1, ['T'] = 1, ['D'] = 1,
    };
    const unsigned char *u = (const unsigned char *)name;
    for (size_t i = 0; i + 3 <= len; i++) {
        if (!FIRST[u[i]])
            continue;
        switch (STEM(u[i] | 0x20, u[i + 1] | 0x20, u[i + 2] | 0x20)) {
        case STEM('p', 'a', 's'): case STEM('s', 'e', 'c'): case STEM('c', 'r', 'e'):
        case STEM('c', 'o', 'o'): case STEM('s', 'i', 'g'): case STEM('k', 'e', 'y'):
        case STEM('a', 'u', 't'): case STEM('t', 'o', 'k'): case STEM('d', 'o', 'c'):
            return 1;
        default:
            break;
        }
    }
    return 0;
}
#undef STEM

int rb_redact_secret_name(const char *name, size_t len)
{
    char part[PART_MAX], prev[PART_MAX] = "";
    size_t i = 0, n;
    int secret = 0, about = 0;

    if (len > KEY_MAX || !has_secret_stem(name, len))
        return 0;
    while ((n = next_part(name, len, &i, part)) > 0) {
        if (part_is_secret(part, n, prev))
            secret = 1;
        about = part_is_about(part);
        memcpy(prev, part, n + 1);
    }
    return secret && !about;
}

/* Query parameters also hide these short names (?key=..., &sig=...). */
static int is_query_secret(const char *name, size_t len)
{
    static const char *const names[] = { "key", "sig", "code", "apikey", NULL };
    char low[8];

    if (len < sizeof low) {
        for (size_t i = 0; i < len; i++)
            low[i] = lower((unsigned char)name[i]);
        low[len] = '\0';
        if (in_list(low, names))
            return 1;
    }
    return rb_redact_secret_name(name, len);
}

int rb_redact_secret_flag(const char *s, size_t len)
{
    if (len < 3 || s[0] != '-' || s[1] != '-' || !is_alpha((unsigned char)s[2]))
        return 0;
    for (size_t i = 2; i < len; i++)
        if (!is_key_char((unsigned char)s[i]))
            return 0;
    return rb_redact_secret_name(s + 2, len - 2);
}

/* ---- the scanner ------------------------------------------------------ */

typedef struct scan {
    const char *s;
    size_t len;
    unsigned char *mask;   /* NULL: only say whether anything would be hidden */
    int hit;
} scan;

static void hide(scan *sc, size_t from, size_t to)
{
    if (to <= from)
        return;
    sc->hit = 1;
    if (sc->mask)
        memset(sc->mask + from, 1, to - from);
}

/* How a bare value ends, from what surrounds its key. */
typedef enum vend {
    V_WORD,      /* password=x in a sentence, a conninfo, a query: at a blank or & ; */
    V_EOL,       /* K=V or k: v at the start of a line: at the end of the line */
    V_DQ,        /* "K=V" as a JSON string: at the closing quote */
    V_ESC,       /* \"K=V\" inside an outer JSON string: at the backslash */
    V_SQ,        /* 'K=V': at the closing quote */
    V_JSON,      /* "k": v: a JSON number or word */
    V_JSONESC    /* \"k\": v */
} vend;

static int ends_value(vend how, unsigned char c)
{
    switch (how) {
    case V_WORD:
        return is_space(c) || is_eol(c) || in_set(c, "&;\"'\\<>");
    case V_EOL:
        return is_eol(c);
    case V_DQ:
        return is_eol(c) || c == '"';
    case V_ESC:
        return is_eol(c) || c == '\\' || c == '"';
    case V_SQ:
        return is_eol(c) || c == '\'';
    case V_JSON:
        return is_space(c) || c == ',' || c == '}' || c == ']' || c == '"';
    case V_JSONESC:
        return is_space(c) || c == ',' || c == '}' || c == ']' || c == '"' || c == '\\';
    }
    return 1;
}

/* The end of a JSON string whose contents start at q: the closing quote. */
static size_t json_string_end(const char *s, size_t len, size_t q)
{
    while (q < len && s[q] != '"' && !is_eol((unsigned char)s[q]))
        q += s[q] == '\\' ? 2 : 1;
    return q < len ? q : len;
}

/* The end of a JSON string nested in another one (\"...\") whose contents
 * start at q: the outer text's \" that is not itself escaped in the inner
 * string (an inner escaped quote is \\\" outside).  A raw quote ends the
 * outer string and so this one too. */
static size_t nested_string_end(const char *s, size_t len, size_t q)
{
    int inner_escape = 0;

    while (q < len && s[q] != '"' && !is_eol((unsigned char)s[q])) {
        if (s[q] == '\\' && q + 1 < len) {
            if (s[q + 1] == '"' && !inner_escape)
                return q;
            inner_escape = s[q + 1] == '\\' ? !inner_escape : 0;
            q += 2;
        } else {
            inner_escape = 0;
            q++;
        }
    }
    return q;
}

/* Hide the value that starts at p; return where scanning goes on. */
static size_t hide_value(scan *sc, size_t p, vend how)
{
    const char *s = sc->s;
    size_t len = sc->len, e;

    if (p >= len)
        return p;
    if (s[p] == '"') {
        e = json_string_end(s, len, p + 1);
        hide(sc, p + 1, e);
        return e;
    }
    if (s[p] == '\\' && p + 1 < len && s[p + 1] == '"') {
        e = nested_string_end(s, len, p + 2);
        hide(sc, p + 2, e);
        return e;
    }
    if (s[p] == '\'') {
        /* a JavaScript 'it\'s' runs on past its escaped quote */
        for (e = p + 1; e < len && s[e] != '\'' && !is_eol((unsigned char)s[e]); e++)
            if (s[e] == '\\' && e + 1 < len && !is_eol((unsigned char)s[e + 1]))
                e++;
        hide(sc, p + 1, e);
        return e;
    }
    if (s[p] == '{' || s[p] == '[')
        return p;
    for (e = p; e < len && !ends_value(how, (unsigned char)s[e]); e++)
        ;
    size_t end = e;
    while (end > p && is_blank((unsigned char)s[end - 1]))
        end--;
    /* JSON's own words are not secrets: "password_set": true */
    if ((how == V_JSON || how == V_JSONESC) &&
        ((end - p == 4 && (!memcmp(s + p, "true", 4) || !memcmp(s + p, "null", 4))) ||
         (end - p == 5 && !memcmp(s + p, "false", 5))))
        return e;
    hide(sc, p, end);
    return e;
}

/* Whether only blanks, and maybe "export" or a list or quote mark ("- "
 * in YAML, "< " in curl -v, "# " in a config, "| " before a line of shown
 * output), stand between the start of the line and position k. */
static int at_line_start(const char *s, size_t k)
{
    while (k > 0 && is_blank((unsigned char)s[k - 1]))
        k--;
    if (k >= 6 && memcmp(s + k - 6, "export", 6) == 0 && (k == 6 || !is_key_char((unsigned char)s[k - 7])))
        k -= 6;
    else if (k >= 1 && (char_class[(unsigned char)s[k - 1]] & LINE_MARK))
        k--;
    while (k > 0 && is_blank((unsigned char)s[k - 1]))
        k--;
    return k == 0 || is_eol((unsigned char)s[k - 1]);
}

static int key_boundary(unsigned char c)
{
    return char_class[c] & BOUNDARY;
}

/* A key that ends just before position j.  Sets *ks, *ke to the name and
 * returns how its value ends (V_WORD: a bare key inside a line), or -1
 * when there is no key there. */
static int find_key(const char *s, size_t j, size_t *ks, size_t *ke)
{
    size_t k;

    if (j >= 2 && (s[j - 1] == '"' || s[j - 1] == '\'')) {
        char q = s[j - 1];
        int esc = q == '"' && s[j - 2] == '\\';
        size_t stop = j > KEY_MAX ? j - KEY_MAX : 0, close = esc ? j - 2 : j - 1;
        for (k = close; k > stop && s[k - 1] != q && !is_eol((unsigned char)s[k - 1]); k--)
            ;
        if (k == stop || s[k - 1] != q || (esc && (k < 2 || s[k - 2] != '\\')))
            return -1;
        *ks = k;
        *ke = close;
        return esc ? V_JSONESC : V_JSON;
    }
    for (k = j; k > 0 && j - k < KEY_MAX && is_key_char((unsigned char)s[k - 1]); k--)
        ;
    if (k == j || (k > 0 && !key_boundary((unsigned char)s[k - 1])))
        return -1;
    *ks = k;
    *ke = j;
    if (k > 0 && s[k - 1] == '"')
        return k > 1 && s[k - 2] == '\\' ? V_ESC : V_DQ;
    if (k > 0 && s[k - 1] == '\'')
        return V_SQ;
    return at_line_start(s, k) ? V_EOL : V_WORD;
}

/* K=V, export K=V, "K=V", --password=V, ?token=V, and (a TOML or INI
 * line) key = V. */
static size_t at_equals(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t j = i, ks, ke, p = i + 1;
    int spaced = 0, how;

    if (p < sc->len && s[p] == '=')
        return i + 2;                               /* ==, a comparison */
    while (j > 0 && is_blank((unsigned char)s[j - 1]))
        j--, spaced = 1;
    if (j > 0 && (s[j - 1] == '=' || s[j - 1] == '!' || s[j - 1] == '<' || s[j - 1] == '>'))
        return i + 1;
    if ((how = find_key(s, j, &ks, &ke)) < 0)
        return i + 1;
    if (how == V_JSON || how == V_JSONESC)          /* "k" = v is no JSON */
        return i + 1;
    int query = ks > 0 && (s[ks - 1] == '?' || s[ks - 1] == '&');
    if (!(query ? is_query_secret(s + ks, ke - ks) : rb_redact_secret_name(s + ks, ke - ks)))
        return i + 1;
    while (p < sc->len && is_blank((unsigned char)s[p]))
        p++, spaced = 1;
    /* spaced out in running text ({ token = "x" }, a printed table) only
     * a K=V line of a config file counts */
    if (spaced && how != V_EOL)
        return i + 1;
    return hide_value(sc, p, how);
}

/* scheme://user:password@host: hide the password, which ends at the last
 * '@' before the host, so a raw '@' in it is hidden too. */
static size_t at_url(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t a = i + 3, e, at = 0, colon = 0;

    for (e = a; e < sc->len; e++) {
        unsigned char c = (unsigned char)s[e];
        if (is_space(c) || c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' ||
            c == '\\' || c == '<' || c == '>')
            break;
        if (c == '@')
            at = e;
        else if (c == ':' && !colon && !at)
            colon = e;
    }
    if (at && colon && colon < at)
        hide(sc, colon + 1, at);
    return at ? at + 1 : a;
}

/* Whether a quoted string starts at p: ', " or the \" of a nested one. */
static int quote_at(const char *s, size_t len, size_t p)
{
    return p < len && (s[p] == '\'' || s[p] == '"' || (s[p] == '\\' && p + 1 < len && s[p + 1] == '"'));
}

/* "k": "v", \"k\": \"v\", k: v (YAML, headers), k: 'v' anywhere in a
 * line (a JavaScript object: { password: 'x' }), and URLs. */
static size_t at_colon(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t ks, ke, p = i + 1, v = i + 1;
    int how, quoted;

    if (i + 2 < sc->len && s[i + 1] == '/' && s[i + 2] == '/' && i > 0 &&
        (is_alnum((unsigned char)s[i - 1]) || s[i - 1] == '+' || s[i - 1] == '.' || s[i - 1] == '-'))
        return at_url(sc, i);
    size_t j = i;
    while (j > 0 && is_blank((unsigned char)s[j - 1]))
        j--;
    /* 20:00:00, host:5432: no blank or quote after the colon and no quote
     * before it, so none of the cases below; known before the walk back
     * over a key that find_key would make */
    if (p < sc->len && !is_blank((unsigned char)s[p]) && !quote_at(s, sc->len, p) &&
        j > 0 && s[j - 1] != '"' && s[j - 1] != '\'')
        return i + 1;
    if ((how = find_key(s, j, &ks, &ke)) < 0)
        return i + 1;
    while (v < sc->len && is_blank((unsigned char)s[v]))
        v++;
    quoted = quote_at(s, sc->len, v);
    /* k: v in running text is prose ("requires a password: put it ..."),
     * not a YAML or header line; k: 'v' there is a value */
    if (how == V_WORD && !quoted)
        return i + 1;
    /* A bare key needs a blank after its colon (YAML, headers): not 12:30, db:5432 */
    if (!quoted && how != V_JSON && how != V_JSONESC && (p >= sc->len || !is_blank((unsigned char)s[p])))
        return i + 1;
    if (!rb_redact_secret_name(s + ks, ke - ks))
        return i + 1;
    return hide_value(sc, v, how);
}

/* Past the line break(s) at b: real ones, or the two characters \n of a
 * JSON text. */
static const char *skip_breaks(const char *b, const char *end)
{
    while (b < end) {
        if (is_eol((unsigned char)*b))
            b++;
        else if (*b == '\\' && b + 1 < end && (b[1] == 'n' || b[1] == 'r'))
            b += 2;
        else
            break;
    }
    return b;
}

/* Back over the line break(s) that end just before e, down to b. */
static const char *back_breaks(const char *b, const char *e)
{
    while (e > b) {
        if (is_eol((unsigned char)e[-1]))
            e--;
        else if (e - b >= 2 && e[-2] == '\\' && (e[-1] == 'n' || e[-1] == 'r'))
            e -= 2;
        else
            break;
    }
    return e;
}

/* -----BEGIN ... PRIVATE KEY-----: hide the body up to the END line (or
 * the end of the text); the markers stay. */
static size_t at_pem(scan *sc, size_t i)
{
    static const char label[] = "PRIVATE KEY";
    const size_t llen = sizeof label - 1, blen = 11;    /* "-----BEGIN " */
    const char *s = sc->s, *end = s + sc->len;
    size_t limit = sc->len - i < 80 ? sc->len - i : 80;
    const char *m = memmem(s + i + blen, limit - blen, "-----", 5);

    if (!m || m < s + i + blen + llen || memcmp(m - llen, label, llen) != 0)
        return i + 1;
    const char *b = skip_breaks(m + 5, end);
    size_t rest = b < end ? (size_t)(end - b) : 0;
    const char *e = rest ? memmem(b, rest, "-----END", 8) : NULL;
    if (!e)
        e = end;
    hide(sc, (size_t)(b - s), (size_t)(back_breaks(b, e) - s));
    return (size_t)(e - s) + (e < end ? 8 : 0);
}

/* ---- command lines ---------------------------------------------------- */

/* Some tools take a secret after a one-letter flag whose letter means
 * something else elsewhere (-p is a port to psql and ssh, -a is grep's
 * binary switch, -u a user to sudo).  A flag belongs to the nearest
 * command named before it in its command line; these are the names looked
 * for, the ones that only stop the search included. */
typedef enum command {
    CMD_NONE, CMD_REDIS, CMD_MYSQL, CMD_CURL, CMD_SSHPASS, CMD_OTHER
} command;

/* The last lookup of a scan: a later one in the same command line only
 * walks back to it, so a line full of flags is still read once. */
typedef struct command_cache {
    size_t at;      /* 1 + where the last lookup started; 0: none yet */
    command found;
} command_cache;

/* w[0..n) is a program's base name. */
static command command_named(const char *w, size_t n)
{
#define NAME(s, c) { s, sizeof s - 1, c }
    static const struct { const char *name; size_t len; command c; } names[] = {
        NAME("redis-cli", CMD_REDIS), NAME("mysql", CMD_MYSQL), NAME("mysqldump", CMD_MYSQL),
        NAME("mysqladmin", CMD_MYSQL), NAME("mariadb", CMD_MYSQL), NAME("mariadb-dump", CMD_MYSQL),
        NAME("curl", CMD_CURL), NAME("sshpass", CMD_SSHPASS), NAME("ssh", CMD_OTHER),
        NAME("scp", CMD_OTHER), NAME("sftp", CMD_OTHER), NAME("rsync", CMD_OTHER),
        NAME("psql", CMD_OTHER), NAME("pg_dump", CMD_OTHER), NAME("pg_restore", CMD_OTHER),
        NAME("sudo", CMD_OTHER), NAME("su", CMD_OTHER), NAME("docker", CMD_OTHER),
    };
#undef NAME

    /* most words of a command line are no program named here */
    if (n < 2 || n > 12 || (w[0] != 'c' && w[0] != 'd' && w[0] != 'm' && w[0] != 'p' && w[0] != 'r' && w[0] != 's'))
        return CMD_NONE;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (names[k].len == n && names[k].name[0] == w[0] && memcmp(names[k].name, w, n) == 0)
            return names[k].c;
    return CMD_NONE;
}

/* An argv's element arg[0..an) of program prog (its path or name): what
 * of it or of the next element is a secret, for the encoder, which sees
 * an argv as separate strings (the scanner sees a shown command line). */
rb_argv_secret rb_redact_argv(const char *prog, size_t pn, const char *arg, size_t an)
{
    size_t base = pn;
    while (base > 0 && prog[base - 1] != '/')
        base--;
    command c = command_named(prog + base, pn - base);
    int dash_p = an >= 2 && arg[0] == '-' && arg[1] == 'p';
    size_t ab = an;
    while (ab > 0 && arg[ab - 1] != '/')
        ab--;
    if (arg != prog && command_named(arg + ab, an - ab) != CMD_NONE)
        return RB_ARGV_PROGRAM;
    if (c == CMD_REDIS && an == 2 && memcmp(arg, "-a", 2) == 0)
        return RB_ARGV_NEXT;
    if (c == CMD_SSHPASS && dash_p)
        return an == 2 ? RB_ARGV_NEXT : RB_ARGV_AFTER_FLAG;
    if (c == CMD_MYSQL && dash_p && an > 2)
        return RB_ARGV_AFTER_FLAG;                      /* -pPW; -p alone prompts */
    if (c == CMD_CURL && ((an == 2 && (memcmp(arg, "-u", 2) == 0 || memcmp(arg, "-U", 2) == 0)) ||
                          (an == 6 && memcmp(arg, "--user", 6) == 0) ||
                          (an == 12 && memcmp(arg, "--proxy-user", 12) == 0)))
        return RB_ARGV_NEXT_PASSWORD;
    return RB_ARGV_NONE;
}

static int ends_command(unsigned char c) { return char_class[c] & COMMAND_END; }
static int ends_word(unsigned char c) { return char_class[c] & WORD_END; }

/* The word that ends at e, or before it past blanks and quotes: its start
 * in *start and the program it names in *named.  0 when a command starts
 * there instead (the line's start, a pipe, a ;). */
static int word_before(const char *s, size_t e, size_t *start, command *named)
{
    size_t k = e, base;

    while (k > 0 && ends_word((unsigned char)s[k - 1]) && !ends_command((unsigned char)s[k - 1]))
        k--;
    if (k == 0 || ends_command((unsigned char)s[k - 1]))
        return 0;
    for (e = base = k; k > 0 && !ends_word((unsigned char)s[k - 1]); k--)
        if (base == e && s[k - 1] == '/')
            base = k;                                   /* /usr/bin/mysql: mysql */
    if (base == e)
        base = k;
    *start = k;
    *named = command_named(s + base, e - base);
    return 1;
}

/* The command the flag at i belongs to: the nearest known name before it,
 * word by word, back to the start of its line or of its part of a
 * pipeline or list. */
static command command_of(scan *sc, command_cache *cache, size_t i)
{
    size_t k = i;
    command found = CMD_NONE, named;

    while (word_before(sc->s, k, &k, &named)) {
        if (cache->at && k < cache->at) {
            found = cache->found;
            break;
        }
        if ((found = named) != CMD_NONE)
            break;
    }
    cache->at = i + 1;
    cache->found = found;
    return found;
}

/* curl's user:password at p, maybe quoted: where the password starts (0:
 * no colon, nothing to hide) and, in *end, where it ends. */
static size_t userpass_at(const char *s, size_t len, size_t p, size_t *end)
{
    char q = p < len && (s[p] == '"' || s[p] == '\'') ? s[p] : 0;
    size_t a = q ? p + 1 : p, e;

    for (e = a; e < len && !is_eol((unsigned char)s[e]) &&
                (q ? s[e] != q : !is_space((unsigned char)s[e]) && s[e] != '"' && s[e] != '\''); e++)
        ;
    *end = e;
    const char *c = e > a ? memchr(s + a, ':', e - a) : NULL;
    return c ? (size_t)(c - s) + 1 : 0;
}

/* Whether the word before position i is sshpass (or /usr/bin/sshpass):
 * looked at in place, as -p apart is common and mostly a port. */
static int after_sshpass(const char *s, size_t i)
{
    size_t k = i;

    while (k > 0 && is_blank((unsigned char)s[k - 1]))
        k--;
    if (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\''))
        k--;
    return k >= 7 && memcmp(s + k - 7, "sshpass", 7) == 0 &&
           (k == 7 || s[k - 8] == '/' || ends_word((unsigned char)s[k - 8]));
}

/* redis-cli -a PW, mysql -pPW (glued: mysql -p DB prompts and uses DB),
 * sshpass -pPW and sshpass -p PW (the -p right after sshpass: -p apart is
 * a port to most tools), curl -u user:PW and -U (its proxy's).  The
 * cheap tests come first: most such flags are no secret's. */
static size_t at_short_flag(scan *sc, command_cache *cache, size_t i)
{
    const char *s = sc->s;
    size_t len = sc->len, g = i + 2, w = g, v, end, pw;
    unsigned char f = (unsigned char)s[i + 1];
    command c;

    if ((i > 0 && !is_space((unsigned char)s[i - 1]) && s[i - 1] != '"' && s[i - 1] != '\'') ||
        (f != 'a' && f != 'p' && f != 'u' && f != 'U'))
        return i + 1;
    if (w < len && i > 0 && (s[i - 1] == '"' || s[i - 1] == '\'') && s[w] == s[i - 1])
        w++;                                            /* "-a" "PW": the flag's closing quote */
    int glued = w == g && g < len && !is_space((unsigned char)s[g]) && !is_eol((unsigned char)s[g]);
    for (v = w; v < len && is_blank((unsigned char)s[v]); v++)
        ;
    int apart = !glued && v > w && v < len && s[v] != '-' && !is_eol((unsigned char)s[v]);
    if (!glued && !apart)
        return g;
    switch (f) {
    case 'a':
        if (apart && command_of(sc, cache, i) == CMD_REDIS)
            return hide_value(sc, v, V_WORD);
        break;
    case 'p':
        if (apart ? after_sshpass(s, i) : (c = command_of(sc, cache, i)) == CMD_MYSQL || c == CMD_SSHPASS)
            return hide_value(sc, apart ? v : g, V_WORD);
        break;
    default:
        if ((pw = userpass_at(s, len, glued ? g : v, &end)) && command_of(sc, cache, i) == CMD_CURL) {
            hide(sc, pw, end);
            return end;
        }
    }
    return g;
}

/* curl --user user:PW, --user=user:PW and --proxy-user, the flag at
 * [i, e): where the hidden password ends, or 0 when there is none. */
static size_t curl_user_flag(scan *sc, command_cache *cache, size_t i, size_t e)
{
    const char *s = sc->s;
    size_t len = sc->len, v = e + 1, end, pw;

    if (e + 1 >= len || (s[e] != '=' && !is_blank((unsigned char)s[e])))
        return 0;
    while (v < len && is_blank((unsigned char)s[v]))
        v++;
    if (!(pw = userpass_at(s, len, v, &end)) || command_of(sc, cache, i) != CMD_CURL)
        return 0;
    hide(sc, pw, end);
    return end;
}

/* --password VALUE (the space form: --password=VALUE is a K=V), and
 * curl's --user user:PW and --proxy-user. */
static size_t at_dash(scan *sc, command_cache *cache, size_t i)
{
    const char *s = sc->s;
    size_t len = sc->len, e;

    if (i + 1 >= len)
        return i + 1;
    if (s[i + 1] != '-')
        return at_short_flag(sc, cache, i);
    if (len - i >= 11 && memcmp(s + i, "-----BEGIN ", 11) == 0)
        return at_pem(sc, i);
    if (i + 2 >= len || !is_alpha((unsigned char)s[i + 2]) ||
        (i > 0 && !is_space((unsigned char)s[i - 1]) && s[i - 1] != '"' && s[i - 1] != '\''))
        return i + 1;
    for (e = i + 2; e < len && is_key_char((unsigned char)s[e]); e++)
        ;
    if ((e - i == 6 && memcmp(s + i, "--user", 6) == 0) || (e - i == 12 && memcmp(s + i, "--proxy-user", 12) == 0)) {
        size_t end = curl_user_flag(sc, cache, i, e);
        if (end)
            return end;
    }
    if (e + 1 >= len || !is_blank((unsigned char)s[e]) || s[e + 1] == '-' ||
        !rb_redact_secret_flag(s + i, e - i))
        return e;
    return hide_value(sc, e + 1, V_WORD);
}

/* <password>...</password>, <apiKey>...</apiKey>: the text of an element
 * named like a secret key, when its close tag follows on the same line
 * (so "usage: login <token> [options]" stays).  A CDATA section's
 * content is hidden, its markers stay. */
static size_t at_lt(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t len = sc->len, n = i + 1, e, v, end, from;

    if (n >= len || !is_alpha((unsigned char)s[n]))
        return i + 1;
    for (e = n; e < len && e - n < KEY_MAX && (is_key_char((unsigned char)s[e]) || s[e] == ':'); e++)
        ;
    /* no secret name is shorter than "pass": <a>, <td>, <li> are looked at no further */
    if (e - n < 4 || e >= len || (s[e] != '>' && !is_blank((unsigned char)s[e])) ||
        !rb_redact_secret_name(s + n, e - n))
        return i + 1;
    for (v = e; v < len && s[v] != '>' && s[v] != '<' && !is_eol((unsigned char)s[v]); v++)
        ;                                               /* past the attributes */
    if (v >= len || s[v] != '>' || s[v - 1] == '/')
        return i + 1;
    from = ++v;
    if (len - v >= 9 && memcmp(s + v, "<![CDATA[", 9) == 0) {
        const char *c = memmem(s + v + 9, len - v - 9, "]]>", 3);
        if (!c)
            return i + 1;
        from = v + 9;
        v = (size_t)(c - s);
        end = v + 3;
    } else {
        for (end = v; end < len && s[end] != '<' && !is_eol((unsigned char)s[end]); end++)
            ;
        v = end;
    }
    /* the close tag, also as JSON may escape it: <\/password> */
    size_t c = end + 2 + (end + 2 < len && s[end + 1] == '\\');
    if (end + 1 >= len || s[end] != '<' || s[c - 1] != '/' || len - c < e - n + 1 ||
        memcmp(s + c, s + n, e - n) != 0 || s[c + e - n] != '>')
        return i + 1;
    hide(sc, from, v);
    return end;
}

static int word_start(const char *s, size_t i)
{
    return i == 0 || !is_b64url((unsigned char)s[i - 1]);
}

/* Hide the token characters from p; at least min of them.  Returns the end. */
static size_t hide_run(scan *sc, size_t p, size_t min, int (*ok)(unsigned char))
{
    size_t e = p;

    while (e < sc->len && ok((unsigned char)sc->s[e]))
        e++;
    if (e - p >= min)
        hide(sc, p, e);
    return e;
}

static int is_token_char(unsigned char c) { return is_alnum(c) || c == '_'; }
static int is_slack_char(unsigned char c) { return is_alnum(c) || c == '-'; }

/* sk_live_..., rk_test_..., ghp_..., github_pat_...: the prefix stays, so
 * the reader still sees what kind of key was there. */
static size_t at_underscore(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t len = sc->len;

    if (i >= 2 && (s[i - 2] == 's' || s[i - 2] == 'r') && s[i - 1] == 'k' && word_start(s, i - 2) &&
        len - i > 5 && (memcmp(s + i + 1, "live_", 5) == 0 || memcmp(s + i + 1, "test_", 5) == 0))
        return hide_run(sc, i + 6, 8, is_alnum);
    if (i >= 3 && s[i - 3] == 'g' && s[i - 2] == 'h' && in_set((unsigned char)s[i - 1], "pousr") &&
        word_start(s, i - 3))
        return hide_run(sc, i + 1, 20, is_alnum);
    if (i >= 6 && memcmp(s + i - 6, "github", 6) == 0 && word_start(s, i - 6) &&
        len - i > 4 && memcmp(s + i + 1, "pat_", 4) == 0)
        return hide_run(sc, i + 5, 20, is_token_char);
    return i + 1;
}

/* AKIA/ASIA and 16 upper-case letters or digits: an AWS access key id. */
static size_t at_upper_a(scan *sc, size_t i)
{
    const char *s = sc->s;
    size_t e;

    if (sc->len - i < 20 || !word_start(s, i) || s[i + 2] != 'I' || s[i + 3] != 'A' ||
        (s[i + 1] != 'K' && s[i + 1] != 'S'))
        return i + 1;
    for (e = i + 4; e < sc->len && e < i + 21 && (is_upper((unsigned char)s[e]) || is_digit((unsigned char)s[e])); e++)
        ;
    if (e != i + 20 || (e < sc->len && is_alnum((unsigned char)s[e])))
        return i + 1;
    hide(sc, i + 4, e);
    return e;
}

/* xoxb-..., xoxp-... (Slack). */
static size_t at_x(scan *sc, size_t i)
{
    const char *s = sc->s;

    if (sc->len - i < 6 || s[i + 1] != 'o' || s[i + 2] != 'x' ||
        !in_set((unsigned char)s[i + 3], "abprs") || s[i + 4] != '-' || !word_start(s, i))
        return i + 1;
    return hide_run(sc, i + 5, 10, is_slack_char);
}

/* eyJ...: a JWT is three base64url parts; the header starts with eyJ ({").
 * The scan stops at the J, a rarer letter than the e. */
static size_t at_upper_j(scan *sc, size_t j)
{
    const char *s = sc->s;
    size_t i = j - 2, p;

    if (j < 2 || s[j - 2] != 'e' || s[j - 1] != 'y' || !word_start(s, j - 2))
        return j + 1;
    p = i;
    for (int part = 0; part < 3; part++) {
        size_t start = p;
        while (p < sc->len && is_b64url((unsigned char)s[p]))
            p++;
        if (p - start < 8)
            return i + 1;
        if (part < 2) {
            if (p >= sc->len || s[p] != '.')
                return i + 1;
            p++;
        }
    }
    hide(sc, i, p);
    return p;
}

/* Where a rule may start: each rule's first byte (trigger) and the bytes
 * next to it without which that rule is sure to find nothing (see the
 * at_* functions): a '-' is a flag only after a space or quote, or the
 * start of "--" or "-----BEGIN"; a ':' matters only before a blank, a
 * quote or "//", or after a blank or quote (not 20:00:00, db:5432); an
 * '=' only after a key's last character, a quote or a blank; sk_/ghp_/
 * github_ each have their letter before the '_'; AKIA/ASIA, xox, eyJ and
 * <tag have theirs beside.  A byte that starts a rule has its rule's bit
 * in trigger[]; a neighbour that lets the rule go on, in before[] or
 * after[].  In a log, the dates, times and host:port of every line
 * start no rule, and most trigger bytes go by here instead of in a rule. */
enum { T_EQ = 1, T_COLON = 2, T_DASH = 4, T_UNDER = 8, T_A = 16, T_X = 32, T_J = 64, T_LT = 128 };

static const unsigned char trigger[256] = {
    ['='] = T_EQ, [':'] = T_COLON, ['-'] = T_DASH, ['_'] = T_UNDER,
    ['A'] = T_A, ['x'] = T_X, ['J'] = T_J, ['<'] = T_LT,
};
static unsigned char before[256], after[256];
static pthread_once_t neighbours_once = PTHREAD_ONCE_INIT;

static void set_all(unsigned char *table, const char *bytes, unsigned char bits)
{
    for (; *bytes; bytes++)
        table[(unsigned char)*bytes] |= bits;
}

static void build_neighbours(void)
{
    for (int c = 0; c < 256; c++) {
        if (is_key_char((unsigned char)c))
            before[c] |= T_EQ;
        if (is_alpha((unsigned char)c))
            after[c] |= T_LT;
    }
    set_all(before, " \t\"'", T_EQ | T_COLON | T_DASH);
    set_all(before, "\n\r\f\v", T_DASH);
    set_all(before, "kpousrb", T_UNDER);
    set_all(before, "y", T_J);
    set_all(after, "-", T_DASH);
    set_all(after, " \t\"'\\/", T_COLON);
    set_all(after, "KS", T_A);
    set_all(after, "o", T_X);
}

/* Whether a rule may start at the trigger byte u[i]: the first and last
 * bytes, with a neighbour missing, always may. */
static int may_start(const unsigned char *u, size_t i, size_t len)
{
    return i == 0 || i + 1 >= len || ((before[u[i - 1]] | after[u[i + 1]]) & trigger[u[i]]);
}

/* Where in u[i..len) a rule may start (len when nowhere).  Trigger bytes
 * are found sixteen at a time where SSE2 is there (every x86-64), a byte
 * at a time elsewhere: a byte at a time, this search was a third of
 * showing a log. */
static size_t next_start_of_rule(const unsigned char *u, size_t i, size_t len)
{
    pthread_once(&neighbours_once, build_neighbours);
#if defined(__SSE2__)
    const __m128i eq = _mm_set1_epi8('='), colon = _mm_set1_epi8(':'), dash = _mm_set1_epi8('-'),
        under = _mm_set1_epi8('_'), a = _mm_set1_epi8('A'), x = _mm_set1_epi8('x'),
        j = _mm_set1_epi8('J'), lt = _mm_set1_epi8('<');
    for (; i + 16 < len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, eq), _mm_cmpeq_epi8(v, colon)),
                         _mm_or_si128(_mm_cmpeq_epi8(v, dash), _mm_cmpeq_epi8(v, under))),
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, x)),
                         _mm_or_si128(_mm_cmpeq_epi8(v, j), _mm_cmpeq_epi8(v, lt))));
        for (unsigned bits = (unsigned)_mm_movemask_epi8(m); bits; bits &= bits - 1) {
            size_t at = i + (size_t)__builtin_ctz(bits);
            if (may_start(u, at, len))
                return at;
        }
    }
#endif
    for (; i < len; i++)
        if (trigger[u[i]] && may_start(u, i, len))
            return i;
    return len;
}

/* Run every rule over the text; with no mask, stop at the first hit. */
static int scan_text(scan *sc)
{
    const unsigned char *u = (const unsigned char *)sc->s;
    const size_t len = sc->len;
    command_cache cmds = { 0, CMD_NONE };
    size_t i = 0, next;

    for (;;) {
        if ((i = next_start_of_rule(u, i, len)) == len)
            break;
        switch (u[i]) {
        case '=': next = at_equals(sc, i); break;
        case ':': next = at_colon(sc, i); break;
        case '-': next = at_dash(sc, &cmds, i); break;
        case '<': next = at_lt(sc, i); break;
        case '_': next = at_underscore(sc, i); break;
        case 'A': next = at_upper_a(sc, i); break;
        case 'x': next = at_x(sc, i); break;
        default:  next = at_upper_j(sc, i); break;
        }
        if (sc->hit && !sc->mask)
            return 1;
        i = next > i ? next : i + 1;
    }
    return sc->hit;
}

/* ---- redacting -------------------------------------------------------- */

/* Mark every occurrence of every secret; occurrences may overlap ("aaa"
 * holds "aa" twice) and the longest at each position covers the others
 * that start there.  covered keeps each byte marked once. */
static void mark_secrets(const rb_redactor *r, const char *s, size_t len, unsigned char *mask)
{
    size_t covered = 0;

    if (!r || !r->count)
        return;
    for (size_t i = 0; (i = next_start(r, s, len, i)) < len; i++) {
        size_t m = longest_at(r, s + i, len - i), from = i > covered ? i : covered;
        if (m && i + m > from) {
            memset(mask + from, 1, i + m - from);
            covered = i + m;
        }
    }
}

static int has_secret(const rb_redactor *r, const char *s, size_t len)
{
    if (!r || !r->count)
        return 0;
    for (size_t i = 0; (i = next_start(r, s, len, i)) < len; i++)
        if (longest_at(r, s + i, len - i))
            return 1;
    return 0;
}

int rb_redact_needed(const rb_redactor *r, const char *s, size_t len)
{
    scan sc = { s, len, NULL, 0 };

    return has_secret(r, s, len) || scan_text(&sc);
}

static void mark_all(const rb_redactor *r, const char *s, size_t len, unsigned char *mask)
{
    scan sc = { s, len, mask, 0 };

    memset(mask, 0, len);
    mark_secrets(r, s, len, mask);
    scan_text(&sc);
}

/* Copy s into out (when not NULL) with each marked run as "***"; return
 * the output length, so one pass sizes the buffer and a second fills it. */
static size_t emit_redacted(const char *s, size_t len, const unsigned char *mask, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (!mask[i]) {
            if (out)
                out[o] = s[i];
            o++;
        } else if (i == 0 || !mask[i - 1]) {
            if (out)
                memcpy(out + o, "***", 3);
            o += 3;
        }
    }
    return o;
}

char *rb_redact(const rb_redactor *r, const char *s, size_t len, size_t *outlen)
{
    unsigned char *mask = malloc(len ? len : 1);
    char *out = NULL;
    size_t n;

    if (!mask)
        return NULL;
    mark_all(r, s, len, mask);
    n = emit_redacted(s, len, mask, NULL);
    if ((out = malloc(n + 1))) {
        emit_redacted(s, len, mask, out);
        out[n] = '\0';
        if (outlen)
            *outlen = n;
    }
    free(mask);
    return out;
}

/* ---- Lua -------------------------------------------------------------- */

typedef struct redactor_box {
    rb_redactor *r;
} redactor_box;

static int l_redactor_gc(lua_State *L)
{
    redactor_box *b = luaL_checkudata(L, 1, REDACTOR_MT);
    rb_redactor *r = b->r;

    b->r = NULL;
    rb_redactor_free(r);
    return 0;
}

/* Kept in the registry, so the host can drop it after a run by clearing
 * the key. */
rb_redactor *rb_redactor_of(lua_State *L)
{
    redactor_box *b;

    if (lua_getfield(L, LUA_REGISTRYINDEX, REDACTOR_KEY) == LUA_TUSERDATA) {
        b = lua_touserdata(L, -1);      /* only this function sets the key */
        lua_pop(L, 1);
        return b->r;
    }
    lua_pop(L, 1);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    b->r = NULL;
    luaL_setmetatable(L, REDACTOR_MT);
    if (!(b->r = rb_redactor_new()))
        luaL_error(L, "transcript: out of memory");
    lua_setfield(L, LUA_REGISTRYINDEX, REDACTOR_KEY);
    return b->r;
}

static int l_secret(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    if (rb_redactor_add(rb_redactor_of(L), s, len) != 0)
        return luaL_error(L, "transcript: out of memory");
    lua_settop(L, 1);
    return 1;
}

/* Push s[0..len) redacted, once rb_redact_needed said it changes.  The
 * mask is a userdata and the output a luaL_Buffer, so a memory error
 * raised half-way leaks nothing. */
static void push_masked(lua_State *L, const rb_redactor *r, const char *s, size_t len)
{
    unsigned char *mask = lua_newuserdatauv(L, len ? len : 1, 0);
    luaL_Buffer b;
    size_t n;

    mark_all(r, s, len, mask);
    n = emit_redacted(s, len, mask, NULL);
    emit_redacted(s, len, mask, luaL_buffinitsize(L, &b, n));
    luaL_pushresultsize(&b, n);
    lua_remove(L, -2);
}

static void push_redacted(lua_State *L, const char *s, size_t len)
{
    rb_redactor *r = rb_redactor_of(L);

    if (rb_redact_needed(r, s, len))
        push_masked(L, r, s, len);
    else
        lua_pushlstring(L, s, len);
}

/* redact(s): s redacted; a value that is not a string is returned as it
 * is, and so is a string with nothing to hide (the common case: one scan,
 * no mask, no copy). */
static int l_redact(lua_State *L)
{
    size_t len;
    const char *s;
    rb_redactor *r;

    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_settop(L, 1);
        return 1;
    }
    s = lua_tolstring(L, 1, &len);
    r = rb_redactor_of(L);
    lua_settop(L, 1);
    if (rb_redact_needed(r, s, len))
        push_masked(L, r, s, len);
    return 1;
}

/*
 * Output shown line by line cannot be redacted line by line alone: the
 * body lines of a PEM private key hold no marker.  A line redactor
 * remembers that it is inside such a block and hides each line until the
 * END line.
 */
typedef struct line_state {
    int in_key;
} line_state;

static int opens_key_block(const char *s, size_t len)
{
    const char *b = memmem(s, len, "-----BEGIN ", 11);
    const char *k = b ? memmem(b, (size_t)(s + len - b), "PRIVATE KEY-----", 16) : NULL;

    return k && !memmem(k, (size_t)(s + len - k), "-----END", 8);
}

size_t rb_redact_key_line(int *in_key, const char *s, size_t len)
{
    if (*in_key) {
        const char *end = memmem(s, len, "-----END", 8);
        if (end == NULL)
            return len;
        *in_key = 0;
        return (size_t)(end - s);
    }
    *in_key = opens_key_block(s, len);
    return 0;
}

static int l_line(lua_State *L)
{
    line_state *st = luaL_checkudata(L, 1, LINES_MT);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    size_t body = rb_redact_key_line(&st->in_key, s, len);

    lua_pushstring(L, body ? "***" : "");
    push_redacted(L, s + body, len - body);
    lua_concat(L, 2);
    return 1;
}

static int l_line_gc(lua_State *L)
{
    (void)L;    /* nothing to release: the state is the userdata itself */
    return 0;
}

static int l_line_redactor(lua_State *L)
{
    line_state *st = lua_newuserdatauv(L, sizeof *st, 0);

    st->in_key = 0;
    luaL_setmetatable(L, LINES_MT);
    return 1;
}

static const luaL_Reg line_methods[] = {
    { "line", l_line },
    { NULL, NULL }
};

static const luaL_Reg funcs[] = {
    { "secret", l_secret },
    { "redact", l_redact },
    { "line_redactor", l_line_redactor },
    { NULL, NULL }
};

void rb_redact_openlib(lua_State *L)
{
    rb_class(L, REDACTOR_MT, l_redactor_gc, NULL, NULL);
    rb_class(L, LINES_MT, l_line_gc, NULL, line_methods);
    luaL_setfuncs(L, funcs, 0);
}

int luaopen_runbook_redact(lua_State *L)
{
    luaL_newlibtable(L, funcs);
    rb_redact_openlib(L);
    return 1;
}
