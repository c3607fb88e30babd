/*
 * Unit tests of src/io/orbit_ws_codec.c.  The cases of Autobahn|Testsuite
 * sections 1-7 are the checklist (their numbers are in the names), played
 * at frame level: every input is fed whole, in 7-byte pieces and in 1-byte
 * pieces, and when short also split in two at every byte; all must give
 * the same events.  Fail-fast cases also check on which byte the error
 * comes.  Then the writing side: frame headers, masking, close payloads,
 * the handshake.
 */

#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "io/orbit_ws_codec.h"


#define FIN       0x80
#define RSV(n)    ((n) << 4)
#define TEXT      ORBIT_WS_OP_TEXT
#define BINARY    ORBIT_WS_OP_BINARY
#define CONT      ORBIT_WS_OP_CONT
#define CLOSE     ORBIT_WS_OP_CLOSE
#define PING      ORBIT_WS_OP_PING
#define PONG      ORBIT_WS_OP_PONG

#define IN_MAX    (2 * 65536 + 4096)
#define SPLIT_MAX 600             /* inputs split at every byte up to this */

#define str(s)    s, (sizeof(s) - 1)


typedef struct {
    char            log[2048];    /* "text(5) ping(0) close(1000)" */
    unsigned char  *data;         /* the bytes of every DATA event */
    size_t          len;
    size_t          size;
    unsigned char   ctl[ORBIT_WS_CONTROL_MAX];
    size_t          ctl_len;      /* the last control frame's payload */
    size_t          fed;          /* bytes fed when an error or close came */
    size_t          used;         /* bytes the parser consumed */
    size_t          events;       /* DATA events */
    size_t          empty;        /* DATA events of length 0 */
    int             bad;          /* a promise of the header broken */
} res_t;


static unsigned char        in[IN_MAX];
static size_t               in_len;
static unsigned char        pay[65536 + 1];

static const unsigned char  key[4] = { 0x37, 0xfa, 0x21, 0x3d };

static const char           kosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"
                                      "\xce\xb5";


/* appends a frame: b0 as is (FIN, RSV, opcode), masked when mask */

static void
frame_m(unsigned b0, const void *data, size_t len, const unsigned char *mask)
{
    size_t                i;
    unsigned              bit;
    unsigned char        *h;
    const unsigned char  *d;

    h = in + in_len;
    d = data;
    bit = mask ? 0x80 : 0;

    *h++ = (unsigned char) b0;

    if (len < 126) {
        *h++ = (unsigned char) (bit | len);

    } else if (len <= 0xffff) {
        *h++ = (unsigned char) (bit | 126);
        *h++ = (unsigned char) (len >> 8);
        *h++ = (unsigned char) len;

    } else {
        *h++ = (unsigned char) (bit | 127);

        for (i = 0; i < 8; i++) {
            *h++ = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
        }
    }

    if (mask) {
        memcpy(h, mask, 4);
        h += 4;
    }

    for (i = 0; i < len; i++) {
        h[i] = d[i] ^ (mask ? mask[i & 3] : 0);
    }

    in_len = (size_t) (h - in) + len;
}


/* a client's frame (masked) */

static void
frame(unsigned b0, const void *data, size_t len)
{
    frame_m(b0, data, len, key);
}


static void
close_frame(unsigned code, const void *reason, size_t len)
{
    unsigned char  buf[256];

    buf[0] = (unsigned char) (code >> 8);
    buf[1] = (unsigned char) code;
    memcpy(buf + 2, reason, len);

    frame(FIN | CLOSE, buf, 2 + len);
}


static void
raw(const void *data, size_t len)
{
    memcpy(in + in_len, data, len);
    in_len += len;
}


static void
reset(void)
{
    in_len = 0;
}


static void
res_log(res_t *r, const char *what, size_t n)
{
    size_t  l;

    l = strlen(r->log);
    snprintf(r->log + l, sizeof(r->log) - l, "%s%s(%zu)", l ? " " : "",
             what, n);
}


static void
res_add(res_t *r, const unsigned char *s, size_t n)
{
    while (r->len + n > r->size) {
        r->size = r->size ? r->size * 2 : 1024;
        r->data = realloc(r->data, r->size);
        if (r->data == NULL) {
            abort();
        }
    }

    if (n) {
        memcpy(r->data + r->len, s, n);
        r->len += n;
    }
}


/*
 * Parses a copy of "in" fed in pieces of "chunk" bytes (0: whole), or in
 * two at "split" (when not 0), and writes down what came out.  Besides
 * the events it checks the parser's promises: *pos stays in the piece
 * and never goes back, AGAIN only once the piece is used up, DATA lies
 * in the bytes consumed, "first" exactly on a message's first event,
 * the opcode steady through a message, ERROR repeated and CLOSE final
 * without consuming.
 */

static void
run(res_t *r, int server, uint64_t max, size_t chunk, size_t split)
{
    int                 done, open, op;
    size_t              off, n, mlen;
    unsigned char      *buf, *pos, *end, *before;
    orbit_ws_event_t    ev;
    orbit_ws_event_e    rc;
    orbit_ws_parser_t   p;

    free(r->data);
    memset(r, 0, sizeof(res_t));

    buf = malloc(in_len + 1);
    if (buf == NULL) {
        abort();
    }

    memcpy(buf, in, in_len);

    /* init must clear whatever the private part held */
    memset(&p, 0xa5, sizeof(orbit_ws_parser_t));
    p.max_message = max;
    p.server = server;
    orbit_ws_parser_init(&p);

    done = 0;
    open = 0;
    op = 0;
    mlen = 0;
    off = 0;
    pos = buf;

    do {
        n = in_len - off;

        if (chunk && n > chunk) {
            n = chunk;

        } else if (split && off < split) {
            n = split - off;
        }

        pos = buf + off;
        end = pos + n;
        off += n;

        for ( ;; ) {
            before = pos;
            rc = orbit_ws_parse(&p, &pos, end, &ev);

            if (pos < before || pos > end) {
                r->bad = 1;
                done = 1;
                break;
            }

            if (rc == ORBIT_WS_AGAIN) {
                if (pos != end) {
                    r->bad = 1;
                    done = 1;
                }

                break;
            }

            if (rc == ORBIT_WS_DATA) {
                if (ev.data == NULL || ev.data < before
                    || ev.data + ev.len > pos
                    || ev.first != !open
                    || (!ev.first && ev.opcode != op)
                    || (ev.opcode != TEXT && ev.opcode != BINARY))
                {
                    r->bad = 1;
                }

                if (ev.first) {
                    op = ev.opcode;
                    mlen = 0;
                }

                r->events++;
                r->empty += (ev.len == 0);
                mlen += ev.len;
                res_add(r, ev.data, ev.len);

                open = !ev.fin;

                if (ev.fin) {
                    res_log(r, op == TEXT ? "text" : "binary", mlen);
                }

                continue;
            }

            if (rc == ORBIT_WS_CONTROL) {
                if (ev.len > ORBIT_WS_CONTROL_MAX || ev.data == NULL) {
                    r->bad = 1;
                    ev.len = 0;
                }

                memcpy(r->ctl, ev.data, ev.len);
                r->ctl_len = ev.len;

                if (ev.opcode == PING || ev.opcode == PONG) {
                    res_log(r, ev.opcode == PING ? "ping" : "pong", ev.len);
                    continue;
                }

                if (ev.opcode != CLOSE) {
                    r->bad = 1;
                }

                res_log(r, "close", ev.code);
                r->fed = off;

                before = pos;
                if (orbit_ws_parse(&p, &pos, end, &ev) != ORBIT_WS_AGAIN
                    || pos != before)
                {
                    r->bad = 1;
                }

                done = 1;
                break;
            }

            /* ORBIT_WS_ERROR */

            res_log(r, "error", ev.code);
            r->fed = off;

            if (ev.reason == NULL) {
                r->bad = 1;
            }

            n = ev.code;
            before = pos;

            if (orbit_ws_parse(&p, &pos, end, &ev) != ORBIT_WS_ERROR
                || ev.code != n || pos != before)
            {
                r->bad = 1;
            }

            done = 1;
            break;
        }

    } while (!done && off < in_len);

    r->used = (size_t) (pos - buf);

    if (open && !done) {
        res_log(r, "partial", mlen);
    }

    free(buf);
}


