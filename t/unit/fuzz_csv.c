/*
 * libFuzzer harness of src/core/orbit_csv.c ("make -C t/unit fuzz", then
 * "../../build/fuzz/fuzz_csv -max_total_time=60").  The first 4 bytes
 * choose the limits, the flags and how the rest is cut into chunks.
 *
 *   - the rows of the input fed whole and fed in random chunks are the
 *     same, and every row keeps the parser's promises (numbers and offsets
 *     growing, limits, UTF-8 checked here by a decoder of its own);
 *   - the input, read as rows of fields split at 0x1e and 0x1f, written
 *     with orbit_csv_escape() and parsed back, gives the same fields (with
 *     the formula guard's quote where it belongs) unless a field is not
 *     UTF-8, and then only that error.
 *
 * A broken promise aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/orbit_csv.h"


typedef struct {
    unsigned char  *data;
    size_t          len;
    size_t          size;
    uint64_t        last_record;
    uint64_t        last_offset;
    uint64_t        input_len;
    size_t          max_field;
    size_t          max_fields;
    size_t          max_record;
} fz_out_t;

typedef struct {
    const unsigned char  *row;        /* the source rows, 0x1e-separated */
    size_t                left;
    unsigned              esc;
    int                   bad;
} fz_rt_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint32_t
fz_rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;

    return *s;
}


static void
fz_add(fz_out_t *o, const void *s, size_t n)
{
    while (o->len + n > o->size) {
        o->size = o->size ? o->size * 2 : 1024;
        o->data = realloc(o->data, o->size);
        if (o->data == NULL) {
            abort();
        }
    }

    if (n) {
        memcpy(o->data + o->len, s, n);
        o->len += n;
    }
}


/* UTF-8 by decoding to code points, apart from the parser's checker */

