/*
 * OrbitDesk core: e-mail messages, built and parsed (orbit_mime.h).
 *
 * Every read goes through a (pointer, end) pair; strings handed between
 * the helpers are nul-terminated copies.  Output grows in orbit_mb_t,
 * which remembers running out of memory instead of failing each call.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/orbit_mime.h"


#define ORBIT_MIME_WORD_RAW   45        /* bytes per encoded word */
#define ORBIT_MIME_QP_LINE    75        /* before the soft break */
#define ORBIT_MIME_HDR_MAX    (64 * 1024)


typedef struct {
    char         *p;
    size_t        len;
    size_t        cap;
    int           err;
    int           cr;           /* the last code point was a CR */
} orbit_mb_t;


/* the headers of a message or a part that the parser reads */
typedef struct {
    char         *from;
    char         *to;
    char         *cc;
    char         *subject;
    char         *message_id;
    char         *in_reply_to;
    char         *references;
    char         *date;
    char         *ctype;
    char         *cte;
    char         *disposition;
} orbit_mime_hdrs_t;


typedef struct {
    orbit_mime_t     *m;
    size_t            parts;
    size_t            atts_cap;
    int               err;
} orbit_mime_walk_t;


enum {
    ORBIT_MB_TEXT = 0,          /* keeps \n and \t */
    ORBIT_MB_HEADER             /* every control becomes a space */
};


static void orbit_mb_add(orbit_mb_t *b, const void *s, size_t n);
static void orbit_mb_adds(orbit_mb_t *b, const char *s);
static void orbit_mb_addc(orbit_mb_t *b, char c);
static char *orbit_mb_take(orbit_mb_t *b);
static void orbit_mb_cp(orbit_mb_t *b, unsigned cp, int mode);
static void orbit_mb_utf8(orbit_mb_t *b, const unsigned char *s, size_t n,
    int mode);
static void orbit_mb_charset(orbit_mb_t *b, const char *cs,
    const unsigned char *s, size_t n, int mode);

static void orbit_mime_qp_decode(orbit_mb_t *b, const char *s, size_t n,
    int q);
static void orbit_mime_b64_decode(orbit_mb_t *b, const char *s, size_t n);
static void orbit_mime_b64_encode(orbit_mb_t *b, const unsigned char *s,
    size_t n);
static void orbit_mime_qp_encode(orbit_mb_t *b, const char *s);
static void orbit_mime_html_escape(orbit_mb_t *b, const char *s);
static void orbit_mime_html_strip(orbit_mb_t *b, const char *s, size_t n);

static const char *orbit_mime_headers(const char *p, const char *end,
    orbit_mime_hdrs_t *h);
static void orbit_mime_hdrs_free(orbit_mime_hdrs_t *h);
static char *orbit_mime_param(const char *v, const char *name);
static char *orbit_mime_type(const char *v);
static void orbit_mime_part(orbit_mime_walk_t *w, const char *p,
    const char *end, int depth, orbit_mime_hdrs_t *h);
static void orbit_mime_leaf(orbit_mime_walk_t *w, const char *body,
    const char *end, const char *type, orbit_mime_hdrs_t *h);
static void orbit_mime_multipart(orbit_mime_walk_t *w, const char *body,
    const char *end, const char *boundary, int depth);
static void orbit_mime_decode(orbit_mb_t *b, const char *body,
    const char *end, const char *cte);
static void orbit_mime_from(orbit_mime_t *m, const char *v);
static char *orbit_mime_ids(const char *v, size_t max, int first);
static time_t orbit_mime_date(const char *v);
static int orbit_mime_hex(int c);
static const char *orbit_mime_eol(const char *p, const char *end);


static const char  orbit_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* windows-1252's 0x80..0x9f (ISO-8859-1's C1 controls, read as browsers
 * read them) */
static const unsigned short  orbit_cp1252[32] = {
    0x20ac, 0xfffd, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
    0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0xfffd, 0x017d, 0xfffd,
    0xfffd, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
    0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0xfffd, 0x017e, 0x0178
};


/* ------------------------------------------------------------ buffers */

static void
orbit_mb_add(orbit_mb_t *b, const void *s, size_t n)
{
    char    *p;
    size_t   cap;

    if (b->err) {
        return;
    }

    if (b->len + n + 1 > b->cap) {
        cap = b->cap ? b->cap : 256;

        while (cap < b->len + n + 1) {
            if (cap > ((size_t) -1) / 2) {
                b->err = 1;
                return;
            }

            cap *= 2;
        }

        p = realloc(b->p, cap);
        if (p == NULL) {
            b->err = 1;
            return;
        }

        b->p = p;
        b->cap = cap;
    }

    if (n) {
        memcpy(b->p + b->len, s, n);
    }

    b->len += n;
    b->p[b->len] = '\0';
}


static void
orbit_mb_adds(orbit_mb_t *b, const char *s)
{
    orbit_mb_add(b, s, strlen(s));
}


static void
orbit_mb_addc(orbit_mb_t *b, char c)
{
    orbit_mb_add(b, &c, 1);
}


/* the buffer's string (never NULL unless out of memory); b is emptied */

static char *
orbit_mb_take(orbit_mb_t *b)
{
    char  *p;

    orbit_mb_add(b, "", 0);

    if (b->err) {
        free(b->p);
        memset(b, 0, sizeof(orbit_mb_t));
        return NULL;
    }

    p = b->p;
    memset(b, 0, sizeof(orbit_mb_t));

    return p;
}


/* one code point as UTF-8: line ends become \n, controls go */

static void
orbit_mb_cp(orbit_mb_t *b, unsigned cp, int mode)
{
    char  u[4];
    int   cr;

    cr = b->cr;
    b->cr = 0;

    if (cp < 0x20 || cp == 0x7f) {
        if (mode == ORBIT_MB_HEADER) {
            if (cp != 0) {
                orbit_mb_addc(b, ' ');
            }

            return;
        }

        if (cp == '\r') {
            b->cr = 1;
            orbit_mb_addc(b, '\n');

        } else if (cp == '\n') {
            if (!cr) {
                orbit_mb_addc(b, '\n');
            }

        } else if (cp == '\t') {
            orbit_mb_addc(b, '\t');
        }

        return;
    }

    if (cp < 0x80) {
        orbit_mb_addc(b, (char) cp);

    } else if (cp < 0x800) {
        u[0] = (char) (0xc0 | (cp >> 6));
        u[1] = (char) (0x80 | (cp & 0x3f));
        orbit_mb_add(b, u, 2);

    } else if (cp < 0x10000) {
        u[0] = (char) (0xe0 | (cp >> 12));
        u[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char) (0x80 | (cp & 0x3f));
        orbit_mb_add(b, u, 3);

    } else {
        u[0] = (char) (0xf0 | (cp >> 18));
        u[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char) (0x80 | (cp & 0x3f));
        orbit_mb_add(b, u, 4);
    }
}