static int
same1(res_t *r, const char *how, size_t arg, const char *log,
    const void *data, size_t len)
{
    if (!r->bad && strcmp(r->log, log) == 0
        && (data == NULL
            || (r->len == len
                && (len == 0 || memcmp(r->data, data, len) == 0))))
    {
        return 1;
    }

    printf("#   %s %zu: got '%s'%s%s, %zu bytes of data\n", how, arg, r->log,
           strcmp(r->log, log) ? ", want " : "",
           strcmp(r->log, log) ? log : "", r->len);

    if (r->bad) {
        printf("#   a promise broken\n");
    }

    return 0;
}


/*
 * "in" gives log (and data, the messages' bytes in a row, when not NULL)
 * whole, in 7-byte pieces, in 1-byte pieces and split anywhere.
 */

static int
same(int server, uint64_t max, const char *log, const void *data,
    size_t len)
{
    int      ok;
    size_t   i;
    res_t    r;

    static const size_t  chunks[] = { 0, 7, 1 };

    memset(&r, 0, sizeof(res_t));
    ok = 1;

    for (i = 0; i < 3; i++) {
        run(&r, server, max, chunks[i], 0);
        ok &= same1(&r, "pieces of", chunks[i], log, data, len);
    }

    for (i = 1; in_len <= SPLIT_MAX && i < in_len; i++) {
        run(&r, server, max, 0, i);
        if (!same1(&r, "split at", i, log, data, len)) {
            ok = 0;
            break;
        }
    }

    free(r.data);

    return ok;
}


static void
expect(const char *name, const char *log)
{
    UNIT_OK(same(1, 0, log, NULL, 0), name);
}


static void
expect_data(const char *name, const char *log, const void *data, size_t len)
{
    UNIT_OK(same(1, 0, log, data, len), name);
}


/* fed a byte at a time, the error or close comes with byte "at" (1-based) */

static void
expect_at(const char *name, int server, uint64_t max, size_t at)
{
    res_t  r;

    memset(&r, 0, sizeof(res_t));
    run(&r, server, max, 1, 0);

    UNIT_OK(!r.bad && r.fed == at, name);

    if (r.fed != at) {
        printf("#   came with byte %zu, want %zu (%s)\n", r.fed, at, r.log);
    }

    free(r.data);
}


/* the last control frame's payload, fed a byte at a time */

static void
expect_ctl(const char *name, const void *data, size_t len)
{
    res_t  r;

    memset(&r, 0, sizeof(res_t));
    run(&r, 1, 0, 1, 0);

    UNIT_OK(!r.bad && r.ctl_len == len && memcmp(r.ctl, data, len) == 0,
            name);

    free(r.data);
}


static void
test_utf8(void)
{
    int            rc;
    orbit_utf8_t   u;

    u.state = 0;
    UNIT_OK(orbit_utf8_feed(&u, (const unsigned char *) "\xe2", 1) == 0
            && !orbit_utf8_complete(&u)
            && orbit_utf8_feed(&u, (const unsigned char *) "\x82", 1) == 0
            && !orbit_utf8_complete(&u)
            && orbit_utf8_feed(&u, (const unsigned char *) "\xac", 1) == 0
            && orbit_utf8_complete(&u),
            "utf8: a character fed a byte at a time");

    u.state = 0;
    UNIT_OK(orbit_utf8_feed(&u, (const unsigned char *) "", 0) == 0
            && orbit_utf8_complete(&u), "utf8: nothing is complete");

    u.state = 0;
    rc = orbit_utf8_feed(&u, (const unsigned char *) "a\xc0\x80", 3);
    UNIT_OK(rc == -1 && orbit_utf8_feed(&u, (const unsigned char *) "a", 1)
            == -1 && !orbit_utf8_complete(&u),
            "utf8: once invalid, invalid for good");
}


/* 1: text and binary messages of every length class */

static void
test_framing(void)
{
    int            k;
    char           name[96], log[64];
    size_t         i;
    unsigned char  c;

    static const size_t  lens[] = { 0, 125, 126, 127, 128, 65535, 65536 };

    for (k = 0; k < 2; k++) {
        c = k ? 0xfe : '*';

        for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            reset();
            memset(pay, c, lens[i]);
            frame(FIN | (k ? BINARY : TEXT), pay, lens[i]);

            snprintf(name, sizeof(name), "1.%d.%zu %s message of %zu bytes",
                     k + 1, i + 1, k ? "binary" : "text", lens[i]);
            snprintf(log, sizeof(log), "%s(%zu)", k ? "binary" : "text",
                     lens[i]);

            expect_data(name, log, pay, lens[i]);
        }
    }

    reset();
    frame(FIN | TEXT, str("abc"));
    frame(FIN | BINARY, "", 0);
    frame(FIN | TEXT, "", 0);
    frame(FIN | BINARY, str("\x00\xff"));
    expect_data("1.x messages back to back",
                "text(3) binary(0) text(0) binary(2)", str("abc\x00\xff"));

    /* the client side reads unmasked frames */

    reset();
    memset(pay, '*', 65536);
    frame_m(FIN | TEXT, pay, 126, NULL);
    frame_m(FIN | BINARY, pay, 65536, NULL);
    frame_m(FIN | PING, str("hi"), NULL);
    frame_m(FIN | TEXT, "", 0, NULL);
    UNIT_OK(same(0, 0, "text(126) binary(65536) ping(2) text(0)", NULL, 0),
            "1.x client side: unmasked frames of each length class");

    /* a sender must use the minimal length; on receipt we let it through */

    reset();
    raw("\x81\xfe\x00\x05", 4);
    raw(key, 4);
    memcpy(pay, "hello", 5);
    orbit_ws_mask(pay, 5, key, 0);
    raw(pay, 5);
    raw("\x82\xff\x00\x00\x00\x00\x00\x00\x00\x03", 10);
    raw(key, 4);
    raw(pay, 3);
    expect_data("1.x non-minimal 16- and 64-bit lengths are accepted",
                "text(5) binary(3)", str("hellohel"));

    reset();
    raw("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01", 10);
    raw(key, 4);
    expect("1.x a 64-bit length with the top bit set: 1002", "error(1002)");
    expect_at("1.x ... seen on the length's first byte", 1, 0, 3);

    reset();
    frame_m(FIN | TEXT, str("hello"), NULL);
    expect("server side: an unmasked frame: 1002", "error(1002)");
    expect_at("server side: ... seen on the second byte", 1, 0, 2);

    reset();
    frame(FIN | TEXT, str("hello"));
    UNIT_OK(same(0, 0, "error(1002)", NULL, 0),
            "client side: a masked frame: 1002");
    expect_at("client side: ... seen on the second byte", 0, 0, 2);
}


/* 2: pings and pongs */

