/*
 * OrbitDesk core: RFC 4180 CSV, a streaming parser for the contact import
 * and field escaping for the export.  See orbit_csv.h for the rules.
 */

#include <stdlib.h>
#include <string.h>

#include "orbit_csv.h"


#define ORBIT_CSV_BUF_MIN  1024


/* parser states */
enum {
    orbit_csv_field_start = 0,
    orbit_csv_unquoted,
    orbit_csv_quoted,
    orbit_csv_quote,              /* a quote inside a quoted field */
    orbit_csv_after_quote         /* after the closing quote */
};


static void orbit_csv_limits(orbit_csv_parser_t *p);
static void orbit_csv_run(orbit_csv_parser_t *p, const unsigned char *s,
    size_t len);
static void orbit_csv_append(orbit_csv_parser_t *p, const unsigned char *s,
    size_t n);
static void orbit_csv_delimiter(orbit_csv_parser_t *p, unsigned char ch);
static void orbit_csv_end_field(orbit_csv_parser_t *p);
static void orbit_csv_end_record(orbit_csv_parser_t *p);
static void orbit_csv_fail(orbit_csv_parser_t *p, orbit_csv_err_e err,
    size_t col);
static int orbit_csv_utf8_valid(const unsigned char *s, size_t len);
static int orbit_csv_guard(const char *src, size_t len, unsigned flags);
static int orbit_csv_needs_quotes(const char *src, size_t len,
    unsigned flags);


static const unsigned char  orbit_csv_bom[3] = { 0xef, 0xbb, 0xbf };

static const char  *orbit_csv_errors[] = {
    "no error",
    "quote inside an unquoted field",
    "unexpected character after a closing quote",
    "unterminated quoted field",
    "field too long",
    "too many fields",
    "record too long",
    "invalid UTF-8"
};


void
orbit_csv_init(orbit_csv_parser_t *p, orbit_csv_row_pt handler, void *data)
{
    memset(p, 0, sizeof(orbit_csv_parser_t));

    p->handler = handler;
    p->data = data;
    p->max_field = ORBIT_CSV_MAX_FIELD;
    p->max_fields = ORBIT_CSV_MAX_FIELDS;
    p->max_record = ORBIT_CSV_MAX_RECORD;
    p->state = orbit_csv_field_start;
}


void
orbit_csv_free(orbit_csv_parser_t *p)
{
    free(p->buf);
    free(p->fields);

    p->buf = NULL;
    p->fields = NULL;
    p->buf_size = 0;
    p->fields_size = 0;
}


orbit_csv_rc_e
orbit_csv_feed(orbit_csv_parser_t *p, const char *data, size_t len)
{
    const unsigned char  *s;

    s = (const unsigned char *) data;

    orbit_csv_limits(p);

    /*
     * The BOM may come split over chunks: the bytes that match so far are
     * held back (they are the constant orbit_csv_bom) and parsed as data
     * if the input turns out not to start with a BOM.
     */

    while (!p->bom_done && len) {
        if (*s != orbit_csv_bom[p->bom]) {
            p->bom_done = 1;
            orbit_csv_run(p, orbit_csv_bom, p->bom);
            break;
        }

        s++;
        len--;

        if (++p->bom == 3) {
            p->bom_done = 1;
            p->offset = 3;
        }
    }

    orbit_csv_run(p, s, len);

    return p->rc;
}


orbit_csv_rc_e
orbit_csv_finish(orbit_csv_parser_t *p)
{
    orbit_csv_limits(p);

    if (!p->bom_done) {
        p->bom_done = 1;
        orbit_csv_run(p, orbit_csv_bom, p->bom);
    }

    if (p->rc != ORBIT_CSV_OK || !p->in_record) {
        return p->rc;
    }

    if (p->state == orbit_csv_quoted) {
        /*
         * This explains everything that followed the opening quote being
         * swallowed, so it wins over an earlier error of the record.
         */
        p->error = ORBIT_CSV_ERR_UNTERMINATED;
        p->error_col = p->col + 1;
    }

    orbit_csv_end_record(p);

    return p->rc;
}


const char *
orbit_csv_strerror(orbit_csv_err_e err)
{
    if ((size_t) err >= sizeof(orbit_csv_errors) / sizeof(char *)) {
        return "unknown error";
    }

    return orbit_csv_errors[err];
}


