/*
 * Unit tests of src/core/orbit_csv.c: the streaming parser (every case is
 * also fed split at every byte, in two and three pieces, and must give the
 * same rows), header lookup, escaping with the formula guard, and a
 * write -> parse round trip of random fields.
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_csv.h"


typedef struct {
    unsigned   flags;
    size_t     max_field;
    size_t     max_fields;
    size_t     max_record;
    size_t     stop_after;          /* rows before the handler stops; 0 */
} cfg_t;

typedef struct {
    char      *data;
    size_t     len;
    size_t     size;
    size_t     rows;
    size_t     stop_after;
} out_t;


static const cfg_t  dflt;

static const char  *err_names[] = {
    "", "quote", "after", "unterminated", "field_len", "fields",
    "record_len", "utf8"
};


static void
out_add(out_t *o, const char *s, size_t n)
{
    while (o->len + n + 1 > o->size) {
        o->size = o->size ? o->size * 2 : 256;
        o->data = realloc(o->data, o->size);
        if (o->data == NULL) {
            abort();
        }
    }

    memcpy(o->data + o->len, s, n);
    o->len += n;
    o->data[o->len] = '\0';
}


/*
 * A row as text: "record@offset[f1][f2];", with "!error:column" after the
 * offset for a bad row.
 */

static int
transcribe(const orbit_csv_row_t *row, void *data)
{
    char    num[80];
    size_t  i;
    out_t  *o;

    o = data;

    snprintf(num, sizeof(num), "%llu@%llu", (unsigned long long) row->record,
             (unsigned long long) row->offset);
    out_add(o, num, strlen(num));

    if (row->error) {
        snprintf(num, sizeof(num), "!%s:%zu", err_names[row->error],
                 row->column);
        out_add(o, num, strlen(num));
    }

    for (i = 0; i < row->nfields; i++) {
        out_add(o, "[", 1);
        out_add(o, row->fields[i].data, row->fields[i].len);
        out_add(o, "]", 1);
    }

    out_add(o, ";", 1);

    o->rows++;

    return o->stop_after && o->rows == o->stop_after;
}


static void
setup(orbit_csv_parser_t *p, const cfg_t *cfg, orbit_csv_row_pt h,
    void *data)
{
    orbit_csv_init(p, h, data);

    p->flags = cfg->flags;

    if (cfg->max_field) {
        p->max_field = cfg->max_field;
    }

    if (cfg->max_fields) {
        p->max_fields = cfg->max_fields;
    }

    if (cfg->max_record) {
        p->max_record = cfg->max_record;
    }
}


/* the transcript of in fed in pieces ending at cuts[]; free it */

static char *
parse_cuts(const cfg_t *cfg, const char *in, size_t len, const size_t *cuts,
    size_t ncuts)
{
    size_t               i, from;
    out_t                o;
    orbit_csv_rc_e       rc;
    orbit_csv_parser_t   p;
    static const char   *rcs[] = { "", "|stopped", "|nomem" };

    memset(&o, 0, sizeof(out_t));
    o.stop_after = cfg->stop_after;
    out_add(&o, "", 0);

    setup(&p, cfg, transcribe, &o);

    from = 0;
    rc = ORBIT_CSV_OK;

    for (i = 0; i < ncuts && rc == ORBIT_CSV_OK; i++) {
        rc = orbit_csv_feed(&p, in + from, cuts[i] - from);
        from = cuts[i];
    }

    if (rc == ORBIT_CSV_OK) {
        rc = orbit_csv_feed(&p, in + from, len - from);
    }

    if (rc == ORBIT_CSV_OK) {
        rc = orbit_csv_finish(&p);
    }

    orbit_csv_free(&p);

    out_add(&o, rcs[rc], strlen(rcs[rc]));

    return o.data;
}


static char *
parse(const cfg_t *cfg, const char *in, size_t len)
{
    return parse_cuts(cfg, in, len, NULL, 0);
}


/* 1 when every way of cutting in gives want */