static int
fz_utf8(const unsigned char *s, size_t len)
{
    size_t    i, k, n;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {
        if (s[i] < 0x80) {
            n = 1;
            continue;
        }

        if ((s[i] & 0xe0) == 0xc0) {
            n = 2;
            cp = s[i] & 0x1f;
            min = 0x80;

        } else if ((s[i] & 0xf0) == 0xe0) {
            n = 3;
            cp = s[i] & 0x0f;
            min = 0x800;

        } else if ((s[i] & 0xf8) == 0xf0) {
            n = 4;
            cp = s[i] & 0x07;
            min = 0x10000;

        } else {
            return 0;
        }

        if (len - i < n) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (s[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


static int
fz_row(const orbit_csv_row_t *row, void *data)
{
    size_t     i, total;
    fz_out_t  *o;

    o = data;

    if (row->record <= o->last_record || row->offset < o->last_offset
        || (o->last_record && row->offset == o->last_offset)
        || row->offset >= o->input_len
        || row->nfields > o->max_fields)
    {
        abort();
    }

    if (row->error != ORBIT_CSV_ERR_NONE
        && (row->column == 0 || row->nfields >= row->column))
    {
        abort();
    }

    if (row->error == ORBIT_CSV_ERR_NONE && row->nfields == 0) {
        abort();
    }

    o->last_record = row->record;
    o->last_offset = row->offset;

    fz_add(o, &row->record, sizeof(row->record));
    fz_add(o, &row->offset, sizeof(row->offset));
    fz_add(o, &row->error, sizeof(row->error));
    fz_add(o, &row->column, sizeof(row->column));
    fz_add(o, &row->nfields, sizeof(row->nfields));

    total = 0;

    for (i = 0; i < row->nfields; i++) {
        if (row->fields[i].data == NULL
            || row->fields[i].len > o->max_field
            || !fz_utf8((const unsigned char *) row->fields[i].data,
                        row->fields[i].len))
        {
            abort();
        }

        total += row->fields[i].len;

        fz_add(o, &row->fields[i].len, sizeof(size_t));
        fz_add(o, row->fields[i].data, row->fields[i].len);
    }

    if (total > o->max_record) {
        abort();
    }

    return 0;
}


static void
fz_parse(const unsigned char *in, size_t len, unsigned flags,
    size_t max_field, size_t max_fields, size_t max_record, uint32_t seed,
    fz_out_t *o)
{
    size_t               from, n;
    orbit_csv_rc_e       rc;
    orbit_csv_parser_t   p;

    memset(o, 0, sizeof(fz_out_t));
    o->input_len = len;

    orbit_csv_init(&p, fz_row, o);
    p.flags = flags;
    p.max_field = max_field;
    p.max_fields = max_fields;
    p.max_record = max_record;

    o->max_field = p.max_field ? p.max_field : ORBIT_CSV_MAX_FIELD;
    o->max_fields = p.max_fields ? p.max_fields : ORBIT_CSV_MAX_FIELDS;
    o->max_record = p.max_record ? p.max_record : ORBIT_CSV_MAX_RECORD;

    for (from = 0; from < len; from += n) {
        n = len - from;

        if (seed) {
            n = 1 + fz_rnd(&seed) % ((seed & 0x100) ? 3 : 40);
            n = n < len - from ? n : len - from;
        }

        rc = orbit_csv_feed(&p, (const char *) in + from, n);
        if (rc != ORBIT_CSV_OK) {
            abort();
        }
    }

    rc = orbit_csv_finish(&p);
    if (rc != ORBIT_CSV_OK) {
        abort();
    }

    orbit_csv_free(&p);
}


static int
fz_guarded(const unsigned char *f, size_t len, unsigned esc)
{
    size_t  i;

    if ((esc & ORBIT_CSV_ESC_RAW) || len == 0
        || memchr("=+-@\t\r", f[0], 6) == NULL)
    {
        return 0;
    }

    if ((esc & ORBIT_CSV_ESC_PHONE) && f[0] == '+' && len > 1) {
        for (i = 1; i < len && f[i] >= '0' && f[i] <= '9'; i++) {
            /* void */
        }

        return i < len;
    }

    return 1;
}


/* the next source field of rt->row: its length, and whether it is last */

static size_t
fz_field(const unsigned char *s, size_t left, int *last)
{
    size_t  n;

    for (n = 0; n < left && s[n] != 0x1e && s[n] != 0x1f; n++) {
        /* void */
    }

    *last = (n == left || s[n] == 0x1e);

    return n;
}


static int
fz_rt_row(const orbit_csv_row_t *row, void *data)
{
    int                    last, utf8;
    size_t                 i, n, g;
    fz_rt_t               *rt;
    const unsigned char   *s;

    rt = data;
    s = rt->row;
    utf8 = 1;

    for (i = 0; ; i++) {
        n = fz_field(s, rt->left, &last);
        utf8 &= fz_utf8(s, n);

        if (row->error == ORBIT_CSV_ERR_NONE) {
            g = fz_guarded(s, n, rt->esc);

            if (i >= row->nfields || row->fields[i].len != n + g
                || (g && row->fields[i].data[0] != '\'')
                || memcmp(row->fields[i].data + g, s, n) != 0)
            {
                abort();
            }
        }

        s += n;
        rt->left -= n;

        if (rt->left) {
            s++;
            rt->left--;
        }

        if (last) {
            break;
        }
    }

    if (row->error == ORBIT_CSV_ERR_NONE ? (!utf8 || i + 1 != row->nfields)
        : (utf8 || row->error != ORBIT_CSV_ERR_UTF8))
    {
        abort();
    }

    rt->row = s;

    return 0;
}


static void
fz_round_trip(const unsigned char *in, size_t len, unsigned esc,
    unsigned flags)
{
    int                   last;
    char                 *out, *end;
    size_t                n, left, nfields;
    unsigned              f;
    fz_rt_t               rt;
    orbit_csv_parser_t    p;
    const unsigned char  *s;

    /* a field: 2n + 3, its separator: 2, the last empty row: 4 */
    out = malloc(7 * len + 16);
    if (out == NULL) {
        abort();
    }

    end = out;
    s = in;
    left = len;
    nfields = 0;

    do {
        n = fz_field(s, left, &last);

        f = esc;

        if (nfields == 0 && last && n == 0) {
            f |= ORBIT_CSV_ESC_QUOTE;
        }

        if (orbit_csv_escape_len((const char *) s, n, f) > 2 * n + 3) {
            abort();
        }

        end = orbit_csv_escape(end, (const char *) s, n, f);

        s += n;
        left -= n;

        if (left) {
            s++;
            left--;
        }

        if (last) {
            *end++ = '\r';
            *end++ = '\n';
            nfields = 0;

        } else {
            *end++ = ',';
            nfields++;
        }

    } while (left);

    if (len && (in[len - 1] == 0x1e || in[len - 1] == 0x1f)) {
        /* the separator announced one more, empty, field */
        if (in[len - 1] == 0x1e || nfields == 0) {
            end = orbit_csv_escape(end, "", 0, ORBIT_CSV_ESC_QUOTE);
        }

        *end++ = '\r';
        *end++ = '\n';
    }

    rt.row = in;
    rt.left = len;
    rt.esc = esc;
    rt.bad = 0;

    orbit_csv_init(&p, fz_rt_row, &rt);
    p.flags = flags;
    p.max_field = len + 8;
    p.max_fields = len + 8;
    p.max_record = 7 * len + 16;

    if (orbit_csv_feed(&p, out, (size_t) (end - out)) != ORBIT_CSV_OK
        || orbit_csv_finish(&p) != ORBIT_CSV_OK
        || rt.left != 0)
    {
        abort();
    }

    orbit_csv_free(&p);
    free(out);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          max_field, max_fields, max_record;
    uint32_t        seed;
    unsigned        flags, esc;
    fz_out_t        whole, cut;
    static size_t   fields[] = { 0, 1, 2, 3, 8 };

    if (size < 4) {
        return 0;
    }

    flags = (data[0] & 1) ? ORBIT_CSV_TRIM : 0;
    esc = (data[0] >> 1) & 3;
    max_field = (data[0] & 0x08) ? 1 + (data[1] & 0x1f) : 0;
    max_fields = fields[(data[1] >> 5) % 5];
    max_record = (data[0] & 0x10) ? 1 + data[2] : 0;
    seed = (uint32_t) data[3] << 8 | data[2] | 0x10000;

    data += 4;
    size -= 4;

    fz_parse(data, size, flags, max_field, max_fields, max_record, 0, &whole);
    fz_parse(data, size, flags, max_field, max_fields, max_record, seed,
             &cut);

    if (whole.len != cut.len
        || (whole.len && memcmp(whole.data, cut.data, whole.len) != 0))
    {
        abort();
    }

    free(whole.data);
    free(cut.data);

    if (size) {
        fz_round_trip(data, size, esc, flags);
    }

    return 0;
}
