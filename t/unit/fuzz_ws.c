/*
 * libFuzzer harness of src/io/orbit_ws_codec.c ("make -C t/unit fuzz",
 * then "../../build/fuzz/fuzz_ws -max_total_time=60").  The first 4 bytes
 * choose the message cap, the mode and how the rest is cut into pieces.
 *
 * The rest is read as frames: as it is (raw), or, in the second mode, as
 * a list of frame specs that are written out with orbit_ws_frame_header()
 * and orbit_ws_mask() (so the fuzzer need not find masks and lengths
 * itself).  The stream goes to a server-side and to a client-side parser,
 * each fed whole and fed in random pieces, and
 *
 *   - *pos never goes back nor past end; AGAIN only with the piece used
 *     up (or after a close); every DATA or CONTROL event consumes bytes;
 *     DATA lies inside the bytes consumed by that call;
 *   - "first" comes exactly on a message's first event, "fin" ends it,
 *     the opcode is steady; a text message is UTF-8 (checked here by a
 *     decoder of its own); no message passes the cap;
 *   - a close has no payload and code 1005, or a valid code that is the
 *     payload's first two bytes, and a UTF-8 reason; controls <= 125;
 *   - an error has code 1002, 1007 or 1009 and repeats without consuming;
 *     after a close nothing is consumed;
 *   - fed whole or in pieces, the whole messages, the control frames and
 *     the end (error code, close, or waiting) are the same;
 *   - orbit_utf8_feed(), on the input cut in pieces, agrees with the
 *     decoder here, and fails on the first byte that no completion can
 *     save (fail fast).
 *
 * A broken promise aborts.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/orbit_ws_codec.h"


#define FZ_OUT_MAX  (256 * 1024)      /* the second mode's stream, at most */

typedef struct {
    unsigned char  *data;
    size_t          len;
    size_t          size;
} fz_buf_t;

typedef struct {
    fz_buf_t        log;          /* whole messages, controls, the end */
    fz_buf_t        msg;          /* the open message */
} fz_out_t;


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
fz_add(fz_buf_t *b, const void *s, size_t n)
{
    while (b->len + n > b->size) {
        b->size = b->size ? b->size * 2 : 1024;
        b->data = realloc(b->data, b->size);
        if (b->data == NULL) {
            abort();
        }
    }

    if (n) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
    }
}


/* UTF-8 by decoding to code points, apart from the codec's checker */

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


/*
 * Some bytes appended make s valid UTF-8: s splits into a valid part and
 * a tail of at most 3 bytes that a completion (of the ends of the ranges
 * RFC 3629 allows, which is enough) makes a character.
 */

static int
fz_utf8_extendable(const unsigned char *s, size_t len)
{
    size_t          i, k, n;
    unsigned char   buf[8];

    static const unsigned char  ends[] = {
        0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf
    };

    for (n = 0; n <= 3 && n <= len; n++) {
        if (!fz_utf8(s, len - n)) {
            continue;
        }

        memcpy(buf, s + len - n, n);

        for (k = 0; k < 6 * 6 * 6; k++) {
            buf[n] = ends[k % 6];
            buf[n + 1] = ends[k / 6 % 6];
            buf[n + 2] = ends[k / 36];

            for (i = 0; i <= 3; i++) {
                if (fz_utf8(buf, n + i)) {
                    return 1;
                }
            }
        }
    }

    return 0;
}


static void
fz_utf8_check(const unsigned char *s, size_t len, uint32_t seed)
{
    int           rc;
    size_t        i, n, bad;
    orbit_utf8_t  u;

    u.state = 0;
    rc = 0;

    for (i = 0; rc == 0 && i < len; i += n) {
        n = fz_rnd(&seed) % 5;
        n = n < len - i ? n : len - i;
        rc = orbit_utf8_feed(&u, s + i, n);
    }

    if ((rc == 0 && orbit_utf8_complete(&u)) != fz_utf8(s, len)) {
        abort();
    }

    /* a byte at a time: the first failure is the first hopeless prefix */

    u.state = 0;

    for (bad = 0; bad < len; bad++) {
        if (orbit_utf8_feed(&u, s + bad, 1) != 0) {
            break;
        }
    }

    if (bad < len) {
        if (!fz_utf8_extendable(s, bad)
            || fz_utf8_extendable(s, bad + 1)
            || orbit_utf8_feed(&u, (const unsigned char *) "a", 1) != -1)
        {
            abort();
        }

    } else if (!fz_utf8_extendable(s, len)) {
        abort();
    }
}