/* UTF-8 in, checked: each invalid sequence becomes U+FFFD */

static void
orbit_mb_utf8(orbit_mb_t *b, const unsigned char *s, size_t n, int mode)
{
    size_t    i, k, need;
    unsigned  cp, min;

    for (i = 0; i < n; /* void */) {
        cp = s[i];

        if (cp < 0x80) {
            orbit_mb_cp(b, cp, mode);
            i++;
            continue;
        }

        if (cp >= 0xc2 && cp <= 0xdf) {
            need = 1; cp &= 0x1f; min = 0x80;

        } else if (cp >= 0xe0 && cp <= 0xef) {
            need = 2; cp &= 0x0f; min = 0x800;

        } else if (cp >= 0xf0 && cp <= 0xf4) {
            need = 3; cp &= 0x07; min = 0x10000;

        } else {
            orbit_mb_cp(b, 0xfffd, mode);
            i++;
            continue;
        }

        for (k = 1; k <= need; k++) {
            if (i + k >= n || (s[i + k] & 0xc0) != 0x80) {
                break;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (k <= need || cp < min || cp > 0x10ffff
            || (cp >= 0xd800 && cp <= 0xdfff))
        {
            orbit_mb_cp(b, 0xfffd, mode);
            i += (k > 1) ? k : 1;
            continue;
        }

        orbit_mb_cp(b, cp, mode);
        i += need + 1;
    }
}


static void
orbit_mb_charset(orbit_mb_t *b, const char *cs, const unsigned char *s,
    size_t n, int mode)
{
    size_t  i;

    if (cs == NULL
        || (strcasecmp(cs, "iso-8859-1") != 0
            && strcasecmp(cs, "iso8859-1") != 0
            && strcasecmp(cs, "iso_8859-1") != 0
            && strcasecmp(cs, "latin1") != 0
            && strcasecmp(cs, "latin-1") != 0
            && strcasecmp(cs, "l1") != 0
            && strcasecmp(cs, "windows-1252") != 0
            && strcasecmp(cs, "cp1252") != 0))
    {
        /* UTF-8, US-ASCII, and what we do not know */
        orbit_mb_utf8(b, s, n, mode);
        return;
    }

    for (i = 0; i < n; i++) {
        if (s[i] >= 0x80 && s[i] < 0xa0) {
            orbit_mb_cp(b, orbit_cp1252[s[i] - 0x80], mode);

        } else {
            orbit_mb_cp(b, s[i], mode);
        }
    }
}


/* ----------------------------------------------------------- encodings */

static int
orbit_mime_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* quoted-printable (q: RFC 2047's Q, where "_" is a space) */

static void
orbit_mime_qp_decode(orbit_mb_t *b, const char *s, size_t n, int q)
{
    int          hi, lo;
    const char  *p, *end, *t;

    p = s;
    end = s + n;

    while (p < end) {
        if (*p == '_' && q) {
            orbit_mb_addc(b, ' ');
            p++;
            continue;
        }

        if (*p != '=') {
            orbit_mb_addc(b, *p++);
            continue;
        }

        /* "=" then blanks to the end of the line: a soft break */

        t = p + 1;
        while (t < end && (*t == ' ' || *t == '\t')) {
            t++;
        }

        if (t < end && (*t == '\r' || *t == '\n')) {
            if (*t == '\r' && t + 1 < end && t[1] == '\n') {
                t++;
            }

            p = t + 1;
            continue;
        }

        if (t == end) {
            break;
        }

        hi = (p + 1 < end) ? orbit_mime_hex((unsigned char) p[1]) : -1;
        lo = (p + 2 < end) ? orbit_mime_hex((unsigned char) p[2]) : -1;

        if (hi < 0 || lo < 0) {
            orbit_mb_addc(b, '=');      /* not an escape: as it is */
            p++;
            continue;
        }

        orbit_mb_addc(b, (char) (hi << 4 | lo));
        p += 3;
    }
}


static void
orbit_mime_b64_decode(orbit_mb_t *b, const char *s, size_t n)
{
    size_t          i;
    unsigned        acc, bits;
    const char     *c;
    unsigned char   o;

    acc = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '=') {
            break;
        }

        if (s[i] == '\0') {
            continue;
        }

        c = strchr(orbit_b64, s[i]);
        if (c == NULL) {
            continue;                   /* line ends, blanks, junk */
        }

        acc = (acc << 6) | (unsigned) (c - orbit_b64);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            o = (unsigned char) (acc >> bits);
            orbit_mb_add(b, &o, 1);
            acc &= (1u << bits) - 1;
        }
    }
}


static void
orbit_mime_b64_encode(orbit_mb_t *b, const unsigned char *s, size_t n)
{
    char      q[4];
    size_t    i;
    unsigned  v;

    for (i = 0; i + 2 < n; i += 3) {
        v = (unsigned) s[i] << 16 | (unsigned) s[i + 1] << 8 | s[i + 2];
        q[0] = orbit_b64[v >> 18];
        q[1] = orbit_b64[(v >> 12) & 0x3f];
        q[2] = orbit_b64[(v >> 6) & 0x3f];
        q[3] = orbit_b64[v & 0x3f];
        orbit_mb_add(b, q, 4);
    }

    if (i < n) {
        v = (unsigned) s[i] << 16 | ((i + 1 < n) ? (unsigned) s[i + 1] << 8
                                                 : 0);
        q[0] = orbit_b64[v >> 18];
        q[1] = orbit_b64[(v >> 12) & 0x3f];
        q[2] = (i + 1 < n) ? orbit_b64[(v >> 6) & 0x3f] : '=';
        q[3] = '=';
        orbit_mb_add(b, q, 4);
    }
}


/* text (\n or \r\n lines) as quoted-printable with CRLF line ends */