/* a limit of 0 is the default */

static void
orbit_csv_limits(orbit_csv_parser_t *p)
{
    if (p->max_field == 0) {
        p->max_field = ORBIT_CSV_MAX_FIELD;
    }

    if (p->max_fields == 0) {
        p->max_fields = ORBIT_CSV_MAX_FIELDS;
    }

    if (p->max_record == 0) {
        p->max_record = ORBIT_CSV_MAX_RECORD;
    }
}


static void
orbit_csv_run(orbit_csv_parser_t *p, const unsigned char *s, size_t len)
{
    unsigned char         ch;
    const unsigned char  *pos, *end, *q;

    pos = s;
    end = s + len;

    while (pos < end && p->rc == ORBIT_CSV_OK) {
        ch = *pos;

        if (p->cr) {
            p->cr = 0;

            if (ch == '\n') {
                pos++;
                continue;
            }
        }

        if (!p->in_record) {
            p->in_record = 1;
            p->record++;
            p->record_offset = p->offset + (uint64_t) (pos - s);
        }

        switch (p->state) {

        case orbit_csv_field_start:
            if (ch == '"') {
                p->quoted = 1;
                p->state = orbit_csv_quoted;
                pos++;
                break;
            }

            if ((p->flags & ORBIT_CSV_TRIM) && (ch == ' ' || ch == '\t')) {
                pos++;
                break;
            }

            p->state = orbit_csv_unquoted;

            /* fall through */

        case orbit_csv_unquoted:
            for (q = pos; q < end; q++) {
                if (*q == ',' || *q == '"' || *q == '\n' || *q == '\r') {
                    break;
                }
            }

            if (q > pos) {
                orbit_csv_append(p, pos, (size_t) (q - pos));
                pos = q;
                break;
            }

            if (ch == '"') {
                /* after the error the quote is data, and is dropped */
                orbit_csv_fail(p, ORBIT_CSV_ERR_QUOTE, p->col + 1);
                pos++;
                break;
            }

            orbit_csv_delimiter(p, ch);
            pos++;
            break;

        case orbit_csv_quoted:
            q = memchr(pos, '"', (size_t) (end - pos));
            if (q == NULL) {
                q = end;
            }

            if (q > pos) {
                orbit_csv_append(p, pos, (size_t) (q - pos));
                pos = q;
                break;
            }

            p->state = orbit_csv_quote;
            pos++;
            break;

        case orbit_csv_quote:
            if (ch == '"') {
                orbit_csv_append(p, pos, 1);
                p->state = orbit_csv_quoted;
                pos++;
                break;
            }

            p->state = orbit_csv_after_quote;

            /* fall through */

        case orbit_csv_after_quote:
            if (ch == ',' || ch == '\n' || ch == '\r') {
                orbit_csv_delimiter(p, ch);
                pos++;
                break;
            }

            if ((p->flags & ORBIT_CSV_TRIM) && (ch == ' ' || ch == '\t')) {
                pos++;
                break;
            }

            /* the rest of the field is read as unquoted and dropped */
            orbit_csv_fail(p, ORBIT_CSV_ERR_AFTER_QUOTE, p->col + 1);
            p->state = orbit_csv_unquoted;
            pos++;
            break;
        }
    }

    p->offset += (uint64_t) (pos - s);
}


static void
orbit_csv_append(orbit_csv_parser_t *p, const unsigned char *s, size_t n)
{
    char    *buf;
    size_t   size, field_room, record_room;

    if (p->error != ORBIT_CSV_ERR_NONE) {
        return;
    }

    field_room = p->max_field - (p->buf_len - p->field_start);
    record_room = p->max_record - p->buf_len;

    if (n > field_room || n > record_room) {
        /* the limit the bytes reach first, however the input is cut */
        orbit_csv_fail(p, field_room <= record_room ? ORBIT_CSV_ERR_FIELD_LEN
                                                    : ORBIT_CSV_ERR_RECORD_LEN,
                       p->col + 1);
        return;
    }

    if (n > p->buf_size - p->buf_len) {
        size = p->buf_size ? p->buf_size : ORBIT_CSV_BUF_MIN;

        while (size - p->buf_len < n) {
            size *= 2;
        }

        if (size > p->max_record) {
            size = p->max_record;
        }

        buf = realloc(p->buf, size);
        if (buf == NULL) {
            p->rc = ORBIT_CSV_NOMEM;
            return;
        }

        p->buf = buf;
        p->buf_size = size;
    }

    memcpy(p->buf + p->buf_len, s, n);
    p->buf_len += n;
}