static int
same_split(const cfg_t *cfg, const char *in, size_t len, const char *want)
{
    int      ok;
    char    *got;
    size_t   i, j, cuts[2], *all;

    ok = 1;

    all = malloc((len + 1) * sizeof(size_t));

    for (i = 0; i < len; i++) {
        all[i] = i;
    }

    got = parse_cuts(cfg, in, len, all, len);
    ok &= strcmp(got, want) == 0;
    free(got);
    free(all);

    for (i = 0; i <= len && ok; i++) {
        cuts[0] = i;
        got = parse_cuts(cfg, in, len, cuts, 1);

        if (strcmp(got, want) != 0) {
            printf("#   split at %zu: '%s'\n", i, got);
            ok = 0;
        }

        free(got);

        for (j = i; j <= len && len <= 64 && ok; j++) {
            cuts[1] = j;
            got = parse_cuts(cfg, in, len, cuts, 2);

            if (strcmp(got, want) != 0) {
                printf("#   split at %zu, %zu: '%s'\n", i, j, got);
                ok = 0;
            }

            free(got);
        }
    }

    return ok;
}


static void
expect(const cfg_t *cfg, const char *in, size_t len, const char *want,
    const char *name)
{
    char   *got, split[200];

    got = parse(cfg, in, len);
    UNIT_STR(got, strlen(got), want, name);
    free(got);

    snprintf(split, sizeof(split), "%s (fed in any pieces)", name);
    UNIT_OK(same_split(cfg, in, len, want), split);
}


#define EXPECT(cfg, in, want, name)                                          \
    expect(cfg, in, sizeof(in) - 1, want, name)


static void
test_basic(void)
{
    EXPECT(&dflt, "a,b,c\n1,2,3\n", "1@0[a][b][c];2@6[1][2][3];",
           "parse: LF records");
    EXPECT(&dflt, "a,b\r\n1,2\r\n", "1@0[a][b];2@5[1][2];",
           "parse: CRLF records");
    EXPECT(&dflt, "a,b\r1,2\r", "1@0[a][b];2@4[1][2];",
           "parse: lone CR records");
    EXPECT(&dflt, "a\r\nb\nc\rd", "1@0[a];2@3[b];3@5[c];4@7[d];",
           "parse: mixed line ends, no final line end");
    EXPECT(&dflt, "", "", "parse: empty input");
    EXPECT(&dflt, "x", "1@0[x];", "parse: one byte");
}


static void
test_bom(void)
{
    EXPECT(&dflt, "\xef\xbb\xbfphone,name\n+1,A\n",
           "1@3[phone][name];2@14[+1][A];", "bom: skipped, offsets count it");
    EXPECT(&dflt, "\xef\xbb\xbf", "", "bom: alone");
    EXPECT(&dflt, "a\n\xef\xbb\xbf" "b\n", "1@0[a];2@2[\xef\xbb\xbf" "b];",
           "bom: not at the start is data (U+FEFF)");
    EXPECT(&dflt, "\xef\xbb" "a,b\n", "1@0!utf8:1;",
           "bom: a partial BOM is data");
    EXPECT(&dflt, "\xef", "1@0!utf8:1;", "bom: a lone first byte at EOF");
    EXPECT(&dflt, "\xef\xbb\xbf\xef\xbb\xbf" "a",
           "1@3[\xef\xbb\xbf" "a];", "bom: only the first is skipped");
}