static void
orbit_mime_qp_encode(orbit_mb_t *b, const char *s)
{
    int             last;
    char            e[4];
    size_t          col, w;
    const unsigned char  *p;

    col = 0;

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p == '\r' && p[1] == '\n') {
            continue;
        }

        if (*p == '\n' || *p == '\r') {
            orbit_mb_add(b, "\r\n", 2);
            col = 0;
            continue;
        }

        last = (p[1] == '\0' || p[1] == '\n' || p[1] == '\r');

        if ((*p >= 33 && *p <= 126 && *p != '=')
            || ((*p == ' ' || *p == '\t') && !last))
        {
            e[0] = (char) *p;
            w = 1;

        } else {
            (void) snprintf(e, sizeof(e), "=%02X", *p);
            w = 3;
        }

        if (col + w > ORBIT_MIME_QP_LINE) {
            orbit_mb_add(b, "=\r\n", 3);
            col = 0;
        }

        orbit_mb_add(b, e, w);
        col += w;
    }
}


static void
orbit_mime_html_escape(orbit_mb_t *b, const char *s)
{
    for (/* void */; *s; s++) {
        switch (*s) {
        case '&':  orbit_mb_adds(b, "&amp;"); break;
        case '<':  orbit_mb_adds(b, "&lt;"); break;
        case '>':  orbit_mb_adds(b, "&gt;"); break;
        case '"':  orbit_mb_adds(b, "&quot;"); break;
        case '\'': orbit_mb_adds(b, "&#39;"); break;
        case '\r': break;
        case '\n': orbit_mb_adds(b, "<br>\n"); break;
        default:   orbit_mb_addc(b, *s);
        }
    }
}


/*
 * HTML (UTF-8 already) to text: tags go, script and style with their
 * content, <br>, </p>, </div>, </li>, </tr> and headings end lines, the
 * common entities and numeric ones are decoded, blanks collapse.
 */

static void
orbit_mime_html_strip(orbit_mb_t *b, const char *s, size_t n)
{
    int           space, nl, hex, d;
    char          name[16];
    size_t        k, i;
    unsigned      cp;
    const char   *p, *end, *t, *skip;

    static const struct {
        const char  *name;
        unsigned     cp;
    } ents[] = {
        { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
        { "apos", '\'' }, { "nbsp", 0xa0 }, { "copy", 0xa9 },
        { "hellip", 0x2026 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
        { "euro", 0x20ac }, { NULL, 0 }
    };

    p = s;
    end = s + n;
    space = 0;
    nl = 1;
    skip = NULL;

    while (p < end) {
        if (*p == '<') {
            t = memchr(p, '>', end - p);
            if (t == NULL) {
                break;
            }

            /* the tag's name, lowercased */

            i = 1;
            if (p + i < t && p[i] == '/') {
                i++;
            }

            for (k = 0; p + i < t && k < sizeof(name) - 1; i++) {
                if (!((p[i] >= 'a' && p[i] <= 'z')
                      || (p[i] >= 'A' && p[i] <= 'Z')
                      || (p[i] >= '0' && p[i] <= '9')))
                {
                    break;
                }

                name[k++] = (char) (p[i] | 0x20);
            }

            name[k] = '\0';

            if (skip) {
                if (p[1] == '/' && strcmp(name, skip) == 0) {
                    skip = NULL;
                }

                p = t + 1;
                continue;
            }

            if (p[1] != '/' && (strcmp(name, "script") == 0
                                || strcmp(name, "style") == 0
                                || strcmp(name, "head") == 0))
            {
                skip = (name[1] == 'c') ? "script"
                       : (name[1] == 't') ? "style" : "head";
                p = t + 1;
                continue;
            }

            if (strcmp(name, "br") == 0
                || (p[1] == '/' && (strcmp(name, "p") == 0
                                    || strcmp(name, "div") == 0
                                    || strcmp(name, "li") == 0
                                    || strcmp(name, "tr") == 0
                                    || (name[0] == 'h' && name[1] >= '1'
                                        && name[1] <= '6'))))
            {
                orbit_mb_addc(b, '\n');
                nl = 1;
                space = 0;

            } else if (!nl) {
                space = 1;
            }

            p = t + 1;
            continue;
        }

        if (skip) {
            p++;
            continue;
        }

        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            if (!nl) {
                space = 1;
            }

            p++;
            continue;
        }

        if (space) {
            orbit_mb_addc(b, ' ');
            space = 0;
        }

        nl = 0;

        if (*p == '&') {
            t = memchr(p, ';', (end - p < 12) ? (size_t) (end - p) : 12);

            if (t) {
                cp = 0;

                if (p[1] == '#') {
                    t = p + 2;
                    hex = (t < end && (*t | 0x20) == 'x');
                    t += hex;

                    for (k = 0; t < end && k < 8; t++, k++) {
                        d = hex ? orbit_mime_hex((unsigned char) *t)
                                : (*t >= '0' && *t <= '9') ? *t - '0' : -1;
                        if (d < 0) {
                            break;
                        }

                        cp = cp * (hex ? 16 : 10) + d;
                    }

                    if (k && t < end && *t == ';' && cp > 0
                        && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff))
                    {
                        orbit_mb_cp(b, cp, ORBIT_MB_TEXT);
                        p = t + 1;
                        continue;
                    }

                } else {
                    for (k = 0; ents[k].name; k++) {
                        i = strlen(ents[k].name);

                        if ((size_t) (t - p - 1) == i
                            && memcmp(p + 1, ents[k].name, i) == 0)
                        {
                            orbit_mb_cp(b, ents[k].cp, ORBIT_MB_TEXT);
                            p = t + 1;
                            break;
                        }
                    }

                    if (ents[k].name) {
                        continue;
                    }
                }
            }
        }

        orbit_mb_addc(b, *p++);
    }
}


/* -------------------------------------------------------- header words */

int
orbit_mime_addr_ok(const char *addr)
{
    size_t       n, at;
    const char  *p;

    n = strlen(addr);
    at = 0;

    if (n < 3 || n > 254) {
        return 0;
    }

    for (p = addr; *p; p++) {
        if (*p == '@') {
            if (at || p == addr || p[1] == '\0') {
                return 0;
            }

            at = p - addr;
            continue;
        }

        if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f
            || strchr("<>()[]\\,;:\"", *p))
        {
            return 0;
        }
    }

    return at != 0;
}


int
orbit_mime_id_ok(const char *id, size_t len)
{
    size_t  i;

    if (len < 3 || len > 250 || id[0] != '<' || id[len - 1] != '>') {
        return 0;
    }

    for (i = 1; i < len - 1; i++) {
        if ((unsigned char) id[i] <= 0x20 || (unsigned char) id[i] >= 0x7f
            || id[i] == '<' || id[i] == '>')
        {
            return 0;
        }
    }

    return 1;
}