static void
fz_record(fz_buf_t *b, unsigned char tag, unsigned code, const void *s,
    size_t n)
{
    fz_add(b, &tag, 1);
    fz_add(b, &code, sizeof(code));
    fz_add(b, &n, sizeof(n));
    fz_add(b, s, n);
}


/*
 * Parses a copy of in (pieces of random size when seed is not 0) and
 * writes whole messages, control frames and the end into o->log.
 */

static void
fz_parse(const unsigned char *in, size_t len, int server, uint64_t max,
    uint32_t seed, fz_out_t *o)
{
    int                 open, op, done;
    size_t              off, n;
    unsigned            code;
    unsigned char      *buf, *pos, *end, *before;
    orbit_ws_event_t    ev;
    orbit_ws_event_e    rc;
    orbit_ws_parser_t   p;

    memset(o, 0, sizeof(fz_out_t));

    buf = malloc(len + 1);
    if (buf == NULL) {
        abort();
    }

    memcpy(buf, in, len);

    memset(&p, 0x5a, sizeof(orbit_ws_parser_t));
    p.max_message = max;
    p.server = server;
    orbit_ws_parser_init(&p);

    open = 0;
    op = 0;
    done = 0;
    off = 0;

    do {
        n = len - off;

        if (seed) {
            n = fz_rnd(&seed) % ((seed & 0x100) ? 4 : 64);
            n = n < len - off ? n : len - off;
        }

        pos = buf + off;
        end = pos + n;
        off += n;

        for ( ;; ) {
            before = pos;
            rc = orbit_ws_parse(&p, &pos, end, &ev);

            if (pos < before || pos > end) {
                abort();
            }

            if (rc == ORBIT_WS_AGAIN) {
                if (pos != end) {
                    abort();
                }

                break;
            }

            if (rc == ORBIT_WS_DATA) {
                if (pos == before || ev.data < before
                    || ev.data + ev.len > pos
                    || ev.first != !open
                    || (ev.opcode != ORBIT_WS_OP_TEXT
                        && ev.opcode != ORBIT_WS_OP_BINARY)
                    || (!ev.first && ev.opcode != op))
                {
                    abort();
                }

                if (ev.first) {
                    op = ev.opcode;
                    o->msg.len = 0;
                }

                fz_add(&o->msg, ev.data, ev.len);

                if (max && o->msg.len > max) {
                    abort();
                }

                open = !ev.fin;

                if (ev.fin) {
                    if (op == ORBIT_WS_OP_TEXT
                        && !fz_utf8(o->msg.data, o->msg.len))
                    {
                        abort();
                    }

                    fz_record(&o->log, 'M', (unsigned) op, o->msg.data,
                              o->msg.len);
                }

                continue;
            }

            if (rc == ORBIT_WS_CONTROL) {
                if (pos == before || ev.len > ORBIT_WS_CONTROL_MAX
                    || ev.data == NULL)
                {
                    abort();
                }

                if (ev.opcode == ORBIT_WS_OP_PING
                    || ev.opcode == ORBIT_WS_OP_PONG)
                {
                    fz_record(&o->log, 'C', (unsigned) ev.opcode, ev.data,
                              ev.len);
                    continue;
                }

                if (ev.opcode != ORBIT_WS_OP_CLOSE) {
                    abort();
                }

                if (ev.len == 0 ? ev.code != ORBIT_WS_CLOSE_NO_STATUS
                    : (ev.len < 2
                       || ev.code != ((unsigned) ev.data[0] << 8 | ev.data[1])
                       || !orbit_ws_close_code_valid(ev.code)
                       || !fz_utf8(ev.data + 2, ev.len - 2)))
                {
                    abort();
                }

                fz_record(&o->log, 'X', ev.code, ev.data, ev.len);

                before = pos;
                if (orbit_ws_parse(&p, &pos, end, &ev) != ORBIT_WS_AGAIN
                    || pos != before)
                {
                    abort();
                }

                done = 1;
                break;
            }

            if (rc != ORBIT_WS_ERROR || ev.reason == NULL
                || (ev.code != ORBIT_WS_CLOSE_PROTOCOL
                    && ev.code != ORBIT_WS_CLOSE_BAD_DATA
                    && ev.code != ORBIT_WS_CLOSE_TOO_BIG)
                || (ev.code == ORBIT_WS_CLOSE_TOO_BIG && max == 0))
            {
                abort();
            }

            code = ev.code;
            fz_record(&o->log, 'E', code, NULL, 0);

            before = pos;
            if (orbit_ws_parse(&p, &pos, end, &ev) != ORBIT_WS_ERROR
                || ev.code != code || pos != before)
            {
                abort();
            }

            done = 1;
            break;
        }

    } while (!done && off < len);

    free(buf);
    free(o->msg.data);
}