static void
test_empty(void)
{
    cfg_t  trim = { ORBIT_CSV_TRIM, 0, 0, 0, 0 };

    EXPECT(&dflt, ",,\n", "1@0[][][];", "empty: three empty fields");
    EXPECT(&dflt, "a,\n,b", "1@0[a][];2@3[][b];",
           "empty: empty first and last fields");
    EXPECT(&dflt, "a\n\nb\r\n\r\nc\r\rd\n",
           "1@0[a];3@3[b];5@8[c];7@11[d];",
           "empty: blank lines skipped but numbered");
    EXPECT(&dflt, "\n\r\n\r", "", "empty: only blank lines");
    EXPECT(&dflt, "a\n\"\"\nb\n", "1@0[a];2@2[];3@5[b];",
           "empty: a line of \"\" is one empty field");
    EXPECT(&dflt, "a\n  \nb", "1@0[a];2@2[  ];3@5[b];",
           "empty: spaces are a field without trim");
    EXPECT(&trim, "a\n \t \nb", "1@0[a];3@6[b];",
           "empty: spaces are a blank line with trim");
    EXPECT(&dflt, "\"\",\"\"\n", "1@0[][];", "empty: quoted empty fields");
}


static void
test_quoted(void)
{
    EXPECT(&dflt, "\"a,b\",\"c\"\"d\"\"\",\"\"\"\"\n",
           "1@0[a,b][c\"d\"][\"];", "quoted: comma, escaped quotes");
    EXPECT(&dflt, "\"x\ny\",z\nw\n", "1@0[x\ny][z];2@8[w];",
           "quoted: LF inside; records counted, not lines");
    EXPECT(&dflt, "\"x\r\ny\r\",z\r\nw", "1@0[x\r\ny\r][z];2@11[w];",
           "quoted: CRLF and CR inside are kept");
    EXPECT(&dflt, "a,\"b\"", "1@0[a][b];", "quoted: last field at EOF");
    EXPECT(&dflt, "\"\xe2\x82\xac 5\",\"\xf0\x9f\x98\x80\"\n",
           "1@0[\xe2\x82\xac 5][\xf0\x9f\x98\x80];", "quoted: UTF-8");
}


static void
test_trim(void)
{
    cfg_t  trim = { ORBIT_CSV_TRIM, 0, 0, 0, 0 };

    EXPECT(&trim, " a , \"b c\" ,\tc\t\n", "1@0[a][b c][c];",
           "trim: around unquoted and quoted fields");
    EXPECT(&trim, "\" a \",  ,x", "1@0[ a ][][x];",
           "trim: spaces inside quotes kept");
    EXPECT(&trim, " \"x\"  y,1\nok", "1@0!after:1;2@10[ok];",
           "trim: text after the closing quote and spaces");
    EXPECT(&dflt, " a , b ", "1@0[ a ][ b ];", "trim: off keeps spaces");
    EXPECT(&dflt, " \"x\",1\nok", "1@0!quote:1;2@7[ok];",
           "trim: off, a quote after a space is in an unquoted field");
    EXPECT(&dflt, "\"x\" ,1\nok", "1@0!after:1;2@7[ok];",
           "trim: off, a space after the closing quote");
}