char *
orbit_mime_encode_words(const char *s, size_t col)
{
    size_t          n, i, room, take;
    orbit_mb_t      b, clean;
    const unsigned char  *u;

    memset(&b, 0, sizeof(orbit_mb_t));
    memset(&clean, 0, sizeof(orbit_mb_t));

    /* UTF-8 checked, every control (CR, LF) a space */

    orbit_mb_utf8(&clean, (const unsigned char *) s, strlen(s),
                  ORBIT_MB_HEADER);
    orbit_mb_add(&clean, "", 0);

    if (clean.err) {
        free(clean.p);
        return NULL;
    }

    u = (const unsigned char *) clean.p;
    n = clean.len;

    for (i = 0; i < n; i++) {
        if (u[i] >= 0x7f) {
            break;
        }
    }

    if (i == n && col + n <= 78
        && !(n > 1 && u[0] == '=' && u[1] == '?')
        && strstr(clean.p, "=?") == NULL)
    {
        orbit_mb_add(&b, u, n);
        free(clean.p);
        return orbit_mb_take(&b);
    }

    /* =?UTF-8?B?...?= words of whole characters, each on its own line */

    room = (col + 12 < 78) ? (78 - col - 12) / 4 * 3 : 3;

    for (i = 0; i < n || i == 0; i += take) {
        take = room < ORBIT_MIME_WORD_RAW ? room : ORBIT_MIME_WORD_RAW;
        room = ORBIT_MIME_WORD_RAW;

        if (take > n - i) {
            take = n - i;

        } else {
            while (take > 1 && (u[i + take] & 0xc0) == 0x80) {
                take--;
            }
        }

        if (i) {
            orbit_mb_add(&b, "\r\n ", 3);
        }

        orbit_mb_adds(&b, "=?UTF-8?B?");
        orbit_mime_b64_encode(&b, u + i, take);
        orbit_mb_adds(&b, "?=");

        if (n == 0) {
            break;
        }
    }

    free(clean.p);

    return orbit_mb_take(&b);
}


char *
orbit_mime_decode_words(const char *s, size_t len)
{
    int          enc, after;
    char         cs[40];
    size_t       k, mark;
    orbit_mb_t   b, raw;
    const char  *p, *end, *q, *t, *text;

    memset(&b, 0, sizeof(orbit_mb_t));
    p = s;
    end = s + len;
    after = 0;          /* only blanks since the last encoded word */
    mark = 0;           /* the output's length at that word's end */

    while (p < end) {
        if (*p == ' ' || *p == '\t') {
            orbit_mb_addc(&b, ' ');
            p++;
            continue;
        }

        if (!(p + 1 < end && p[0] == '=' && p[1] == '?')) {
            /* plain text: 8-bit in it is read as UTF-8 */
            t = p + 1;
            while (t < end && *t != '=' && *t != ' ' && *t != '\t') {
                t++;
            }

            orbit_mb_utf8(&b, (const unsigned char *) p, t - p,
                          ORBIT_MB_HEADER);
            after = 0;
            p = t;
            continue;
        }

        /* =?charset?E?text?= (charset may carry *language) */

        q = p + 2;
        for (k = 0; q < end && *q != '?' && k < sizeof(cs) - 1; q++) {
            cs[k++] = *q;
        }

        cs[k] = '\0';
        t = NULL;

        if (q + 3 < end && *q == '?' && q[2] == '?') {
            enc = q[1] | 0x20;
            text = q + 3;

            for (t = text; t + 1 < end; t++) {
                if (t[0] == '?' && t[1] == '=') {
                    break;
                }
            }

            if (t + 1 >= end || (enc != 'b' && enc != 'q')) {
                t = NULL;
            }
        }

        if (t == NULL) {
            orbit_mb_addc(&b, '=');
            after = 0;
            p++;
            continue;
        }

        if (strchr(cs, '*')) {
            *strchr(cs, '*') = '\0';
        }

        /* blanks between two encoded words are not text */

        if (after && b.p) {
            b.len = mark;
            b.p[b.len] = '\0';
        }

        memset(&raw, 0, sizeof(orbit_mb_t));

        if (enc == 'b') {
            orbit_mime_b64_decode(&raw, text, t - text);

        } else {
            orbit_mime_qp_decode(&raw, text, t - text, 1);
        }

        if (raw.err) {
            b.err = 1;
        }

        orbit_mb_charset(&b, cs, (const unsigned char *) raw.p, raw.len,
                         ORBIT_MB_HEADER);
        free(raw.p);

        after = 1;
        mark = b.len;
        p = t + 2;
    }

    return orbit_mb_take(&b);
}


/* ------------------------------------------------------------ building */