static void
test_ping(void)
{
    char           log[1024];
    size_t         i;
    unsigned char  bin[] = { 0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff };

    reset();
    frame(FIN | PING, "", 0);
    expect("2.1 ping, empty", "ping(0)");

    reset();
    frame(FIN | PING, str("Hello, world!"));
    expect("2.2 ping with a text payload", "ping(13)");
    expect_ctl("2.2 ... the payload unmasked", str("Hello, world!"));

    reset();
    frame(FIN | PING, bin, sizeof(bin));
    expect("2.3 ping with a binary payload", "ping(8)");
    expect_ctl("2.3 ... the payload unmasked", bin, sizeof(bin));

    reset();
    memset(pay, 0xfe, 126);
    frame(FIN | PING, pay, 125);
    expect("2.4 ping of 125 bytes", "ping(125)");
    expect_ctl("2.4 ... the payload unmasked", pay, 125);

    reset();
    frame(FIN | PING, pay, 126);
    expect("2.5 ping of 126 bytes: 1002", "error(1002)");
    expect_at("2.5 ... seen on the length byte", 1, 0, 2);

    reset();
    frame(FIN | PING, str("Hello, world!"));
    frame(FIN | TEXT, str("after"));
    expect("2.6 ping then text, in every cut", "ping(13) text(5)");

    reset();
    frame(FIN | PONG, "", 0);
    expect("2.7 unsolicited pong, empty", "pong(0)");

    reset();
    frame(FIN | PONG, str("unsolicited pong payload"));
    expect("2.8 unsolicited pong with payload", "pong(24)");

    reset();
    frame(FIN | PONG, str("unsolicited pong payload"));
    frame(FIN | PING, str("ping payload"));
    expect("2.9 pong then ping", "pong(24) ping(12)");
    expect_ctl("2.9 ... the ping's payload", str("ping payload"));

    reset();
    log[0] = '\0';

    for (i = 0; i < 10; i++) {
        frame(FIN | PING, str("payload-0"));
        in[in_len - 1] ^= (unsigned char) i;
        strcat(log, i ? " ping(9)" : "ping(9)");
    }

    expect("2.10 ten pings in a row", log);

    reset();
    frame(FIN | PING, "", 0);
    frame(FIN | CLOSE, "", 0);
    expect("2.x ping then close", "ping(0) close(1005)");
}


/* 3: reserved bits */

static void
test_rsv(void)
{
    int     n;
    char    name[96];
    size_t  at;

    for (n = 1; n <= 7; n++) {
        reset();

        if (n >= 2 && n <= 4) {
            frame(FIN | TEXT, str("small"));
        }

        at = in_len + 1;

        switch (n) {
        case 5:
            frame(FIN | RSV(n) | BINARY, str("\x00\xff\xfe\xfd"));
            break;
        case 6:
            frame(FIN | RSV(n) | PING, str("ping"));
            break;
        case 7:
            close_frame(1000, "", 0);
            in[at - 1] |= RSV(n);
            break;
        default:
            frame(FIN | RSV(n) | TEXT, str("Hello, world!"));
        }

        frame(FIN | PING, "", 0);

        snprintf(name, sizeof(name), "3.%d RSV = %d: 1002", n, n);
        expect(name, (n >= 2 && n <= 4) ? "text(5) error(1002)"
                                        : "error(1002)");

        snprintf(name, sizeof(name), "3.%d ... seen on the first byte", n);
        expect_at(name, 1, 0, at);
    }
}


/* 4: reserved opcodes */

static void
test_opcodes(void)
{
    int        i, op;
    char       name[96];
    size_t     at;

    static const int  ops[] = { 3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf };

    for (i = 0; i < 10; i++) {
        op = ops[i];

        reset();

        if (i % 5 >= 2) {
            frame(FIN | TEXT, str("Hello"));
        }

        at = in_len + 1;

        if (i % 5 == 1 || i % 5 == 3 || i % 5 == 4) {
            frame(FIN | op, str("reserved opcode payload"));

        } else {
            frame(FIN | op, "", 0);
        }

        frame(FIN | PING, str("ping"));

        snprintf(name, sizeof(name), "4.%d.%d opcode %d: 1002", i / 5 + 1,
                 i % 5 + 1, op);
        expect(name, i % 5 >= 2 ? "text(5) error(1002)" : "error(1002)");

        snprintf(name, sizeof(name), "4.%d.%d ... seen on the first byte",
                 i / 5 + 1, i % 5 + 1);
        expect_at(name, 1, 0, at);

        /* the same without FIN */
        reset();
        frame(op, "", 0);
        snprintf(name, sizeof(name), "4.x opcode %d without FIN: 1002", op);
        expect(name, "error(1002)");
    }
}


/* 5: fragmentation */

static void
test_fragments(void)
{
    res_t   r;
    size_t  at;

    reset();
    frame(PING, str("fragment1"));
    frame(FIN | CONT, str("fragment2"));
    expect("5.1 fragmented ping: 1002", "error(1002)");
    expect_at("5.1 ... seen on the first byte", 1, 0, 1);

    reset();
    frame(PONG, str("fragment1"));
    frame(FIN | CONT, str("fragment2"));
    expect("5.2 fragmented pong: 1002", "error(1002)");

    reset();
    frame(TEXT, str("fragment1"));
    frame(FIN | CONT, str("fragment2"));
    expect_data("5.3 text in two fragments", "text(18)",
                str("fragment1fragment2"));

    reset();
    frame(BINARY, str("\x00\x01"));
    frame(CONT, str("\x02\x03\x04"));
    frame(FIN | CONT, str("\x05"));
    expect_data("5.x binary in three fragments", "binary(6)",
                str("\x00\x01\x02\x03\x04\x05"));

    reset();
    frame(TEXT, str("fragment1"));
    frame(FIN | PING, str("ping payload"));
    frame(FIN | CONT, str("fragment2"));
    expect_data("5.6 ping between fragments", "ping(12) text(18)",
                str("fragment1fragment2"));

    reset();
    frame(BINARY, str("fragment1"));
    frame(FIN | PONG, str("pong payload"));
    frame(CONT, "", 0);
    frame(FIN | PING, "", 0);
    frame(FIN | CONT, str("fragment2"));
    expect_data("5.x pong and ping between binary fragments",
                "pong(12) ping(0) binary(18)", str("fragment1fragment2"));

    reset();
    frame(FIN | CONT, str("non-continuation payload"));
    frame(FIN | TEXT, str("Hello, world!"));
    expect("5.9 continuation, FIN, without a message: 1002", "error(1002)");
    expect_at("5.9 ... seen on the first byte", 1, 0, 1);

    reset();
    frame(CONT, str("non-continuation payload"));
    frame(FIN | TEXT, str("Hello, world!"));
    expect("5.12 continuation, no FIN, without a message: 1002",
           "error(1002)");

    reset();
    frame(TEXT, str("fragment1"));
    frame(FIN | CONT, str("fragment2"));
    at = in_len + 1;
    frame(CONT, str("fragment3"));
    frame(FIN | TEXT, str("fragment4"));
    expect("5.15 continuation after the message ended: 1002",
           "text(18) error(1002)");
    expect_at("5.15 ... seen on the first byte", 1, 0, at);

    reset();
    frame(TEXT, str("fragment1"));
    at = in_len + 1;
    frame(FIN | TEXT, str("fragment2"));
    expect("5.17 new text inside a fragmented text: 1002", "error(1002)");
    expect_at("5.17 ... seen on the first byte", 1, 0, at);

    reset();
    frame(TEXT, str("fragment1"));
    frame(BINARY, str("fragment2"));
    expect("5.x new binary inside a fragmented text: 1002", "error(1002)");

    reset();
    frame(BINARY, str("fragment1"));
    frame(FIN | PING, "", 0);
    frame(FIN | TEXT, str("fragment2"));
    expect("5.x new text inside a binary, after a ping: 1002",
           "ping(0) error(1002)");

    reset();
    frame(TEXT, str("fragment1"));
    frame(CONT, str("fragment2"));
    frame(FIN | PING, str("pongme 1!"));
    frame(CONT, str("fragment3"));
    frame(FIN | PING, str("pongme 2!"));
    frame(CONT, str("fragment4"));
    frame(FIN | CONT, str("fragment5"));
    expect_data("5.19 text in five fragments, pings between",
                "ping(9) ping(9) text(45)",
                str("fragment1fragment2fragment3fragment4fragment5"));

    /* empty fragments: every frame gives a DATA event, empty or not */

    reset();
    frame(TEXT, "", 0);
    frame(CONT, "", 0);
    frame(FIN | CONT, "", 0);
    expect("5.x (6.1.2) three empty fragments", "text(0)");

    memset(&r, 0, sizeof(res_t));
    run(&r, 1, 0, 1, 0);
    UNIT_OK(r.events == 3 && r.empty == 3,
            "5.x ... one empty DATA event per frame, first and fin on them");

    reset();
    frame(TEXT, "", 0);
    frame(CONT, str("middle frame payload"));
    frame(FIN | CONT, "", 0);
    expect_data("5.x (6.1.3) empty, non-empty, empty fragments", "text(20)",
                str("middle frame payload"));

    reset();
    frame(BINARY, "", 0);
    frame(FIN | PING, "", 0);
    frame(FIN | CONT, "", 0);
    expect("5.x empty binary fragments around a ping", "ping(0) binary(0)");

    reset();
    frame(TEXT, str("fragment1"));
    expect("5.x an unfinished message stays open", "partial(9)");

    free(r.data);
}