static void
test_errors(void)
{
    cfg_t  f4 = { 0, 4, 0, 0, 0 };
    cfg_t  n3 = { 0, 0, 3, 0, 0 };
    cfg_t  r8 = { 0, 0, 0, 8, 0 };
    cfg_t  f3r5 = { 0, 3, 0, 5, 0 };
    cfg_t  f5r3 = { 0, 5, 0, 3, 0 };

    EXPECT(&dflt, "ab\"c,d\nok\n", "1@0!quote:1;2@7[ok];",
           "error: quote inside an unquoted field, row 1 column 1");
    EXPECT(&dflt, "x,5'10\" tall,y\nok", "1@0!quote:2[x];2@15[ok];",
           "error: a stray quote keeps the fields before it");
    EXPECT(&dflt, "\"a\"b,c\nok\n", "1@0!after:1;2@7[ok];",
           "error: garbage after a closing quote");
    EXPECT(&dflt, "x,\"a\"b,\"multi\nline\"\nok\n",
           "1@0!after:2[x];2@20[ok];",
           "error: the record is read to its real end (quotes honoured)");
    EXPECT(&dflt, "a\n\"bc\nd", "1@0[a];2@2!unterminated:1;",
           "error: unterminated quoted field at EOF");
    EXPECT(&dflt, "a,\"b\"x,\"c", "1@0!unterminated:3[a];",
           "error: unterminated wins over an earlier error");
    EXPECT(&dflt, "a,\"\"\"", "1@0!unterminated:2[a];",
           "error: unterminated after an escaped quote");

    EXPECT(&f4, "abcd,abcde\nok\n", "1@0!field_len:2[abcd];2@11[ok];",
           "error: field over max_field");
    EXPECT(&f4, "\"ab\"\"c\",\"ab\ncdef\"\nok",
           "1@0!field_len:2[ab\"c];2@18[ok];",
           "error: quoted field over max_field, resync after its quotes");
    EXPECT(&n3, "a,b,c\na,b,c,d\nok\n", "1@0[a][b][c];2@6!fields:4[a][b][c];"
           "3@14[ok];", "error: too many fields");
    EXPECT(&n3, ",,,\n", "1@0!fields:4[][][];",
           "error: too many empty fields");
    EXPECT(&r8, "abc,def,ghi\nabc,defgh\nok",
           "1@0!record_len:3[abc][def];2@12[abc][defgh];3@22[ok];",
           "error: record over max_record");
    EXPECT(&f3r5, "abcdefgh\nab,cdefgh\nabc,de,f\nab,cd",
           "1@0!field_len:1;2@9!field_len:2[ab];3@19!record_len:3[abc][de];"
           "4@28[ab][cd];",
           "error: the limit reached first wins, however the input is cut");
    EXPECT(&f5r3, "abcdefgh", "1@0!record_len:1;",
           "error: record limit first, in a run that passes both");

    EXPECT(&dflt, "ok,\xff\nok", "1@0!utf8:2[ok];2@5[ok];",
           "error: invalid UTF-8 byte, column 2");
    EXPECT(&dflt, "\xc0\x80\n\xed\xa0\x80\n\xf4\x90\x80\x80\n\xe2\x82\n"
           "\xe2\x82\xac\n\xf0\x9f\x98\x80\n\xc3\xa9\xe2\x82\n\x80\n"
           "\xf8\x88\x80\x80\x80\n",
           "1@0!utf8:1;2@3!utf8:1;3@7!utf8:1;4@12!utf8:1;5@15[\xe2\x82\xac];"
           "6@19[\xf0\x9f\x98\x80];7@24!utf8:1;8@29!utf8:1;9@31!utf8:1;",
           "error: overlong, surrogate, > U+10FFFF, truncated, "
           "continuation, 5-byte");
    EXPECT(&dflt, "\"\xe9t\xe9\"\n", "1@0!utf8:1;",
           "error: Latin-1 in a quoted field");
    EXPECT(&dflt, "\xe0\x80\xaf\n\xf0\x80\x80\xaf\n\xe0\xa0\x80",
           "1@0!utf8:1;2@4!utf8:1;3@9[\xe0\xa0\x80];",
           "error: 3- and 4-byte overlong forms; U+0800 is fine");
}


static void
test_tricky(void)
{
    char         *whole;
    const char   *in;
    cfg_t         trim = { ORBIT_CSV_TRIM, 16, 4, 0, 0 };

    /* everything at once: each case of the state machine at a cut */
    in = "\xef\xbb\xbfphone,\"na\"\"me\",tags\r\n"
         "+14155550123,\"Ren\xc3\xa9\r\nLine 2\",\"a,b\"\r"
         "\r\n"
         "x,\"y\"z,\"q\nq\"\n"
         " \"sp\" ,\t\xf0\x9f\x98\x80 ,,\r"
         "a,b,c,d,e\n"
         "\"0123456789abcdefX\",1\n"
         "\"open\n,";

    whole = parse(&trim, in, strlen(in));

    UNIT_STR(whole, strlen(whole),
             "1@3[phone][na\"me][tags];"
             "2@24[+14155550123][Ren\xc3\xa9\r\nLine 2][a,b];"
             "4@61!after:2[x];"
             "5@74[sp][\xf0\x9f\x98\x80][][];"
             "6@90!fields:5[a][b][c][d];"
             "7@100!field_len:1;"
             "8@122!unterminated:1;",
             "tricky: the whole input");

    UNIT_OK(same_split(&trim, in, strlen(in), whole),
            "tricky: 1 byte at a time and every 2- and 3-way split");

    free(whole);
}