int
orbit_mime_build(const orbit_mime_out_t *m, char **out, size_t *len)
{
    int          ok;
    char        *w, *ids, date[64];
    size_t       n;
    struct tm    tm;
    orbit_mb_t   b;
    const char  *p, *e;

    static const char  *days[] = {
        "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
    };

    static const char  *months[] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
        "Oct", "Nov", "Dec"
    };

    *out = NULL;
    *len = 0;

    if (m->from_addr == NULL || !orbit_mime_addr_ok(m->from_addr)
        || m->to_addr == NULL || !orbit_mime_addr_ok(m->to_addr)
        || m->message_id == NULL
        || !orbit_mime_id_ok(m->message_id, strlen(m->message_id))
        || m->boundary == NULL || strlen(m->boundary) > 60
        || strncmp(m->boundary, "=_", 2) != 0
        || strspn(m->boundary, "0123456789abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ=_.-")
           != strlen(m->boundary))
    {
        return -1;
    }

    memset(&b, 0, sizeof(orbit_mb_t));

    /* From and To: "name" <addr>, the name quoted or encoded */

    orbit_mb_adds(&b, "From: ");

    if (m->from_name && m->from_name[0]) {
        w = orbit_mime_encode_words(m->from_name, 6);
        if (w == NULL) {
            goto nomem;
        }

        ok = (strstr(w, "=?") == w);

        if (!ok) {
            orbit_mb_addc(&b, '"');

            for (p = w; *p; p++) {
                if (*p == '"' || *p == '\\') {
                    orbit_mb_addc(&b, '\\');
                }

                orbit_mb_addc(&b, *p);
            }

            orbit_mb_addc(&b, '"');

        } else {
            orbit_mb_adds(&b, w);
        }

        free(w);
        orbit_mb_adds(&b, " <");
        orbit_mb_adds(&b, m->from_addr);
        orbit_mb_adds(&b, ">\r\n");

    } else {
        orbit_mb_adds(&b, m->from_addr);
        orbit_mb_adds(&b, "\r\n");
    }

    orbit_mb_adds(&b, "To: ");

    if (m->to_name && m->to_name[0]) {
        w = orbit_mime_encode_words(m->to_name, 4);
        if (w == NULL) {
            goto nomem;
        }

        if (strstr(w, "=?") == w) {
            orbit_mb_adds(&b, w);

        } else {
            orbit_mb_addc(&b, '"');

            for (p = w; *p; p++) {
                if (*p == '"' || *p == '\\') {
                    orbit_mb_addc(&b, '\\');
                }

                orbit_mb_addc(&b, *p);
            }

            orbit_mb_addc(&b, '"');
        }

        free(w);
        orbit_mb_adds(&b, " <");
        orbit_mb_adds(&b, m->to_addr);
        orbit_mb_adds(&b, ">\r\n");

    } else {
        orbit_mb_adds(&b, m->to_addr);
        orbit_mb_adds(&b, "\r\n");
    }

    w = orbit_mime_encode_words(m->subject ? m->subject : "", 9);
    if (w == NULL) {
        goto nomem;
    }

    orbit_mb_adds(&b, "Subject: ");
    orbit_mb_adds(&b, w);
    orbit_mb_adds(&b, "\r\n");
    free(w);

    if (gmtime_r(&m->date, &tm) == NULL) {
        goto nomem;
    }

    (void) snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d"
                    " +0000", days[tm.tm_wday], tm.tm_mday,
                    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
                    tm.tm_min, tm.tm_sec);

    orbit_mb_adds(&b, "Date: ");
    orbit_mb_adds(&b, date);
    orbit_mb_adds(&b, "\r\nMessage-ID: ");
    orbit_mb_adds(&b, m->message_id);
    orbit_mb_adds(&b, "\r\n");

    if (m->in_reply_to
        && orbit_mime_id_ok(m->in_reply_to, strlen(m->in_reply_to)))
    {
        orbit_mb_adds(&b, "In-Reply-To: ");
        orbit_mb_adds(&b, m->in_reply_to);
        orbit_mb_adds(&b, "\r\n");
    }

    /* References: the valid ids only, one folded line each */

    ids = m->references ? orbit_mime_ids(m->references, ORBIT_MIME_REFS, 0)
                        : NULL;

    if (ids && ids[0]) {
        orbit_mb_adds(&b, "References:");

        for (p = ids; *p; p = e) {
            e = strchr(p, ' ');
            n = e ? (size_t) (e - p) : strlen(p);
            e = e ? e + 1 : p + n;

            orbit_mb_adds(&b, (p == ids) ? " " : "\r\n ");
            orbit_mb_add(&b, p, n);
        }

        orbit_mb_adds(&b, "\r\n");
    }

    free(ids);

    orbit_mb_adds(&b, "MIME-Version: 1.0\r\n"
                  "Content-Type: multipart/alternative; boundary=\"");
    orbit_mb_adds(&b, m->boundary);
    orbit_mb_adds(&b, "\"\r\n\r\nThis is a multi-part message in MIME "
                  "format.\r\n\r\n--");
    orbit_mb_adds(&b, m->boundary);
    orbit_mb_adds(&b, "\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                  "Content-Transfer-Encoding: quoted-printable\r\n\r\n");

    {
        orbit_mb_t  t;

        memset(&t, 0, sizeof(orbit_mb_t));
        orbit_mb_utf8(&t, (const unsigned char *) (m->text ? m->text : ""),
                      m->text ? strlen(m->text) : 0, ORBIT_MB_TEXT);
        orbit_mb_add(&t, "", 0);

        if (t.err) {
            free(t.p);
            goto nomem;
        }

        orbit_mime_qp_encode(&b, t.p);
        orbit_mb_adds(&b, "\r\n--");
        orbit_mb_adds(&b, m->boundary);
        orbit_mb_adds(&b, "\r\nContent-Type: text/html; charset=UTF-8\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n\r\n");

        if (m->html) {
            free(t.p);
            memset(&t, 0, sizeof(orbit_mb_t));
            orbit_mb_utf8(&t, (const unsigned char *) m->html,
                          strlen(m->html), ORBIT_MB_TEXT);
            orbit_mb_add(&t, "", 0);

            if (t.err) {
                free(t.p);
                goto nomem;
            }

            orbit_mime_qp_encode(&b, t.p);

        } else {
            orbit_mb_t  h;

            memset(&h, 0, sizeof(orbit_mb_t));
            orbit_mb_adds(&h, "<!DOCTYPE html>\n<html><head><meta charset="
                          "\"utf-8\"></head>\n<body><p>");
            orbit_mime_html_escape(&h, t.p);
            orbit_mb_adds(&h, "</p></body></html>\n");
            orbit_mb_add(&h, "", 0);

            if (h.err) {
                free(t.p);
                free(h.p);
                goto nomem;
            }

            orbit_mime_qp_encode(&b, h.p);
            free(h.p);
        }

        free(t.p);
    }

    orbit_mb_adds(&b, "\r\n--");
    orbit_mb_adds(&b, m->boundary);
    orbit_mb_adds(&b, "--\r\n");

    *len = b.len;
    *out = orbit_mb_take(&b);

    return *out ? 0 : -1;

nomem:

    free(b.p);
    return -1;
}


/* ------------------------------------------------------------- parsing */

static const char *
orbit_mime_eol(const char *p, const char *end)
{
    const char  *e;

    e = memchr(p, '\n', end - p);

    return e ? e : end;
}


/*
 * The header block at p: the fields we read, unfolded, in h.  Returns
 * where the body starts (end when there is none).
 */