typedef struct {
    const char  *name;
    const char  *s;
    size_t       len;
    int          bad;                /* the byte that shows it; -1: valid */
} utf8_case_t;


#define U(name, s, bad)  { name, s, sizeof(s) - 1, bad }

static const utf8_case_t  utf8_cases[] = {
    U("6.5.1 kosme", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", -1),
    U("6.7.1 first 1-byte: U+0000", "\x00", -1),
    U("6.7.2 first 2-byte: U+0080", "\xc2\x80", -1),
    U("6.7.3 first 3-byte: U+0800", "\xe0\xa0\x80", -1),
    U("6.7.4 first 4-byte: U+10000", "\xf0\x90\x80\x80", -1),
    U("6.9.1 last 1-byte: U+007F", "\x7f", -1),
    U("6.9.2 last 2-byte: U+07FF", "\xdf\xbf", -1),
    U("6.9.3 last 3-byte: U+FFFF", "\xef\xbf\xbf", -1),
    U("6.9.4 last: U+10FFFF", "\xf4\x8f\xbf\xbf", -1),
    U("6.11.1 U+D7FF", "\xed\x9f\xbf", -1),
    U("6.11.2 U+E000", "\xee\x80\x80", -1),
    U("6.11.3 U+FFFD", "\xef\xbf\xbd", -1),
    U("6.22.x noncharacter U+FFFE", "\xef\xbf\xbe", -1),
    U("6.22.x noncharacter U+10FFFE", "\xf4\x8f\xbf\xbe", -1),
    U("6.23.x BOM U+FEFF", "\xef\xbb\xbf", -1),
    U("6.x mixed", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0"
      "\xc3\xa1-UTF-8!!", -1),

    U("6.3.1 kosme + surrogate", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"
      "\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 12),
    U("6.8.1 5-byte form", "\xf8\x88\x80\x80\x80", 0),
    U("6.8.2 6-byte form", "\xfc\x84\x80\x80\x80\x80", 0),
    U("6.10.1 U+1FFFFF", "\xf7\xbf\xbf\xbf", 0),
    U("6.11.5 U+110000", "\xf4\x90\x80\x80", 1),
    U("6.12.1 lone continuation 80", "\x80", 0),
    U("6.12.2 lone continuation BF", "\xbf", 0),
    U("6.12.3 continuations 80 BF", "\x80\xbf", 0),
    U("6.12.x continuation after a char", "a\xc3\xa9\x80", 3),
    U("6.13.1 C0 then space", "\xc0\x20", 0),
    U("6.13.2 DF then space", "\xdf\x20", 1),
    U("6.13.3 E0 then space", "\xe0\x20", 1),
    U("6.13.4 F0 then space", "\xf0\x20", 1),
    U("6.14.1 C2 cut at the end", "\xc2", 0),
    U("6.14.2 E0 A0 cut at the end", "\xe0\xa0", 1),
    U("6.14.3 F0 90 80 cut at the end", "\xf0\x90\x80", 2),
    U("6.14.4 DF cut at the end", "\xdf", 0),
    U("6.14.5 EF BF cut at the end", "\xef\xbf", 1),
    U("6.14.6 F4 8F BF cut at the end", "\xf4\x8f\xbf", 2),
    U("6.14.x text then a cut character", "ab\xe2\x82", 3),
    U("6.15.1 incomplete ones in a row", "\xc2\xe0\x80", 1),
    U("6.16.1 FE", "\xfe", 0),
    U("6.16.2 FF", "\xff", 0),
    U("6.16.3 FE FE FF FF", "\xfe\xfe\xff\xff", 0),
    U("6.17.1 overlong / in 2", "\xc0\xaf", 0),
    U("6.17.2 overlong / in 3", "\xe0\x80\xaf", 1),
    U("6.17.3 overlong / in 4", "\xf0\x80\x80\xaf", 1),
    U("6.17.4 overlong / in 5", "\xf8\x80\x80\x80\xaf", 0),
    U("6.18.1 max overlong 2", "\xc1\xbf", 0),
    U("6.18.2 max overlong 3", "\xe0\x9f\xbf", 1),
    U("6.18.3 max overlong 4", "\xf0\x8f\xbf\xbf", 1),
    U("6.19.1 overlong NUL C0 80", "\xc0\x80", 0),
    U("6.19.2 overlong NUL E0 80 80", "\xe0\x80\x80", 1),
    U("6.19.3 overlong NUL F0 80 80 80", "\xf0\x80\x80\x80", 1),
    U("6.20.1 surrogate U+D800", "\xed\xa0\x80", 1),
    U("6.20.2 surrogate U+DB7F", "\xed\xad\xbf", 1),
    U("6.20.3 surrogate U+DB80", "\xed\xae\x80", 1),
    U("6.20.4 surrogate U+DBFF", "\xed\xaf\xbf", 1),
    U("6.20.5 surrogate U+DC00", "\xed\xb0\x80", 1),
    U("6.20.6 surrogate U+DF80", "\xed\xbe\x80", 1),
    U("6.20.7 surrogate U+DFFF", "\xed\xbf\xbf", 1),
    U("6.21.1 surrogate pair", "\xed\xa0\x80\xed\xb0\x80", 1),
    U("6.x valid text then C0", "abc\xc0", 3)
};


/* 6: UTF-8 */

static void
test_text(void)
{
    int                 ok;
    char                name[128], log[64];
    res_t               r;
    size_t              i, k, n;
    const utf8_case_t  *c;
    static const char   hello[] = "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4"
                                  "\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!";

    reset();
    frame(FIN | TEXT, "", 0);
    expect("6.1.1 empty text", "text(0)");

    /* 6.2.2: split into two frames at every byte, mid-character too */

    ok = 1;
    n = sizeof(hello) - 1;

    for (k = 0; k <= n; k++) {
        reset();
        frame(TEXT, hello, k);
        frame(FIN | CONT, hello + k, n - k);
        snprintf(log, sizeof(log), "text(%zu)", n);
        ok &= same(1, 0, log, hello, n);
    }

    UNIT_OK(ok, "6.2.2 valid text in two frames, cut at every byte");

    reset();

    for (k = 0; k < n; k++) {
        frame(k ? (k == n - 1 ? FIN | CONT : CONT) : TEXT, hello + k, 1);
    }

    expect_data("6.2.3 valid text, a frame per byte", log, hello, n);

    for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        c = &utf8_cases[i];

        reset();
        frame(FIN | TEXT, c->s, c->len);

        snprintf(name, sizeof(name), "%s: %s", c->name,
                 c->bad < 0 ? "valid" : "1007");
        snprintf(log, sizeof(log), "text(%zu)", c->len);

        if (c->bad < 0) {
            expect_data(name, log, c->s, c->len);
            continue;
        }

        expect(name, "error(1007)");

        /* the frame header is 6 bytes */
        snprintf(name, sizeof(name), "%s: ... fails on byte %d", c->name,
                 c->bad);
        expect_at(name, 1, 0, 6 + (size_t) c->bad + 1);
    }

    /* each case again, a frame per byte */

    ok = 1;

    for (i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        c = &utf8_cases[i];

        reset();

        for (k = 0; k < c->len; k++) {
            frame((k ? CONT : TEXT) | (k == c->len - 1 ? FIN : 0),
                  c->s + k, 1);
        }

        snprintf(log, sizeof(log), "text(%zu)", c->len);
        n = same(1, 0, c->bad < 0 ? log : "error(1007)", NULL, 0);

        if (!n) {
            printf("#   %s\n", c->name);
        }

        ok &= n;
    }

    UNIT_OK(ok, "6.x every UTF-8 case again, a frame per byte");

    reset();
    frame(FIN | TEXT, str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed"
                          "\xa0\x80\x65\x64\x69\x74\x65\x64"));
    frame(FIN | PING, "", 0);
    expect("6.3.1 bad text, then a ping not read", "error(1007)");

    memset(&r, 0, sizeof(res_t));
    run(&r, 1, 0, 0, 0);
    UNIT_OK(!r.bad && r.events == 0,
            "6.3.1 ... fed whole: nothing of the bad chunk is handed out");
    free(r.data);

    /* 6.4: fail fast, in the frame (the chunk) where the bad byte comes */

    reset();
    frame(TEXT, kosme, 11);
    frame(CONT, str("\xf4\x90\x80\x80"));
    frame(FIN | CONT, str("edited"));
    expect("6.4.1 U+110000 in the middle fragment: 1007", "error(1007)");
    expect_at("6.4.1 ... seen on its second byte", 1, 0, 6 + 11 + 6 + 2);

    reset();
    frame(TEXT, str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4"));
    frame(CONT, str("\x90"));
    frame(FIN | CONT, str("\x80\x80" "edited"));
    expect("6.4.2 F4 | 90 across fragments: 1007", "error(1007)");
    expect_at("6.4.2 ... seen on the 90, in the second frame", 1, 0,
              6 + 12 + 6 + 1);

    reset();
    frame(TEXT, kosme, 11);
    frame(CONT, str("\xed"));
    frame(FIN | PING, "", 0);
    frame(CONT, str("\xa0\x80"));
    frame(FIN | CONT, str("edited"));
    expect("6.x ED | ping | A0 80: 1007 after the ping", "ping(0) error(1007)");

    reset();
    frame(TEXT, str("ok so far \xe2\x82"));
    frame(FIN | CONT, "", 0);
    expect("6.x a character cut by an empty final frame: 1007",
           "error(1007)");

    reset();
    frame(BINARY, str("\xc0\x80\xff"));
    frame(FIN | CONT, str("\xed\xa0\x80"));
    expect_data("6.x binary is not UTF-8 checked", "binary(6)",
                str("\xc0\x80\xff\xed\xa0\x80"));
}


/* 7: closing */

static void
test_close(void)
{
    char           name[96], log[64];
    res_t          r;
    size_t         i, at;
    unsigned char  buf[ORBIT_WS_CONTROL_MAX];

    static const unsigned  valid[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
        1014, 3000, 3999, 4000, 4999
    };

    static const unsigned  invalid[] = {
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535
    };

    reset();
    frame(FIN | TEXT, str("Hello World!"));
    close_frame(1000, "", 0);
    expect("7.1.1 text then close", "text(12) close(1000)");

    reset();
    close_frame(1000, "", 0);
    at = in_len;
    close_frame(1000, "", 0);
    expect("7.1.2 close then close: the second is not read", "close(1000)");
    expect_at("7.1.2 ... the close comes on its last byte", 1, 0, at);

    reset();
    close_frame(1000, "", 0);
    frame(FIN | PING, str("ping"));
    expect("7.1.3 close then ping: not read", "close(1000)");

    reset();
    close_frame(1000, "", 0);
    frame(FIN | TEXT, str("text"));
    expect("7.1.4 close then text: not read", "close(1000)");

    reset();
    frame(TEXT, str("fragment1"));
    close_frame(1000, "", 0);
    at = in_len;
    frame(FIN | CONT, str("fragment2"));
    expect("7.1.5 close inside a fragmented message", "close(1000)");

    memset(&r, 0, sizeof(res_t));
    run(&r, 1, 0, 0, 0);
    UNIT_OK(r.used == at && !r.bad,
            "7.1.x the bytes after a close are not consumed");
    free(r.data);

    reset();
    memset(pay, '*', 65536);
    frame(FIN | TEXT, pay, 65536);
    close_frame(1000, "", 0);
    expect("7.1.6 a large text then close", "text(65536) close(1000)");

    reset();
    frame(FIN | CLOSE, "", 0);
    expect("7.3.1 empty close: 1005", "close(1005)");
    expect_ctl("7.3.1 ... no payload", "", 0);

    reset();
    frame(FIN | CLOSE, "\x03", 1);
    expect("7.3.2 close of 1 byte: 1002", "error(1002)");

    /* a ping leaves 03 E8 (1000) where a second code byte would be */
    reset();
    frame(FIN | PING, "\x03\xe8", 2);
    frame(FIN | CLOSE, "\x03", 1);
    expect("7.3.2 close of 1 byte after a ping: 1002", "ping(2) error(1002)");

    reset();
    close_frame(1000, "", 0);
    expect("7.3.3 close 1000, no reason", "close(1000)");

    reset();
    close_frame(1000, str("Hello World!"));
    expect("7.3.4 close 1000 with a reason", "close(1000)");
    expect_ctl("7.3.4 ... the payload is code and reason",
               str("\x03\xe8Hello World!"));

    reset();
    memset(pay, '*', 124);
    close_frame(1000, pay, 123);
    expect("7.3.5 close with a reason of 123 bytes", "close(1000)");

    reset();
    close_frame(1000, pay, 124);
    expect("7.3.6 close with a reason of 124 bytes: 1002", "error(1002)");
    expect_at("7.3.6 ... seen on the length byte", 1, 0, 2);

    reset();
    close_frame(1000, str("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed"
                          "\xa0\x80\x65\x64\x69\x74\x65\x64"));
    expect("7.5.1 close reason not UTF-8: 1007", "error(1007)");

    reset();
    close_frame(1001, str("bye \xe2\x82"));
    expect("7.5.x close reason cut mid-character: 1007", "error(1007)");

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        reset();
        close_frame(valid[i], str("reason"));
        snprintf(name, sizeof(name), "7.7.x close code %u", valid[i]);
        snprintf(log, sizeof(log), "close(%u)", valid[i]);
        expect(name, log);
    }

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        reset();
        close_frame(invalid[i], "", 0);
        snprintf(name, sizeof(name), "7.9.x close code %u: 1002",
                 invalid[i]);
        expect(name, "error(1002)");
    }

    /* what we send: orbit_ws_close_payload */

    UNIT_OK(orbit_ws_close_payload(buf, 1000, "") == 2
            && memcmp(buf, "\x03\xe8", 2) == 0, "close payload: code only");

    UNIT_OK(orbit_ws_close_payload(buf, 4001, NULL) == 2
            && memcmp(buf, "\x0f\xa1", 2) == 0, "close payload: no reason");

    UNIT_OK(orbit_ws_close_payload(buf, 1001, "going away") == 12
            && memcmp(buf, "\x03\xe9going away", 12) == 0,
            "close payload: code and reason");

    UNIT_OK(orbit_ws_close_payload(buf, ORBIT_WS_CLOSE_NO_STATUS, "x") == 0,
            "close payload: 1005 never goes on the wire (empty payload)");

    memset(pay, 'a', 200);
    pay[200] = '\0';
    UNIT_OK(orbit_ws_close_payload(buf, 1000, (char *) pay) == 125
            && buf[124] == 'a', "close payload: ASCII cut at 123 bytes");

    /* 121 + a 2-byte character = 123: fits */
    memset(pay, 'a', 200);
    memcpy(pay + 121, "\xc3\xa9", 2);
    UNIT_OK(orbit_ws_close_payload(buf, 1000, (char *) pay) == 125
            && memcmp(buf + 123, "\xc3\xa9", 2) == 0,
            "close payload: a character ending at byte 123 is kept");

    /* 122 + a 2-byte character = 124: the character goes */
    memset(pay, 'a', 200);
    memcpy(pay + 122, "\xc3\xa9", 2);
    UNIT_OK(orbit_ws_close_payload(buf, 1000, (char *) pay) == 124,
            "close payload: a 2-byte character across 123 is left out");

    /* a 4-byte character at 120..123 */
    memset(pay, 'a', 200);
    memcpy(pay + 120, "\xf0\x9f\x98\x80", 4);
    UNIT_OK(orbit_ws_close_payload(buf, 1000, (char *) pay) == 122,
            "close payload: a 4-byte character across 123 is left out");

    /* what we send parses back */
    reset();
    i = orbit_ws_close_payload(buf, 1000, (char *) pay);
    frame(FIN | CLOSE, buf, i);
    expect("close payload: a cut reason parses back", "close(1000)");

    UNIT_OK(orbit_ws_close_code_valid(1000) && orbit_ws_close_code_valid(1003)
            && !orbit_ws_close_code_valid(1004)
            && !orbit_ws_close_code_valid(1005)
            && !orbit_ws_close_code_valid(1006)
            && orbit_ws_close_code_valid(1007)
            && orbit_ws_close_code_valid(1014)
            && !orbit_ws_close_code_valid(1015)
            && !orbit_ws_close_code_valid(2999)
            && orbit_ws_close_code_valid(3000)
            && orbit_ws_close_code_valid(4999)
            && !orbit_ws_close_code_valid(5000)
            && !orbit_ws_close_code_valid(999),
            "close codes: the valid ranges' edges");
}