static void
test_big(void)
{
    int                  ok;
    char                *in, *want, *got;
    size_t               i, n, len, cuts[1];
    out_t                o;
    orbit_csv_parser_t   p;

    /* a 60000-byte quoted field with escapes, fed 7 bytes at a time */

    n = 60000;
    in = malloc(2 * n + 16);
    want = malloc(n + 16);

    len = 0;
    in[len++] = '"';

    for (i = 0; i < n; i++) {
        want[i] = "ab,\"\n\r c"[i % 8];

        if (want[i] == '"') {
            in[len++] = '"';
        }

        in[len++] = want[i];
    }

    in[len++] = '"';
    in[len++] = ',';
    in[len++] = 'z';

    memset(&o, 0, sizeof(out_t));
    orbit_csv_init(&p, transcribe, &o);

    for (i = 0; i < len; i += 7) {
        orbit_csv_feed(&p, in + i, len - i < 7 ? len - i : 7);
    }

    orbit_csv_finish(&p);
    orbit_csv_free(&p);

    ok = o.rows == 1 && o.len == 4 + n + 5
         && memcmp(o.data, "1@0[", 4) == 0
         && memcmp(o.data + 4, want, n) == 0
         && strcmp(o.data + 4 + n, "][z];") == 0;
    UNIT_OK(ok, "big: a 60000-byte field across 7-byte chunks");
    free(o.data);

    /* the default field limit: 65536 is fine, 65537 is not */

    free(in);
    in = malloc(65537 + 8);
    memset(in, 'x', 65537);
    memcpy(in + 65536, "\nok\n", 4);

    got = parse(&dflt, in, 65540);
    UNIT_OK(strlen(got) == 4 + 65536 + 14
            && strcmp(got + 4 + 65536, "];2@65537[ok];") == 0,
            "big: a 65536-byte field is in the default limit");
    free(got);

    memset(in, 'x', 65537);
    memcpy(in + 65537, "\nok", 3);
    cuts[0] = 30000;
    got = parse_cuts(&dflt, in, 65540, cuts, 1);
    UNIT_STR(got, strlen(got), "1@0!field_len:1;2@65538[ok];",
             "big: a 65537-byte field is over it");
    free(got);
    free(in);
    free(want);

    /* the record buffer stops at 1 MiB: 16 fields of 64 KiB fit */

    len = 17 * 65537;
    in = malloc(len);
    memset(in, 'y', len);

    for (i = 1; i <= 17; i++) {
        in[i * 65537 - 1] = ',';
    }

    got = parse(&dflt, in, 16 * 65537 - 1);
    UNIT_OK(strncmp(got, "1@0[yyy", 7) == 0 && strlen(got) == 16 * 65538 + 4,
            "big: 16 fields of 64 KiB in one record");
    free(got);

    got = parse(&dflt, in, len - 1);
    UNIT_OK(strncmp(got, "1@0!record_len:17[yyy", 21) == 0,
            "big: a 17th one is over the 1 MiB record limit");
    free(got);
    free(in);
}