static const char *
orbit_mime_headers(const char *p, const char *end, orbit_mime_hdrs_t *h)
{
    char        **slot;
    size_t        nlen;
    orbit_mb_t    v;
    const char   *eol, *le, *colon;

    memset(h, 0, sizeof(orbit_mime_hdrs_t));

    while (p < end) {
        eol = orbit_mime_eol(p, end);
        le = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;

        if (le == p) {
            return (eol < end) ? eol + 1 : end;     /* the blank line */
        }

        colon = memchr(p, ':', le - p);

        if (colon == NULL || *p == ' ' || *p == '\t') {
            p = (eol < end) ? eol + 1 : end;       /* not a field */
            continue;
        }

        nlen = colon - p;
        while (nlen && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t')) {
            nlen--;
        }

#define ORBIT_MIME_IS(s)                                                     \
        (nlen == sizeof(s) - 1 && strncasecmp(p, s, nlen) == 0)

        slot = ORBIT_MIME_IS("from") ? &h->from
               : ORBIT_MIME_IS("to") ? &h->to
               : ORBIT_MIME_IS("cc") ? &h->cc
               : ORBIT_MIME_IS("subject") ? &h->subject
               : ORBIT_MIME_IS("message-id") ? &h->message_id
               : ORBIT_MIME_IS("in-reply-to") ? &h->in_reply_to
               : ORBIT_MIME_IS("references") ? &h->references
               : ORBIT_MIME_IS("date") ? &h->date
               : ORBIT_MIME_IS("content-type") ? &h->ctype
               : ORBIT_MIME_IS("content-transfer-encoding") ? &h->cte
               : ORBIT_MIME_IS("content-disposition") ? &h->disposition
               : NULL;

#undef ORBIT_MIME_IS

        /* the value and its continuation lines */

        memset(&v, 0, sizeof(orbit_mb_t));
        colon++;

        while (colon < le && (*colon == ' ' || *colon == '\t')) {
            colon++;
        }

        orbit_mb_add(&v, colon, le - colon);
        p = (eol < end) ? eol + 1 : end;

        while (p < end && (*p == ' ' || *p == '\t')) {
            eol = orbit_mime_eol(p, end);
            le = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;

            if (v.len < ORBIT_MIME_HDR_MAX) {
                orbit_mb_add(&v, p, le - p);
            }

            p = (eol < end) ? eol + 1 : end;
        }

        if (slot && *slot == NULL && !v.err) {
            *slot = orbit_mb_take(&v);

        } else {
            free(v.p);
        }
    }

    return end;
}


static void
orbit_mime_hdrs_free(orbit_mime_hdrs_t *h)
{
    free(h->from);
    free(h->to);
    free(h->cc);
    free(h->subject);
    free(h->message_id);
    free(h->in_reply_to);
    free(h->references);
    free(h->date);
    free(h->ctype);
    free(h->cte);
    free(h->disposition);
}


/* "text/plain" of a Content-Type, lowercased; NULL: none */

static char *
orbit_mime_type(const char *v)
{
    char    *t;
    size_t   n, i;

    while (*v == ' ' || *v == '\t') {
        v++;
    }

    n = strcspn(v, "; \t(");

    if (n == 0 || memchr(v, '/', n) == NULL || n > 100) {
        return NULL;
    }

    t = malloc(n + 1);
    if (t == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        t[i] = (v[i] >= 'A' && v[i] <= 'Z') ? (char) (v[i] | 0x20) : v[i];
    }

    t[n] = '\0';

    return t;
}


/*
 * A parameter of a Content-Type or Content-Disposition value: name=token,
 * name="quoted", or RFC 2231's name*=charset'lang'%xx (one segment), as
 * UTF-8; NULL when absent.
 */

static char *
orbit_mime_param(const char *v, const char *name)
{
    int          ext, hi, lo;
    char        *cs, *r;
    size_t       n, k;
    orbit_mb_t   b, raw;
    const char  *p, *q, *e;

    n = strlen(name);
    p = strchr(v, ';');

    while (p) {
        p++;

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (strncasecmp(p, name, n) != 0
            || (p[n] != '=' && !(p[n] == '*' && p[n + 1] == '=')))
        {
            /* past this parameter, minding quotes */
            for (q = p; *q && *q != ';'; q++) {
                if (*q == '"') {
                    for (q++; *q && *q != '"'; q++) {
                        if (*q == '\\' && q[1]) {
                            q++;
                        }
                    }

                    if (*q == '\0') {
                        return NULL;
                    }
                }
            }

            p = *q ? q : NULL;
            continue;
        }

        ext = (p[n] == '*');
        p += n + 1 + ext;

        memset(&b, 0, sizeof(orbit_mb_t));

        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) {
                    p++;
                }

                orbit_mb_addc(&b, *p);
            }

        } else {
            e = p + strcspn(p, "; \t");
            orbit_mb_add(&b, p, e - p);
        }

        r = orbit_mb_take(&b);

        if (r == NULL || !ext) {
            if (r && strstr(r, "=?")) {
                cs = orbit_mime_decode_words(r, strlen(r));
                free(r);
                return cs;
            }

            return r;
        }

        /* charset'language'percent-encoded */

        q = strchr(r, '\'');
        e = q ? strchr(q + 1, '\'') : NULL;

        if (e == NULL) {
            return r;
        }

        cs = strndup(r, q - r);
        memset(&raw, 0, sizeof(orbit_mb_t));

        for (p = e + 1; *p; p++) {
            hi = (*p == '%' && p[1]) ? orbit_mime_hex((unsigned char) p[1])
                                     : -1;
            lo = (hi >= 0 && p[2]) ? orbit_mime_hex((unsigned char) p[2])
                                   : -1;

            if (lo >= 0) {
                orbit_mb_addc(&raw, (char) (hi << 4 | lo));
                p += 2;

            } else {
                orbit_mb_addc(&raw, *p);
            }
        }

        memset(&b, 0, sizeof(orbit_mb_t));
        k = raw.len;
        orbit_mb_charset(&b, cs, (const unsigned char *) raw.p, k,
                         ORBIT_MB_HEADER);
        free(raw.p);
        free(cs);
        free(r);

        return orbit_mb_take(&b);
    }

    return NULL;
}


/* a part's body, transfer-decoded (bytes, not yet UTF-8) */

static void
orbit_mime_decode(orbit_mb_t *b, const char *body, const char *end,
    const char *cte)
{
    while (cte && (*cte == ' ' || *cte == '\t')) {
        cte++;
    }

    if (cte && strncasecmp(cte, "base64", 6) == 0) {
        orbit_mime_b64_decode(b, body, end - body);

    } else if (cte && strncasecmp(cte, "quoted-printable", 16) == 0) {
        orbit_mime_qp_decode(b, body, end - body, 0);

    } else {
        orbit_mb_add(b, body, end - body);
    }
}