/* the message cap: 1009 once a header announces too much */

static void
test_limit(void)
{
    res_t   r;
    size_t  at;

    reset();
    memset(pay, '*', 200);
    frame(FIN | TEXT, pay, 126);
    in_len = 4;
    UNIT_OK(same(1, 125, "error(1009)", NULL, 0),
            "max_message: a header announcing 126 of 125: 1009, no payload");
    expect_at("max_message: ... seen once the length is read", 1, 125, 4);

    reset();
    frame(FIN | BINARY, pay, 125);
    UNIT_OK(same(1, 125, "binary(125)", pay, 125),
            "max_message: exactly the cap passes");

    reset();
    frame(TEXT, pay, 100);
    frame(FIN | PING, "", 0);
    at = in_len + 2;
    frame(FIN | CONT, pay, 100);
    UNIT_OK(same(1, 150, "ping(0) error(1009)", NULL, 0),
            "max_message: over the cap in the second fragment: 1009");
    expect_at("max_message: ... on the second fragment's length", 1, 150,
              at);

    reset();
    frame(TEXT, pay, 100);
    frame(FIN | CONT, pay, 100);
    frame(FIN | BINARY, pay, 200);
    UNIT_OK(same(1, 200, "text(200) binary(200)", NULL, 0),
            "max_message: the count starts again with each message");

    reset();
    frame(FIN | PING, pay, 125);
    UNIT_OK(same(1, 10, "ping(125)", NULL, 0),
            "max_message: control frames are not counted");

    reset();
    raw("\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 10);
    raw(key, 4);
    UNIT_OK(same(1, 1000, "error(1009)", NULL, 0),
            "max_message: a 2^63-1 length: 1009");

    reset();
    raw("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00", 10);
    raw(key, 4);
    memset(&r, 0, sizeof(res_t));
    run(&r, 1, 0, 0, 0);
    UNIT_OK(!r.bad && r.log[0] == '\0' && r.events == 0 && r.used == 14,
            "max_message 0: no cap, a 4 GB frame waits for its payload");
    free(r.data);
}


/* what we send: frame headers and masking, parsed back */

static void
test_write(void)
{
    char            log[256];
    size_t          n, i, k, off;
    unsigned char   h[ORBIT_WS_HEADER_MAX], a[100], b[100];

    static const size_t  lens[] = { 0, 1, 125, 126, 127, 65535, 65536 };

    n = orbit_ws_frame_header(h, TEXT, 1, 0, NULL);
    UNIT_OK(n == 2 && memcmp(h, "\x81\x00", 2) == 0, "frame header: empty");

    n = orbit_ws_frame_header(h, BINARY, 1, 125, NULL);
    UNIT_OK(n == 2 && memcmp(h, "\x82\x7d", 2) == 0,
            "frame header: 125 in 7 bits");

    n = orbit_ws_frame_header(h, TEXT, 1, 126, NULL);
    UNIT_OK(n == 4 && memcmp(h, "\x81\x7e\x00\x7e", 4) == 0,
            "frame header: 126 in 16 bits");

    n = orbit_ws_frame_header(h, TEXT, 0, 65535, NULL);
    UNIT_OK(n == 4 && memcmp(h, "\x01\x7e\xff\xff", 4) == 0,
            "frame header: 65535 in 16 bits, no FIN");

    n = orbit_ws_frame_header(h, CONT, 1, 65536, NULL);
    UNIT_OK(n == 10
            && memcmp(h, "\x80\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0,
            "frame header: 65536 in 64 bits");

    n = orbit_ws_frame_header(h, BINARY, 1, 0x123456789aULL, NULL);
    UNIT_OK(n == 10
            && memcmp(h, "\x82\x7f\x00\x00\x00\x12\x34\x56\x78\x9a", 10) == 0,
            "frame header: a 5-byte length");

    n = orbit_ws_frame_header(h, PING, 1, 5, key);
    UNIT_OK(n == 6 && memcmp(h, "\x89\x85", 2) == 0
            && memcmp(h + 2, key, 4) == 0,
            "frame header: masked, 7 bits: MASK bit and key");

    n = orbit_ws_frame_header(h, TEXT, 1, 300, key);
    UNIT_OK(n == 8 && memcmp(h, "\x81\xfe\x01\x2c", 4) == 0
            && memcmp(h + 4, key, 4) == 0, "frame header: masked, 16 bits");

    n = orbit_ws_frame_header(h, TEXT, 1, 65536, key);
    UNIT_OK(n == ORBIT_WS_HEADER_MAX && h[1] == 0xff
            && memcmp(h + 10, key, 4) == 0, "frame header: masked, 64 bits");

    /* orbit_ws_mask: in pieces at any offset, as whole; twice is nothing */

    for (i = 0; i < sizeof(a); i++) {
        a[i] = (unsigned char) (i * 7 + 3);
    }

    memcpy(b, a, sizeof(a));
    orbit_ws_mask(b, sizeof(b), key, 0);

    for (i = 0; i < sizeof(b) && b[i] == (a[i] ^ key[i & 3]); i++) {
        /* void */
    }

    UNIT_OK(i == sizeof(b), "mask: p[i] ^ key[i % 4]");

    k = 1;

    for (off = 0; off < sizeof(b); off += n) {
        n = k < sizeof(b) - off ? k : sizeof(b) - off;
        orbit_ws_mask(b + off, n, key, off + 4 * 1000003ULL);
        k = k * 3 % 17 + 1;
    }

    UNIT_OK(memcmp(a, b, sizeof(a)) == 0,
            "mask: unmasking in odd pieces with offsets restores it");

    /* client frames written with these, read by a server parser */

    reset();
    log[0] = '\0';

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(pay, (int) ('a' + i), lens[i]);

        /* two fragments, the first of at most 3 bytes, and a ping between */
        k = lens[i] < 3 ? lens[i] : 3;

        n = orbit_ws_frame_header(in + in_len, i & 1 ? BINARY : TEXT, 0, k,
                                  key);
        in_len += n;
        memcpy(in + in_len, pay, k);
        orbit_ws_mask(in + in_len, k, key, 0);
        in_len += k;

        n = orbit_ws_frame_header(in + in_len, PING, 1, 2, key);
        in_len += n;
        memcpy(in + in_len, "pi", 2);
        orbit_ws_mask(in + in_len, 2, key, 0);
        in_len += 2;

        n = orbit_ws_frame_header(in + in_len, CONT, 1, lens[i] - k, key);
        in_len += n;
        memcpy(in + in_len, pay + k, lens[i] - k);
        orbit_ws_mask(in + in_len, lens[i] - k, key, 0);
        in_len += lens[i] - k;

        n = strlen(log);
        snprintf(log + n, sizeof(log) - n, "%sping(2) %s(%zu)", n ? " " : "",
                 i & 1 ? "binary" : "text", lens[i]);

        if (i == 2) {
            /* the 64 KB cases make the split-anywhere run too long */
            UNIT_OK(same(1, 0, log, NULL, 0),
                    "round trip: short frames written masked, read back");
        }
    }

    k = orbit_ws_close_payload(a, 4321, "done");
    n = orbit_ws_frame_header(in + in_len, CLOSE, 1, k, key);
    in_len += n;
    memcpy(in + in_len, a, k);
    orbit_ws_mask(in + in_len, k, key, 0);
    in_len += k;

    n = strlen(log);
    snprintf(log + n, sizeof(log) - n, " close(4321)");

    UNIT_OK(same(1, 0, log, NULL, 0),
            "round trip: frames of every length class, masked, read back");

    /* and the server's unmasked frames, by a client parser */

    reset();
    in_len = orbit_ws_frame_header(in, BINARY, 1, 65536, NULL);
    memset(in + in_len, 0x5a, 65536);
    in_len += 65536;
    UNIT_OK(same(0, 0, "binary(65536)", NULL, 0),
            "round trip: an unmasked frame read by the client side");
}


/* the handshake */

static void
test_handshake(void)
{
    char  out[ORBIT_WS_ACCEPT_LEN + 1], k[ORBIT_WS_KEY_LEN + 1];

    static const char  *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",           /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===",         /* 25 */
        "dGhlIHNhbXBsZSBub25jZQAA",          /* 18 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",          /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub25j!Q==",
        "dGhlIHNhbXBsZSBub25jZ Q==",
        " dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ-_",
        "dGhlIHNhbXBsZSBub25jZSBhbmQgbW9yZQ==", /* 26 bytes */
        NULL
    };

    int  i, ok;

    memset(out, 0, sizeof(out));
    UNIT_OK(orbit_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out) == 0,
            "accept: the RFC's key");
    UNIT_STR(out, strlen(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
             "accept: the RFC's answer, 28 characters");

    ok = 1;

    for (i = 0; bad[i]; i++) {
        if (orbit_ws_accept(bad[i], strlen(bad[i]), out) != -1) {
            printf("#   accepted '%s'\n", bad[i]);
            ok = 0;
        }
    }

    UNIT_OK(ok, "accept: keys that are not base64 of 16 bytes: -1");

    UNIT_OK(orbit_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 23, out) == -1,
            "accept: the length given is what counts");

    memset(k, 0, sizeof(k));
    orbit_ws_client_key((const unsigned char *) "the sample nonce", k);
    UNIT_STR(k, strlen(k), "dGhlIHNhbXBsZSBub25jZQ==",
             "client key: base64 of the 16 bytes, 24 characters");

    memset(out, 0, sizeof(out));
    UNIT_OK(orbit_ws_accept(k, ORBIT_WS_KEY_LEN, out) == 0
            && strlen(out) == ORBIT_WS_ACCEPT_LEN,
            "client key: accepted by the server side");
}