static void
test_stop(void)
{
    out_t                o;
    orbit_csv_rc_e       rc1, rc2, rc3;
    orbit_csv_parser_t   p;

    memset(&o, 0, sizeof(out_t));
    o.stop_after = 2;

    orbit_csv_init(&p, transcribe, &o);
    rc1 = orbit_csv_feed(&p, "a\nb\nc\nd", 7);
    rc2 = orbit_csv_feed(&p, "e\n", 2);
    rc3 = orbit_csv_finish(&p);
    orbit_csv_free(&p);

    UNIT_OK(rc1 == ORBIT_CSV_STOPPED && rc2 == ORBIT_CSV_STOPPED
            && rc3 == ORBIT_CSV_STOPPED, "stop: the handler stops the parser");
    UNIT_STR(o.data, o.len, "1@0[a];2@2[b];", "stop: no row after the stop");
    free(o.data);

    /* limits of 0 are the defaults */

    memset(&o, 0, sizeof(out_t));
    orbit_csv_init(&p, transcribe, &o);
    p.max_field = 0;
    p.max_fields = 0;
    p.max_record = 0;
    orbit_csv_feed(&p, "a,b", 3);
    orbit_csv_finish(&p);

    UNIT_OK(p.max_field == ORBIT_CSV_MAX_FIELD
            && p.max_fields == ORBIT_CSV_MAX_FIELDS
            && p.max_record == ORBIT_CSV_MAX_RECORD,
            "limits: 0 is the default");
    UNIT_STR(o.data, o.len, "1@0[a][b];", "limits: parsed with defaults");
    orbit_csv_free(&p);
    free(o.data);

    UNIT_OK(strcmp(orbit_csv_strerror(ORBIT_CSV_ERR_UTF8), "invalid UTF-8")
            == 0 && strcmp(orbit_csv_strerror(ORBIT_CSV_ERR_QUOTE),
                           "quote inside an unquoted field") == 0
            && strcmp(orbit_csv_strerror((orbit_csv_err_e) 99),
                      "unknown error") == 0,
            "strerror: messages for the report");
}


static void
test_header(void)
{
    orbit_slice_t  h[5], f;

    h[0].data = " Phone";   h[0].len = 6;
    h[1].data = "name";     h[1].len = 4;
    h[2].data = "EMAIL \t"; h[2].len = 7;
    h[3].data = "optedIn";  h[3].len = 7;
    h[4].data = "phone";    h[4].len = 5;

    UNIT_OK(orbit_csv_header_index(h, 5, "phone", 5) == 0,
            "header: case and spaces ignored, first match");
    UNIT_OK(orbit_csv_header_index(h, 5, "email", 5) == 2,
            "header: trailing spaces and tab ignored");
    UNIT_OK(orbit_csv_header_index(h, 5, "OPTEDIN", 7) == 3,
            "header: upper case name");
    UNIT_OK(orbit_csv_header_index(h, 5, "tags", 4) == -1,
            "header: missing column");
    UNIT_OK(orbit_csv_header_index(h, 5, "nam", 3) == -1,
            "header: no prefix match");
    UNIT_OK(orbit_csv_header_index(h, 0, "phone", 5) == -1,
            "header: no columns");

    f.data = " \t a b \t";
    f.len = 8;
    orbit_csv_trim(&f);
    UNIT_STR(f.data, f.len, "a b", "trim: slice trimmed");

    f.data = "  ";
    f.len = 2;
    orbit_csv_trim(&f);
    UNIT_OK(f.len == 0, "trim: all spaces");
}


static void
esc(const char *in, unsigned flags, const char *want, const char *name)
{
    char    buf[256], *end;
    size_t  len, n;

    len = strlen(in);
    n = orbit_csv_escape_len(in, len, flags);
    end = orbit_csv_escape(buf, in, len, flags);

    UNIT_STR(buf, (size_t) (end - buf), want, name);

    if (n != (size_t) (end - buf)) {
        UNIT_OK(0, "escape: length matches");
    }
}