static void
orbit_mime_part(orbit_mime_walk_t *w, const char *p, const char *end,
    int depth, orbit_mime_hdrs_t *h)
{
    char  *type, *boundary;

    if (w->err || ++w->parts > ORBIT_MIME_PARTS) {
        return;
    }

    type = h->ctype ? orbit_mime_type(h->ctype) : NULL;

    if (type && strncmp(type, "multipart/", 10) == 0) {
        boundary = orbit_mime_param(h->ctype, "boundary");

        if (boundary && boundary[0] && strlen(boundary) <= 200
            && depth < ORBIT_MIME_DEPTH)
        {
            orbit_mime_multipart(w, p, end, boundary, depth + 1);
            free(boundary);
            free(type);
            return;
        }

        free(boundary);
    }

    orbit_mime_leaf(w, p, end, type ? type : "text/plain", h);
    free(type);
}


static void
orbit_mime_multipart(orbit_mime_walk_t *w, const char *body,
    const char *end, const char *boundary, int depth)
{
    size_t              dlen;
    const char         *p, *eol, *start, *stop;
    orbit_mime_hdrs_t   h;

    dlen = strlen(boundary);
    start = NULL;
    p = body;

    while (p < end && !w->err) {
        eol = orbit_mime_eol(p, end);

        if ((size_t) (eol - p) >= dlen + 2 && p[0] == '-' && p[1] == '-'
            && memcmp(p + 2, boundary, dlen) == 0)
        {
            if (start) {
                /* the line end before the delimiter is the delimiter's */
                stop = p;

                if (stop > start && stop[-1] == '\n') {
                    stop--;
                }

                if (stop > start && stop[-1] == '\r') {
                    stop--;
                }

                body = orbit_mime_headers(start, stop, &h);
                orbit_mime_part(w, body, stop, depth, &h);
                orbit_mime_hdrs_free(&h);
            }

            if ((size_t) (eol - p) >= dlen + 4 && p[dlen + 2] == '-'
                && p[dlen + 3] == '-')
            {
                return;                     /* the close delimiter */
            }

            start = (eol < end) ? eol + 1 : end;
        }

        p = (eol < end) ? eol + 1 : end;
    }

    if (start && start < end && !w->err) {
        /* no close delimiter: the last part runs to the end */
        body = orbit_mime_headers(start, end, &h);
        orbit_mime_part(w, body, end, depth, &h);
        orbit_mime_hdrs_free(&h);
    }
}


static void
orbit_mime_leaf(orbit_mime_walk_t *w, const char *body, const char *end,
    const char *type, orbit_mime_hdrs_t *h)
{
    int                attachment;
    char              *name, *cs;
    orbit_mb_t         raw, b;
    orbit_mime_t      *m;
    orbit_mime_att_t  *a;

    m = w->m;

    attachment = (h->disposition
                  && strncasecmp(h->disposition + strspn(h->disposition,
                                                         " \t"),
                                 "attachment", 10) == 0);

    name = h->disposition ? orbit_mime_param(h->disposition, "filename")
                          : NULL;
    if (name == NULL && h->ctype) {
        name = orbit_mime_param(h->ctype, "name");
    }

    memset(&raw, 0, sizeof(orbit_mb_t));
    orbit_mime_decode(&raw, body, end, h->cte);

    if (raw.err) {
        w->err = 1;
        free(name);
        free(raw.p);
        return;
    }

    if (!attachment
        && ((strcmp(type, "text/plain") == 0 && m->text == NULL)
            || (strcmp(type, "text/html") == 0 && m->html == NULL)))
    {
        cs = h->ctype ? orbit_mime_param(h->ctype, "charset") : NULL;

        memset(&b, 0, sizeof(orbit_mb_t));
        orbit_mb_charset(&b, cs, (const unsigned char *) raw.p,
                         raw.len < ORBIT_MIME_TEXT_MAX ? raw.len
                                                       : ORBIT_MIME_TEXT_MAX,
                         ORBIT_MB_TEXT);
        free(cs);

        if (type[5] == 'p') {
            m->text = orbit_mb_take(&b);

            if (m->text == NULL) {
                w->err = 1;
            }

        } else {
            m->html = orbit_mb_take(&b);

            if (m->html == NULL) {
                w->err = 1;
            }
        }

        free(name);
        free(raw.p);
        return;
    }

    /* anything else is listed as an attachment */

    if (m->natts == w->atts_cap) {
        a = realloc(m->atts, (w->atts_cap + 4) * sizeof(orbit_mime_att_t));
        if (a == NULL) {
            w->err = 1;
            free(name);
            free(raw.p);
            return;
        }

        m->atts = a;
        w->atts_cap += 4;
    }

    a = &m->atts[m->natts];
    a->name = name ? name : strdup("");
    a->type = strdup(type);
    a->size = raw.len;

    free(raw.p);

    if (a->name == NULL || a->type == NULL) {
        free(a->name);
        free(a->type);
        w->err = 1;
        return;
    }

    m->natts++;
}


/* "Name <addr>", "addr (Name)", "addr": the first address of From */

static void
orbit_mime_from(orbit_mime_t *m, const char *v)
{
    char        *s;
    size_t       i;
    orbit_mb_t   name, addr;
    const char  *lt, *gt, *p, *e;

    memset(&name, 0, sizeof(orbit_mb_t));
    memset(&addr, 0, sizeof(orbit_mb_t));

    lt = strchr(v, '<');
    gt = lt ? strchr(lt, '>') : NULL;

    if (lt && gt) {
        orbit_mb_add(&addr, lt + 1, gt - lt - 1);

        /* the display name, unquoted; encoded words decoded below */

        for (p = v; p < lt; p++) {
            if (*p == '"') {
                continue;
            }

            if (*p == '\\' && p + 1 < lt) {
                p++;
            }

            orbit_mb_addc(&name, *p);
        }

    } else {
        p = v + strspn(v, " \t");
        e = p + strcspn(p, " \t(,");
        orbit_mb_add(&addr, p, e - p);

        p = strchr(e, '(');
        e = p ? strchr(p, ')') : NULL;

        if (p && e) {
            orbit_mb_add(&name, p + 1, e - p - 1);
        }
    }

    orbit_mb_add(&name, "", 0);
    orbit_mb_add(&addr, "", 0);

    if (addr.p) {
        /* trimmed and lowercased */
        s = addr.p + strspn(addr.p, " \t");

        for (i = 0; s[i]; i++) {
            if (s[i] >= 'A' && s[i] <= 'Z') {
                s[i] |= 0x20;
            }
        }

        while (i && (s[i - 1] == ' ' || s[i - 1] == '\t')) {
            s[--i] = '\0';
        }

        if (i && strchr(s, '@') && i <= 320) {
            m->from_addr = strdup(s);
        }
    }

    if (name.p) {
        s = orbit_mime_decode_words(name.p, name.len);

        if (s) {
            /* trimmed */
            p = s + strspn(s, " \t");
            i = strlen(p);

            while (i && (p[i - 1] == ' ' || p[i - 1] == '\t')) {
                i--;
            }

            m->from_name = strndup(p, i);
            free(s);
        }
    }

    free(name.p);
    free(addr.p);
}