static void
test_tokens(void)
{
    UNIT_OK(orbit_ws_has_token(str("websocket"), "websocket"),
            "token: alone");
    UNIT_OK(orbit_ws_has_token(str("keep-alive, Upgrade"), "upgrade"),
            "token: second in a list, in another case");
    UNIT_OK(orbit_ws_has_token(str(" ,\tUpgrade ,"), "upgrade"),
            "token: spaces, tabs and empty elements around it");
    UNIT_OK(!orbit_ws_has_token(str("upgraded"), "upgrade")
            && !orbit_ws_has_token(str("websocketx, x"), "websocket")
            && !orbit_ws_has_token(str("up grade"), "upgrade")
            && !orbit_ws_has_token(str(""), "upgrade"),
            "token: a longer word, a split word, nothing: no");
}


#define URL(u, s)  orbit_ws_url_parse(u, s, sizeof(s) - 1)

static void
test_url(void)
{
    int             i, ok;
    orbit_ws_url_t  u;

    static const char  *bad[] = {
        "http://example.com/", "ws:/example.com/", "ws://", "wss://",
        "ws:///path", "ws://host:/", "ws://host:0/", "ws://host:65536/",
        "ws://host:12a/", "ws://user@host/", "ws://user:pw@host/",
        "ws://host/path#frag", "ws://host/a b", "ws://host/\x01",
        "ws://host/\xc3\xa9", "ws://[::1/", "ws://[::g]/", "ws://[]/",
        "ws://ho st/", "ws://host\r\nX: y/", "ws://host:80:81/",
        NULL
    };

    UNIT_OK(URL(&u, "ws://example.com/chat?x=1") == 0
            && !u.tls && u.port == 80,
            "url: ws, the default port 80");
    UNIT_STR(u.host, u.host_len, "example.com", "url: host");
    UNIT_STR(u.authority, u.authority_len, "example.com",
             "url: authority, for Host");
    UNIT_STR(u.path, u.path_len, "/chat?x=1", "url: path and query");

    UNIT_OK(URL(&u, "WSS://api.openai.com/v1/realtime?model=gpt-realtime")
            == 0 && u.tls && u.port == 443,
            "url: wss in capitals, the default port 443");
    UNIT_STR(u.path, u.path_len, "/v1/realtime?model=gpt-realtime",
             "url: wss path");

    UNIT_OK(URL(&u, "ws://127.0.0.1:8080") == 0 && u.port == 8080
            && u.path_len == 0, "url: an address and a port, no path");
    UNIT_STR(u.host, u.host_len, "127.0.0.1", "url: the address");
    UNIT_STR(u.authority, u.authority_len, "127.0.0.1:8080",
             "url: authority with its port");

    UNIT_OK(URL(&u, "wss://[::1]:9443?q") == 0 && u.port == 9443 && u.tls,
            "url: IPv6 in brackets, a query without a path");
    UNIT_STR(u.host, u.host_len, "::1", "url: IPv6 host without brackets");
    UNIT_STR(u.authority, u.authority_len, "[::1]:9443",
             "url: IPv6 authority with brackets");
    UNIT_STR(u.path, u.path_len, "?q", "url: the query alone");

    UNIT_OK(URL(&u, "ws://a-b_c.example:65535/") == 0 && u.port == 65535,
            "url: the highest port, '-' and '_' in a name");

    ok = 1;

    for (i = 0; bad[i]; i++) {
        if (orbit_ws_url_parse(&u, bad[i], strlen(bad[i])) != -1) {
            printf("#   accepted '%s'\n", bad[i]);
            ok = 0;
        }
    }

    UNIT_OK(ok, "url: other schemes, no host, bad ports, user "
                "information, fragments, bytes to escape: -1");
}