static void
test_escape(void)
{
    esc("abc", 0, "abc", "escape: plain");
    esc("", 0, "", "escape: empty");
    esc("", ORBIT_CSV_ESC_QUOTE, "\"\"", "escape: empty, always quoted");
    esc("a b", 0, "a b", "escape: inner space is plain");
    esc("a,b", 0, "\"a,b\"", "escape: comma quoted");
    esc("say \"hi\"", 0, "\"say \"\"hi\"\"\"", "escape: quotes doubled");
    esc("a\nb", 0, "\"a\nb\"", "escape: LF quoted");
    esc("a\rb", 0, "\"a\rb\"", "escape: CR quoted");
    esc(" a", 0, "\" a\"", "escape: leading space quoted");
    esc("a ", 0, "\"a \"", "escape: trailing space quoted");
    esc("a\t", 0, "\"a\t\"", "escape: trailing tab quoted");
    esc("Ren\xc3\xa9", 0, "Ren\xc3\xa9", "escape: UTF-8 as is");
    esc("\xef\xbb\xbfx", 0, "\"\xef\xbb\xbfx\"",
        "escape: U+FEFF first is quoted, not taken for a BOM");

    esc("=1+1", 0, "'=1+1", "guard: =");
    esc("=HYPERLINK(\"http://x\",\"y\")", 0,
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"", "guard: = and quoted");
    esc("+1+cmd|' /C calc'!A0", 0, "'+1+cmd|' /C calc'!A0", "guard: +");
    esc("-2+3", 0, "'-2+3", "guard: -");
    esc("@SUM(A1)", 0, "'@SUM(A1)", "guard: @");
    esc("\t=1", 0, "\"'\t=1\"", "guard: TAB (and quoted)");
    esc("\r=1", 0, "\"'\r=1\"", "guard: CR (and quoted)");
    esc("a=1", 0, "a=1", "guard: = not first");
    esc("'=1", 0, "'=1", "guard: already a quote");

    esc("+14155550123", 0, "'+14155550123", "guard: a phone by default");
    esc("+14155550123", ORBIT_CSV_ESC_PHONE, "+14155550123",
        "guard: phone column keeps E.164");
    esc("+1 415 555", ORBIT_CSV_ESC_PHONE, "'+1 415 555",
        "guard: phone column, not only digits");
    esc("+1=2", ORBIT_CSV_ESC_PHONE, "'+1=2", "guard: phone column, +1=2");
    esc("+", ORBIT_CSV_ESC_PHONE, "'+", "guard: phone column, a lone +");
    esc("=1", ORBIT_CSV_ESC_PHONE, "'=1", "guard: phone column, =");
    esc("-5", ORBIT_CSV_ESC_RAW, "-5", "guard: raw column");
    esc("=a,b", ORBIT_CSV_ESC_RAW, "\"=a,b\"", "guard: raw still quotes");
}


/* round trip */

typedef struct {
    char     *fields[8];
    size_t    lens[8];
    size_t    n;
} rt_row_t;

typedef struct {
    rt_row_t  *rows;
    size_t     nrows;
    size_t     next;
    int        bad;
    unsigned   guard;
} rt_t;


static unsigned long  rnd_state = 12345;


static unsigned
rnd(unsigned n)
{
    rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned) ((rnd_state >> 33) % n);
}


static int
rt_check(const orbit_csv_row_t *row, void *data)
{
    size_t     i, len;
    rt_t      *rt;
    rt_row_t  *want;

    rt = data;

    if (rt->next >= rt->nrows || row->error || row->nfields
        != rt->rows[rt->next].n)
    {
        rt->bad = 1;
        return 1;
    }

    want = &rt->rows[rt->next++];

    for (i = 0; i < row->nfields; i++) {
        len = want->lens[i];

        if (rt->guard && len && strchr("=+-@\t\r", want->fields[i][0])) {
            if (row->fields[i].len != len + 1
                || row->fields[i].data[0] != '\''
                || memcmp(row->fields[i].data + 1, want->fields[i], len) != 0)
            {
                rt->bad = 1;
            }

        } else if (row->fields[i].len != len
                   || memcmp(row->fields[i].data, want->fields[i], len) != 0)
        {
            rt->bad = 1;
        }
    }

    return 0;
}