/* the "<...>" ids of v, space separated: the first, or the last max */

static char *
orbit_mime_ids(const char *v, size_t max, int first)
{
    size_t       n, k, skip;
    orbit_mb_t   b;
    const char  *p, *e;

    n = 0;

    for (p = strchr(v, '<'); p; p = strchr(e, '<')) {
        e = strchr(p, '>');
        if (e == NULL) {
            break;
        }

        e++;

        if (orbit_mime_id_ok(p, e - p)) {
            n++;
        }
    }

    skip = (n > max) ? n - max : 0;
    memset(&b, 0, sizeof(orbit_mb_t));
    k = 0;

    for (p = strchr(v, '<'); p; p = strchr(e, '<')) {
        e = strchr(p, '>');
        if (e == NULL) {
            break;
        }

        e++;

        if (!orbit_mime_id_ok(p, e - p) || k++ < skip) {
            continue;
        }

        if (b.len) {
            orbit_mb_addc(&b, ' ');
        }

        orbit_mb_add(&b, p, e - p);

        if (first) {
            break;
        }
    }

    if (b.len == 0) {
        free(b.p);
        return NULL;
    }

    return orbit_mb_take(&b);
}


/* RFC 5322's date: [Day,] DD Mon YYYY HH:MM[:SS] +ZZZZ; 0 if not */

static time_t
orbit_mime_date(const char *v)
{
    int          day, year, hh, mm, ss, zone, n, i;
    char         mon[4], tz[8];
    time_t       t;
    struct tm    tm;
    const char  *p;

    static const char  months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    p = strchr(v, ',');
    p = p ? p + 1 : v;

    ss = 0;
    tz[0] = '\0';
    n = sscanf(p, "%d %3s %d %d:%d:%d %7s", &day, mon, &year, &hh, &mm, &ss,
               tz);

    if (n < 5) {
        return 0;
    }

    if (n == 5) {
        n = sscanf(p, "%d %3s %d %d:%d %7s", &day, mon, &year, &hh, &mm, tz);
        ss = 0;
    }

    for (i = 0; i < 12; i++) {
        if (strncasecmp(mon, months + 3 * i, 3) == 0) {
            break;
        }
    }

    if (i == 12 || day < 1 || day > 31 || year < 1970 || year > 9999
        || hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 60)
    {
        return 0;
    }

    memset(&tm, 0, sizeof(struct tm));
    tm.tm_mday = day;
    tm.tm_mon = i;
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;

    t = timegm(&tm);
    if (t == (time_t) -1) {
        return 0;
    }

    if ((tz[0] == '+' || tz[0] == '-') && strlen(tz) >= 5
        && strspn(tz + 1, "0123456789") >= 4)
    {
        zone = ((tz[1] - '0') * 10 + (tz[2] - '0')) * 3600
               + ((tz[3] - '0') * 10 + (tz[4] - '0')) * 60;
        t += (tz[0] == '+') ? -zone : zone;
    }

    return t;
}


int
orbit_mime_parse(const char *data, size_t len, orbit_mime_t *m)
{
    char               *s;
    orbit_mb_t          b;
    const char         *body, *end;
    orbit_mime_hdrs_t   h;
    orbit_mime_walk_t   w;

    memset(m, 0, sizeof(orbit_mime_t));
    memset(&w, 0, sizeof(orbit_mime_walk_t));
    w.m = m;

    end = data + len;
    body = orbit_mime_headers(data, end, &h);

    if (h.subject) {
        m->subject = orbit_mime_decode_words(h.subject, strlen(h.subject));

    } else {
        m->subject = strdup("");
    }

    if (h.from) {
        orbit_mime_from(m, h.from);
    }

    if (m->from_name == NULL) {
        m->from_name = strdup("");
    }

    m->to = h.to ? orbit_mime_decode_words(h.to, strlen(h.to)) : NULL;
    m->cc = h.cc ? orbit_mime_decode_words(h.cc, strlen(h.cc)) : NULL;
    m->message_id = h.message_id ? orbit_mime_ids(h.message_id, 1, 1)
                                 : NULL;
    m->in_reply_to = h.in_reply_to ? orbit_mime_ids(h.in_reply_to, 1, 1)
                                   : NULL;
    m->references = h.references
                    ? orbit_mime_ids(h.references, ORBIT_MIME_REFS, 0)
                    : NULL;
    m->date = h.date ? orbit_mime_date(h.date) : 0;

    if (m->subject == NULL || m->from_name == NULL || (h.to && !m->to)
        || (h.cc && !m->cc))
    {
        w.err = 1;
    }

    if (!w.err) {
        orbit_mime_part(&w, body, end, 0, &h);
    }

    orbit_mime_hdrs_free(&h);

    /* no text/plain: the HTML's text */

    if (!w.err && m->text == NULL) {
        memset(&b, 0, sizeof(orbit_mb_t));
        orbit_mb_add(&b, "", 0);

        if (m->html) {
            orbit_mime_html_strip(&b, m->html, strlen(m->html));
        }

        m->text = orbit_mb_take(&b);

        if (m->text == NULL) {
            w.err = 1;
        }
    }

    if (!w.err) {
        /* no trailing blank lines */
        s = m->text;
        len = strlen(s);

        while (len && (s[len - 1] == '\n' || s[len - 1] == ' '
                       || s[len - 1] == '\t'))
        {
            s[--len] = '\0';
        }
    }

    if (w.err) {
        orbit_mime_free(m);
        return -1;
    }

    return 0;
}


void
orbit_mime_free(orbit_mime_t *m)
{
    size_t  i;

    free(m->message_id);
    free(m->in_reply_to);
    free(m->references);
    free(m->subject);
    free(m->from_name);
    free(m->from_addr);
    free(m->to);
    free(m->cc);
    free(m->text);
    free(m->html);

    for (i = 0; i < m->natts; i++) {
        free(m->atts[i].name);
        free(m->atts[i].type);
    }

    free(m->atts);
    memset(m, 0, sizeof(orbit_mime_t));
}