static void
test_header_valid(void)
{
    UNIT_OK(orbit_ws_header_valid(str("Authorization"),
                                  str("Bearer sk-abc\tdef")),
            "header: a token name, a value with a tab");
    UNIT_OK(orbit_ws_header_valid(str("OpenAI-Beta"), str("realtime=v1"))
            && orbit_ws_header_valid(str("X-Empty"), str("")),
            "header: OpenAI-Beta; an empty value");
    UNIT_OK(!orbit_ws_header_valid(str(""), str("x"))
            && !orbit_ws_header_valid(str("Bad Name"), str("x"))
            && !orbit_ws_header_valid(str("Bad:Name"), str("x")),
            "header: no name, a space or a colon in it: no");
    UNIT_OK(!orbit_ws_header_valid(str("X"), str("a\r\nHost: evil"))
            && !orbit_ws_header_valid(str("X"), str("a\nb"))
            && !orbit_ws_header_valid(str("X"), "a\0b", 3)
            && !orbit_ws_header_valid(str("X"), str("a\x7f")),
            "header: CR, LF, NUL, DEL in a value: no (no injection)");
}


#define RESP(r, s)  orbit_ws_response_parse(r, s, sizeof(s) - 1)

static const char  resp_101[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "upgrade: WebSocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n"
    "Sec-WebSocket-Protocol: chat\r\n"
    "X-Other: 1\r\n"
    "\r\n"
    "\x81\x02hi";


static void
test_response(void)
{
    long                 n, head;
    size_t               i;
    int                  ok;
    orbit_ws_response_t  r;

    static const char  key[] = "dGhlIHNhbXBsZSBub25jZQ==";

    static const char  *bad[] = {
        "HTTP/1.1 101\r\nUpgrade websocket\r\n\r\n",
        "HTTP/1.1 101\r\n Folded: line\r\n\r\n",
        "HTTP/1.1 101\r\nName : v\r\n\r\n",
        "HTTP/1.1 101\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 10\r\n\r\n",
        "HTTP/1.1 1011 x\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1  101 x\r\n\r\n",
        "HTTP/x.1 101 x\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2\r\n",
        "\x16\x03\x01\x02\x2a\x02\n",
        NULL
    };

    head = (long) (sizeof(resp_101) - 1 - 4);

    n = RESP(&r, resp_101);
    UNIT_OK(n == head, "response: the head's length, frames behind it");
    UNIT_OK(r.status == 101 && r.upgrade && r.connection && !r.extensions
            && r.accepts == 1 && r.protocols == 1,
            "response: status, Upgrade and Connection by token, in any "
            "case");
    UNIT_STR(r.accept, r.accept_len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
             "response: the accept, spaces trimmed");
    UNIT_STR(r.protocol, r.protocol_len, "chat", "response: the protocol");
    UNIT_OK(orbit_ws_response_check(&r, key, str("superchat, chat"))
            == NULL, "check: the RFC's key, a protocol offered: ok");

    ok = 1;

    for (i = 0; i < (size_t) head; i++) {
        if (orbit_ws_response_parse(&r, resp_101, i) != 0) {
            printf("#   %zu bytes: not 0\n", i);
            ok = 0;
        }
    }

    UNIT_OK(ok, "response: every shorter prefix is not whole yet (0)");

    n = RESP(&r, "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: upgrade"
                 "\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n\n");
    UNIT_OK(n > 0 && orbit_ws_response_check(&r, key, NULL, 0) == NULL,
            "response: bare LF line ends; no protocol asked, none given");

    n = RESP(&r, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    UNIT_OK(n == 38 && r.status == 200,
            "response: a 200 is parsed, its status kept");
    UNIT_OK(orbit_ws_response_check(&r, key, NULL, 0) != NULL
            && strstr(orbit_ws_response_check(&r, key, NULL, 0), "101"),
            "check: a 200 is refused, the message says 101");

    n = RESP(&r, "HTTP/1.0 401\r\n\r\n");
    UNIT_OK(n > 0 && r.status == 401, "response: HTTP/1.0, no reason");

    ok = 1;

    for (i = 0; bad[i]; i++) {
        if (orbit_ws_response_parse(&r, bad[i], strlen(bad[i])) != -1) {
            printf("#   accepted '%s'\n", bad[i]);
            ok = 0;
        }
    }

    UNIT_OK(ok, "response: bad header lines, bad status lines, other "
                "protocols: -1");

    UNIT_OK(RESP(&r, "SSH-2.0-Open") == 0
            && RESP(&r, "SSH-2.0-OpenSSH\n") == -1,
            "response: judged once a line is whole, at once then");

#define CHECK(s, off, p)                                                     \
    (RESP(&r, s) > 0 ? orbit_ws_response_check(&r, key, p, off) : "parse")
#define UPG  "Upgrade: websocket\r\n"
#define CON  "Connection: upgrade\r\n"
#define ACC  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
#define H101 "HTTP/1.1 101 x\r\n"

    UNIT_OK(strstr(CHECK(H101 CON ACC "\r\n", 0, NULL), "Upgrade") != NULL,
            "check: no Upgrade");
    UNIT_OK(strstr(CHECK(H101 UPG ACC "\r\n", 0, NULL), "Connection")
            != NULL, "check: no Connection");
    UNIT_OK(strstr(CHECK(H101 UPG CON "\r\n", 0, NULL),
                   "no Sec-WebSocket-Accept") != NULL,
            "check: no accept");
    UNIT_OK(strstr(CHECK(H101 UPG CON "Sec-WebSocket-Accept: "
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", 0, NULL),
                   "wrong") != NULL,
            "check: a wrong accept");
    UNIT_OK(strstr(CHECK(H101 UPG CON ACC ACC "\r\n", 0, NULL),
                   "more than one") != NULL,
            "check: two accepts");
    UNIT_OK(strstr(CHECK(H101 UPG CON ACC "Sec-WebSocket-Extensions: "
                         "permessage-deflate\r\n\r\n", 0, NULL),
                   "extension") != NULL,
            "check: an extension never offered");
    UNIT_OK(strstr(CHECK(H101 UPG CON ACC "Sec-WebSocket-Protocol: chat"
                         "\r\n\r\n", 0, NULL), "not offered") != NULL
            && strstr(CHECK(H101 UPG CON ACC "Sec-WebSocket-Protocol: chat"
                            "\r\n\r\n", 9, "superchat"), "not offered")
               != NULL
            && strstr(CHECK(H101 UPG CON ACC "Sec-WebSocket-Protocol: "
                            "chat, x\r\n\r\n", 7, "chat, x"), "bad")
               != NULL,
            "check: a protocol when none was offered, one not offered, "
            "a list");
    UNIT_OK(CHECK(H101 UPG CON ACC "\r\n", 4, "chat") == NULL,
            "check: a protocol offered, none chosen: ok");

#undef UPG
#undef CON
#undef ACC
#undef H101
#undef CHECK
}


int
main(void)
{
    test_utf8();
    test_framing();
    test_ping();
    test_rsv();
    test_opcodes();
    test_fragments();
    test_text();
    test_close();
    test_limit();
    test_write();
    test_handshake();
    test_tokens();
    test_url();
    test_header_valid();
    test_response();

    return unit_done();
}