static int
round_trip(unsigned guard, unsigned pflags)
{
    char                *csv, *end;
    size_t               r, i, k, n, len, from, piece;
    unsigned             flags;
    rt_t                 rt;
    rt_row_t            *row;
    orbit_csv_parser_t   p;
    static const char   *bits[] = {
        "a", "Z", "0", "7", ",", "\"", "\r", "\n", "\r\n", " ", "\t",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "=", "+", "-", "@",
        "'", ";", "\"\""
    };
    static const char   *eols[] = { "\r\n", "\n", "\r" };

    rt.nrows = 1 + rnd(20);
    rt.rows = calloc(rt.nrows, sizeof(rt_row_t));
    rt.next = 0;
    rt.bad = 0;
    rt.guard = guard;

    len = 0;

    for (r = 0; r < rt.nrows; r++) {
        row = &rt.rows[r];
        row->n = 1 + rnd(8);

        for (i = 0; i < row->n; i++) {
            row->fields[i] = malloc(64);
            row->lens[i] = 0;
            n = rnd(4) ? rnd(7) : 0;

            for (k = 0; k < n; k++) {
                piece = rnd(sizeof(bits) / sizeof(char *));
                memcpy(row->fields[i] + row->lens[i], bits[piece],
                       strlen(bits[piece]));
                row->lens[i] += strlen(bits[piece]);
            }

            /* 1 for ',', the rest for quotes */
            len += 2 * orbit_csv_escape_len(row->fields[i], row->lens[i],
                                            ORBIT_CSV_ESC_QUOTE) + 3;
        }

        len += 2;
    }

    csv = malloc(len);
    end = csv;

    for (r = 0; r < rt.nrows; r++) {
        row = &rt.rows[r];

        for (i = 0; i < row->n; i++) {
            if (i) {
                *end++ = ',';
            }

            flags = guard ? 0 : ORBIT_CSV_ESC_RAW;

            if ((row->n == 1 && row->lens[0] == 0) || rnd(10) == 0) {
                /* a lone empty field is a blank line unless quoted */
                flags |= ORBIT_CSV_ESC_QUOTE;
            }

            end = orbit_csv_escape(end, row->fields[i], row->lens[i], flags);
        }

        if (r + 1 < rt.nrows || rnd(2)) {
            k = rnd(3);
            memcpy(end, eols[k], strlen(eols[k]));
            end += strlen(eols[k]);
        }
    }

    orbit_csv_init(&p, rt_check, &rt);
    p.flags = pflags;

    for (from = 0; from < (size_t) (end - csv); from += piece) {
        piece = 1 + rnd(rnd(2) ? 5 : 200);

        if (piece > (size_t) (end - csv) - from) {
            piece = (size_t) (end - csv) - from;
        }

        orbit_csv_feed(&p, csv + from, piece);
    }

    orbit_csv_finish(&p);
    orbit_csv_free(&p);

    if (rt.next != rt.nrows) {
        rt.bad = 1;
    }

    if (rt.bad) {
        printf("#   failed on: '%.*s'\n", (int) (end - csv), csv);
    }

    for (r = 0; r < rt.nrows; r++) {
        for (i = 0; i < rt.rows[r].n; i++) {
            free(rt.rows[r].fields[i]);
        }
    }

    free(rt.rows);
    free(csv);

    return !rt.bad;
}


static void
test_round_trip(void)
{
    int  i, ok;

    for (ok = 1, i = 0; i < 500 && ok; i++) {
        ok = round_trip(0, 0);
    }

    UNIT_OK(ok, "round trip: 500 random files, raw fields");

    for (ok = 1, i = 0; i < 500 && ok; i++) {
        ok = round_trip(0, ORBIT_CSV_TRIM);
    }

    UNIT_OK(ok, "round trip: 500 random files, read with trim");

    for (ok = 1, i = 0; i < 500 && ok; i++) {
        ok = round_trip(1, 0);
    }

    UNIT_OK(ok, "round trip: 500 random files, formula guard adds a quote");
}


int
main(void)
{
    test_basic();
    test_bom();
    test_empty();
    test_quoted();
    test_trim();
    test_errors();
    test_tricky();
    test_big();
    test_stop();
    test_header();
    test_escape();
    test_round_trip();

    return unit_done();
}