/*
 * The second mode: specs of 3 bytes and a payload.  Byte 0 is the frame's
 * first byte as is (FIN, RSV, opcode), byte 1 the payload length (the
 * top bit asks for a 16-bit length of byte 1 & 0x7f times 600), byte 2
 * picks a mask key; then the payload, from the input and, where it
 * runs out, a fill.  The stream stops short of FZ_OUT_MAX.
 */

static size_t
fz_build(const unsigned char *in, size_t len, int masked, unsigned char *out)
{
    size_t          i, n, o, plen;
    unsigned char   key[4];

    o = 0;
    i = 0;

    while (len - i >= 3) {
        plen = in[i + 1] & 0x7f;

        if (in[i + 1] & 0x80) {
            plen *= 600;
        }

        if (o + ORBIT_WS_HEADER_MAX + plen > FZ_OUT_MAX) {
            break;
        }

        key[0] = in[i + 2];
        key[1] = in[i + 2] * 3;
        key[2] = in[i + 2] ^ 0x5c;
        key[3] = in[i + 2] + 1;

        n = orbit_ws_frame_header(out + o, in[i] & 0x0f, in[i] >> 7, plen,
                                  masked ? key : NULL);

        /* RSV bits, as asked */
        out[o] |= in[i] & 0x70;

        o += n;
        i += 3;

        /* the payload: from the input, then a repeated fill */
        n = plen < len - i ? plen : len - i;
        memcpy(out + o, in + i, n);
        memset(out + o + n, 'a', plen - n);
        i += n;

        if (masked) {
            orbit_ws_mask(out + o, plen, key, 0);
        }

        o += plen;
    }

    return o;
}


static void
fz_compare(const unsigned char *in, size_t len, int server, uint64_t max,
    uint32_t seed)
{
    fz_out_t  whole, cut;

    fz_parse(in, len, server, max, 0, &whole);
    fz_parse(in, len, server, max, seed, &cut);

    if (whole.log.len != cut.log.len
        || (whole.log.len
            && memcmp(whole.log.data, cut.log.data, whole.log.len) != 0))
    {
        abort();
    }

    free(whole.log.data);
    free(cut.log.data);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              server;
    size_t           n;
    uint32_t         seed;
    uint64_t         max;
    unsigned char   *out;
    static uint64_t  maxes[] = { 0, 1, 125, 126, 1000, 65536, 0, 0 };

    if (size < 4) {
        return 0;
    }

    max = maxes[data[0] & 7];
    seed = (uint32_t) data[3] << 8 | data[2] | 0x10000;

    if (data[0] & 0x08) {
        out = malloc(FZ_OUT_MAX);
        if (out == NULL) {
            abort();
        }

        server = (data[0] >> 4) & 1;
        n = fz_build(data + 4, size - 4, server, out);
        fz_compare(out, n, server, max, seed);
        fz_compare(out, n, !server, max, seed ^ 0x55);

        free(out);
        return 0;
    }

    data += 4;
    size -= 4;

    fz_utf8_check(data, size, seed);

    for (server = 0; server < 2; server++) {
        fz_compare(data, size, server, max, seed);
    }

    return 0;
}