/* ch is ',', CR or LF outside quotes */

static void
orbit_csv_delimiter(orbit_csv_parser_t *p, unsigned char ch)
{
    if (ch != ',') {
        orbit_csv_end_record(p);
        p->cr = (ch == '\r');
        return;
    }

    orbit_csv_end_field(p);

    p->col++;
    p->state = orbit_csv_field_start;

    if (p->col == p->max_fields) {
        orbit_csv_fail(p, ORBIT_CSV_ERR_FIELDS, p->col + 1);
    }
}


static void
orbit_csv_end_field(orbit_csv_parser_t *p)
{
    size_t          len, size;
    unsigned char  *f;
    orbit_slice_t  *fields;

    if (p->error != ORBIT_CSV_ERR_NONE) {
        goto done;
    }

    /* nothing may be allocated yet: no arithmetic on NULL */
    len = p->buf_len - p->field_start;
    f = len ? (unsigned char *) p->buf + p->field_start : NULL;

    if ((p->flags & ORBIT_CSV_TRIM) && !p->quoted) {
        while (len && (f[len - 1] == ' ' || f[len - 1] == '\t')) {
            len--;
        }

        p->buf_len = p->field_start + len;
    }

    if (!orbit_csv_utf8_valid(f, len)) {
        orbit_csv_fail(p, ORBIT_CSV_ERR_UTF8, p->col + 1);
        goto done;
    }

    if (p->nfields == p->fields_size) {
        size = p->fields_size ? p->fields_size * 2 : 16;

        if (size > p->max_fields) {
            size = p->max_fields;
        }

        fields = realloc(p->fields, size * sizeof(orbit_slice_t));
        if (fields == NULL) {
            p->rc = ORBIT_CSV_NOMEM;
            goto done;
        }

        p->fields = fields;
        p->fields_size = size;
    }

    /* data is set when the record is delivered: buf may still move */
    p->fields[p->nfields].data = NULL;
    p->fields[p->nfields].len = len;
    p->nfields++;

done:

    p->field_start = p->buf_len;
    p->quoted = 0;
}


static void
orbit_csv_end_record(orbit_csv_parser_t *p)
{
    size_t           i, off;
    const char      *base;
    orbit_csv_row_t  row;

    if (p->error == ORBIT_CSV_ERR_NONE && p->col == 0
        && p->buf_len == 0 && !p->quoted)
    {
        /* a blank line */
        goto done;
    }

    if (p->error == ORBIT_CSV_ERR_NONE) {
        orbit_csv_end_field(p);

        if (p->rc != ORBIT_CSV_OK) {
            return;
        }
    }

    /* empty fields may come before anything is allocated: never NULL */
    base = p->buf ? p->buf : "";
    off = 0;

    for (i = 0; i < p->nfields; i++) {
        p->fields[i].data = base + off;
        off += p->fields[i].len;
    }

    row.fields = p->fields;
    row.nfields = p->nfields;
    row.record = p->record;
    row.offset = p->record_offset;
    row.error = p->error;
    row.column = p->error_col;

    if (p->handler(&row, p->data) != 0) {
        p->rc = ORBIT_CSV_STOPPED;
    }

done:

    p->buf_len = 0;
    p->field_start = 0;
    p->nfields = 0;
    p->col = 0;
    p->error = ORBIT_CSV_ERR_NONE;
    p->error_col = 0;
    p->quoted = 0;
    p->in_record = 0;
    p->state = orbit_csv_field_start;
}


/* the first error of a record is the one reported */

static void
orbit_csv_fail(orbit_csv_parser_t *p, orbit_csv_err_e err, size_t col)
{
    if (p->error == ORBIT_CSV_ERR_NONE) {
        p->error = err;
        p->error_col = col;
    }
}


/* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF */

static int
orbit_csv_utf8_valid(const unsigned char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c, lo, hi;

    i = 0;

    while (i < len) {
        c = s[i];

        if (c < 0x80) {
            i++;
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;

            if (c == 0xe0) {
                lo = 0xa0;

            } else if (c == 0xed) {
                hi = 0x9f;
            }

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;

            if (c == 0xf0) {
                lo = 0x90;

            } else if (c == 0xf4) {
                hi = 0x8f;
            }

        } else {
            return 0;
        }

        if (len - i - 1 < n) {
            return 0;
        }

        i++;

        if (s[i] < lo || s[i] > hi) {
            return 0;
        }

        while (n--) {
            if ((s[i] & 0xc0) != 0x80) {
                return 0;
            }

            i++;
        }
    }

    return 1;
}


void
orbit_csv_trim(orbit_slice_t *f)
{
    while (f->len && (f->data[0] == ' ' || f->data[0] == '\t')) {
        f->data++;
        f->len--;
    }

    while (f->len && (f->data[f->len - 1] == ' '
                      || f->data[f->len - 1] == '\t'))
    {
        f->len--;
    }
}


int
orbit_csv_header_index(const orbit_slice_t *header, size_t n,
    const char *name, size_t len)
{
    size_t         i, k;
    unsigned char  a, b;
    orbit_slice_t  f;

    for (i = 0; i < n; i++) {
        f = header[i];
        orbit_csv_trim(&f);

        if (f.len != len) {
            continue;
        }

        for (k = 0; k < len; k++) {
            a = (unsigned char) f.data[k];
            b = (unsigned char) name[k];

            if (a >= 'A' && a <= 'Z') {
                a |= 0x20;
            }

            if (b >= 'A' && b <= 'Z') {
                b |= 0x20;
            }

            if (a != b) {
                break;
            }
        }

        if (k == len) {
            return (int) i;
        }
    }

    return -1;
}


size_t
orbit_csv_escape_len(const char *src, size_t len, unsigned flags)
{
    size_t  n, i;

    n = len + orbit_csv_guard(src, len, flags);

    if (orbit_csv_needs_quotes(src, len, flags)) {
        n += 2;

        for (i = 0; i < len; i++) {
            if (src[i] == '"') {
                n++;
            }
        }
    }

    return n;
}


char *
orbit_csv_escape(char *dst, const char *src, size_t len, unsigned flags)
{
    int     quote;
    size_t  i;

    quote = orbit_csv_needs_quotes(src, len, flags);

    if (quote) {
        *dst++ = '"';
    }

    if (orbit_csv_guard(src, len, flags)) {
        *dst++ = '\'';
    }

    if (!quote) {
        memcpy(dst, src, len);
        return dst + len;
    }

    for (i = 0; i < len; i++) {
        if (src[i] == '"') {
            *dst++ = '"';
        }

        *dst++ = src[i];
    }

    *dst++ = '"';

    return dst;
}


/* 1 when src needs the leading single quote of the formula guard */

static int
orbit_csv_guard(const char *src, size_t len, unsigned flags)
{
    size_t  i;

    if (len == 0 || (flags & ORBIT_CSV_ESC_RAW)) {
        return 0;
    }

    switch (src[0]) {

    case '+':
        if ((flags & ORBIT_CSV_ESC_PHONE) && len > 1) {
            for (i = 1; i < len; i++) {
                if (src[i] < '0' || src[i] > '9') {
                    return 1;
                }
            }

            return 0;
        }

        return 1;

    case '=':
    case '-':
    case '@':
    case '\t':
    case '\r':
        return 1;

    default:
        return 0;
    }
}


static int
orbit_csv_needs_quotes(const char *src, size_t len, unsigned flags)
{
    size_t  i;

    if (flags & ORBIT_CSV_ESC_QUOTE) {
        return 1;
    }

    if (len == 0) {
        return 0;
    }

    if (src[0] == ' ' || src[0] == '\t'
        || src[len - 1] == ' ' || src[len - 1] == '\t')
    {
        return 1;
    }

    /* U+FEFF first in a file would be read back as a BOM and dropped */

    if (len >= 3 && memcmp(src, orbit_csv_bom, 3) == 0) {
        return 1;
    }

    for (i = 0; i < len; i++) {
        if (src[i] == ',' || src[i] == '"' || src[i] == '\n'
            || src[i] == '\r')
        {
            return 1;
        }
    }

    return 0;
}
