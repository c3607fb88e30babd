/*
 * OrbitDesk: the RFC 6455 codec (see orbit_ws_codec.h).  Plain C and
 * libcrypto (SHA-1, base64); no nginx, no allocation.
 *
 * Choices the header leaves open:
 *
 *   - every data frame gives at least one DATA event: an empty frame,
 *     final or not, gives one of length 0, so "first" always comes with
 *     the message's first frame and "fin" with its last;
 *   - a CONTROL event's data is the whole payload: for a close frame the
 *     two code bytes and the reason, ready to echo (code has the code);
 *   - the parser fails on the byte that breaks a rule: header rules on
 *     the header byte that carries them, the message cap once the length
 *     is read (before any payload), UTF-8 in the chunk where a bad byte
 *     comes (nothing of that chunk is handed out);
 *   - a non-minimal length encoding is accepted on receipt;
 *   - orbit_ws_close_payload() writes no payload for 1005 (no status),
 *     which must never go on the wire: echoing a close without a code
 *     echoes an empty one.
 */

#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "orbit_ws_codec.h"


/* parser states */
enum {
    orbit_ws_st_header = 0,
    orbit_ws_st_data,             /* payload of a text/binary/cont frame */
    orbit_ws_st_control,          /* payload of a control frame, into ctl */
    orbit_ws_st_closed            /* a close frame was returned */
};

/* failures: once failed, p->state holds the index into this table */
enum {
    orbit_ws_err_rsv = 0,
    orbit_ws_err_opcode,
    orbit_ws_err_control_fin,
    orbit_ws_err_control_len,
    orbit_ws_err_no_message,
    orbit_ws_err_in_message,
    orbit_ws_err_unmasked,
    orbit_ws_err_masked,
    orbit_ws_err_length,
    orbit_ws_err_too_big,
    orbit_ws_err_utf8,
    orbit_ws_err_close_len,
    orbit_ws_err_close_code,
    orbit_ws_err_close_utf8
};


#define ORBIT_UTF8_REJECT  1

#define orbit_utf8_expect(need, lo, hi)                                      \
    ((uint32_t) (need) | (uint32_t) (lo) << 8 | (uint32_t) (hi) << 16)

#define orbit_ws_is_control(op)  ((op) & 0x8)


typedef struct {
    unsigned     code;
    const char  *reason;
} orbit_ws_error_t;


static orbit_ws_event_e orbit_ws_header_byte(orbit_ws_parser_t *p,
    orbit_ws_event_t *ev);
static void orbit_ws_header_done(orbit_ws_parser_t *p);
static orbit_ws_event_e orbit_ws_data(orbit_ws_parser_t *p,
    unsigned char **pos, unsigned char *end, orbit_ws_event_t *ev);
static orbit_ws_event_e orbit_ws_control(orbit_ws_parser_t *p,
    orbit_ws_event_t *ev);
static orbit_ws_event_e orbit_ws_fail(orbit_ws_parser_t *p, unsigned err,
    orbit_ws_event_t *ev);
static void orbit_ws_next_frame(orbit_ws_parser_t *p);


static const orbit_ws_error_t  orbit_ws_errors[] = {
    { ORBIT_WS_CLOSE_PROTOCOL, "reserved bits set" },
    { ORBIT_WS_CLOSE_PROTOCOL, "unknown opcode" },
    { ORBIT_WS_CLOSE_PROTOCOL, "fragmented control frame" },
    { ORBIT_WS_CLOSE_PROTOCOL, "control frame over 125 bytes" },
    { ORBIT_WS_CLOSE_PROTOCOL, "continuation without a message" },
    { ORBIT_WS_CLOSE_PROTOCOL, "new message inside a fragmented one" },
    { ORBIT_WS_CLOSE_PROTOCOL, "unmasked client frame" },
    { ORBIT_WS_CLOSE_PROTOCOL, "masked server frame" },
    { ORBIT_WS_CLOSE_PROTOCOL, "frame length over 2^63" },
    { ORBIT_WS_CLOSE_TOO_BIG, "message too big" },
    { ORBIT_WS_CLOSE_BAD_DATA, "text is not UTF-8" },
    { ORBIT_WS_CLOSE_PROTOCOL, "close frame of 1 byte" },
    { ORBIT_WS_CLOSE_PROTOCOL, "invalid close code" },
    { ORBIT_WS_CLOSE_BAD_DATA, "close reason is not UTF-8" }
};

static const char  orbit_ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";


/*
 * UTF-8 as RFC 3629 has it, a byte at a time.  The state is 0 on a
 * character boundary and ORBIT_UTF8_REJECT once invalid, for good;
 * otherwise the continuation bytes still due (bits 0-1) and the range the
 * next one must fall in (bits 8-15 and 16-23).  The narrow ranges after
 * E0, ED, F0 and F4 rule out overlong forms, surrogates and code points
 * past U+10FFFF at the first byte that shows them.
 */

int
orbit_utf8_feed(orbit_utf8_t *u, const unsigned char *p, size_t n)
{
    uint32_t              s;
    unsigned char         c;
    const unsigned char  *end;

    s = u->state;

    if (s == ORBIT_UTF8_REJECT) {
        return -1;
    }

    for (end = p + n; p < end; p++) {
        c = *p;

        if (s == 0) {
            if (c < 0x80) {
                continue;
            }

            if (c >= 0xc2 && c <= 0xdf) {
                s = orbit_utf8_expect(1, 0x80, 0xbf);

            } else if (c == 0xe0) {
                s = orbit_utf8_expect(2, 0xa0, 0xbf);

            } else if (c == 0xed) {
                s = orbit_utf8_expect(2, 0x80, 0x9f);

            } else if (c >= 0xe1 && c <= 0xef) {
                s = orbit_utf8_expect(2, 0x80, 0xbf);

            } else if (c == 0xf0) {
                s = orbit_utf8_expect(3, 0x90, 0xbf);

            } else if (c >= 0xf1 && c <= 0xf3) {
                s = orbit_utf8_expect(3, 0x80, 0xbf);

            } else if (c == 0xf4) {
                s = orbit_utf8_expect(3, 0x80, 0x8f);

            } else {
                /* 80-C1 (continuation, overlong lead), F5-FF */
                u->state = ORBIT_UTF8_REJECT;
                return -1;
            }

            continue;
        }

        if (c < ((s >> 8) & 0xff) || c > ((s >> 16) & 0xff)) {
            u->state = ORBIT_UTF8_REJECT;
            return -1;
        }

        s = (s & 3) == 1 ? 0 : orbit_utf8_expect((s & 3) - 1, 0x80, 0xbf);
    }

    u->state = s;

    return 0;
}


int
orbit_utf8_complete(const orbit_utf8_t *u)
{
    return u->state == 0;
}


void
orbit_ws_parser_init(orbit_ws_parser_t *p)
{
    uint64_t  max_message;
    unsigned  server;

    max_message = p->max_message;
    server = p->server;

    memset(p, 0, sizeof(orbit_ws_parser_t));

    p->max_message = max_message;
    p->server = server;

    orbit_ws_next_frame(p);
}


orbit_ws_event_e
orbit_ws_parse(orbit_ws_parser_t *p, unsigned char **pos, unsigned char *end,
    orbit_ws_event_t *ev)
{
    size_t            n;
    orbit_ws_event_e  rc;

    memset(ev, 0, sizeof(orbit_ws_event_t));

    if (p->failed) {
        return orbit_ws_fail(p, p->state, ev);
    }

    for ( ;; ) {

        switch (p->state) {

        case orbit_ws_st_header:

            while (p->hdr_len < p->hdr_need) {
                if (*pos >= end) {
                    return ORBIT_WS_AGAIN;
                }

                p->hdr[p->hdr_len++] = *(*pos)++;

                rc = orbit_ws_header_byte(p, ev);
                if (rc != ORBIT_WS_AGAIN) {
                    return rc;
                }
            }

            orbit_ws_header_done(p);

            break;

        case orbit_ws_st_data:
            return orbit_ws_data(p, pos, end, ev);

        case orbit_ws_st_control:

            n = (size_t) p->frame_left;

            if ((size_t) (end - *pos) < n) {
                n = (size_t) (end - *pos);
            }

            if (n) {
                memcpy(p->ctl + p->ctl_len, *pos, n);
                *pos += n;

                if (p->masked) {
                    orbit_ws_mask(p->ctl + p->ctl_len, n, p->mask,
                                  p->frame_pos);
                }

                p->ctl_len += n;
                p->frame_pos += n;
                p->frame_left -= n;
            }

            if (p->frame_left) {
                return ORBIT_WS_AGAIN;
            }

            return orbit_ws_control(p, ev);

        default: /* orbit_ws_st_closed */
            return ORBIT_WS_AGAIN;
        }
    }
}


/*
 * The header rules, checked on the byte that carries each: the first
 * byte (RSV, opcode, FIN), the second (MASK, the 7-bit length), the first
 * byte of a 64-bit length (its top bit), and once the length is whole the
 * message cap, before the mask key and the payload come.
 */

static orbit_ws_event_e
orbit_ws_header_byte(orbit_ws_parser_t *p, orbit_ws_event_t *ev)
{
    unsigned  b, op, i, n;
    uint64_t  len;

    switch (p->hdr_len) {

    case 1:
        b = p->hdr[0];
        op = b & 0x0f;

        p->fin = b >> 7;
        p->opcode = op;

        if (b & 0x70) {
            return orbit_ws_fail(p, orbit_ws_err_rsv, ev);
        }

        switch (op) {

        case ORBIT_WS_OP_CONT:
            if (!p->in_message) {
                return orbit_ws_fail(p, orbit_ws_err_no_message, ev);
            }

            break;

        case ORBIT_WS_OP_TEXT:
        case ORBIT_WS_OP_BINARY:
            if (p->in_message) {
                return orbit_ws_fail(p, orbit_ws_err_in_message, ev);
            }

            break;

        case ORBIT_WS_OP_CLOSE:
        case ORBIT_WS_OP_PING:
        case ORBIT_WS_OP_PONG:
            if (!p->fin) {
                return orbit_ws_fail(p, orbit_ws_err_control_fin, ev);
            }

            break;

        default:
            return orbit_ws_fail(p, orbit_ws_err_opcode, ev);
        }

        return ORBIT_WS_AGAIN;

    case 2:
        b = p->hdr[1];
        len = b & 0x7f;

        p->masked = b >> 7;

        if (p->server && !p->masked) {
            return orbit_ws_fail(p, orbit_ws_err_unmasked, ev);
        }

        if (!p->server && p->masked) {
            return orbit_ws_fail(p, orbit_ws_err_masked, ev);
        }

        if (orbit_ws_is_control(p->opcode) && len > ORBIT_WS_CONTROL_MAX) {
            return orbit_ws_fail(p, orbit_ws_err_control_len, ev);
        }

        p->hdr_need = 2 + (len == 126 ? 2 : (len == 127 ? 8 : 0))
                      + (p->masked ? 4 : 0);

        break;

    case 3:
        if ((p->hdr[1] & 0x7f) == 127 && (p->hdr[2] & 0x80)) {
            return orbit_ws_fail(p, orbit_ws_err_length, ev);
        }

        break;
    }

    len = p->hdr[1] & 0x7f;
    n = (len == 126) ? 2 : (len == 127 ? 8 : 0);

    if (p->hdr_len != 2 + n) {
        return ORBIT_WS_AGAIN;
    }

    /* the length is whole (a non-minimal encoding is let through) */

    if (n) {
        len = 0;

        for (i = 0; i < n; i++) {
            len = len << 8 | p->hdr[2 + i];
        }
    }

    p->frame_left = len;
    p->frame_pos = 0;

    if (orbit_ws_is_control(p->opcode)) {
        return ORBIT_WS_AGAIN;
    }

    if (p->opcode != ORBIT_WS_OP_CONT) {
        p->in_message = 1;
        p->msg_opcode = p->opcode;
        p->msg_len = 0;
        p->utf8.state = 0;
    }

    if (p->max_message && len > p->max_message - p->msg_len) {
        return orbit_ws_fail(p, orbit_ws_err_too_big, ev);
    }

    p->msg_len += len;

    return ORBIT_WS_AGAIN;
}


/* the whole header is in: the mask key, then the payload */

static void
orbit_ws_header_done(orbit_ws_parser_t *p)
{
    if (p->masked) {
        memcpy(p->mask, p->hdr + p->hdr_need - 4, 4);
    }

    if (orbit_ws_is_control(p->opcode)) {
        p->ctl_len = 0;
        p->state = orbit_ws_st_control;

    } else {
        p->state = orbit_ws_st_data;
    }
}


/* a chunk of a data frame: whatever of it has come, perhaps nothing */

static orbit_ws_event_e
orbit_ws_data(orbit_ws_parser_t *p, unsigned char **pos, unsigned char *end,
    orbit_ws_event_t *ev)
{
    size_t          n;
    unsigned char  *data;

    n = (size_t) (end - *pos);

    if (p->frame_left < n) {
        n = (size_t) p->frame_left;
    }

    if (n == 0 && p->frame_left) {
        return ORBIT_WS_AGAIN;
    }

    data = *pos;

    if (p->masked) {
        orbit_ws_mask(data, n, p->mask, p->frame_pos);
    }

    if (p->msg_opcode == ORBIT_WS_OP_TEXT) {
        if (orbit_utf8_feed(&p->utf8, data, n) != 0) {
            return orbit_ws_fail(p, orbit_ws_err_utf8, ev);
        }

        if (p->fin && n == p->frame_left && !orbit_utf8_complete(&p->utf8)) {
            return orbit_ws_fail(p, orbit_ws_err_utf8, ev);
        }
    }

    ev->opcode = p->msg_opcode;
    ev->data = data;
    ev->len = n;
    ev->first = (p->opcode != ORBIT_WS_OP_CONT && p->frame_pos == 0);

    *pos += n;
    p->frame_pos += n;
    p->frame_left -= n;

    if (p->frame_left == 0) {
        if (p->fin) {
            ev->fin = 1;
            p->in_message = 0;
        }

        orbit_ws_next_frame(p);
    }

    return ORBIT_WS_DATA;
}


/* a whole control frame is in p->ctl */

static orbit_ws_event_e
orbit_ws_control(orbit_ws_parser_t *p, orbit_ws_event_t *ev)
{
    unsigned      code;
    orbit_utf8_t  u;

    ev->opcode = p->opcode;
    ev->data = p->ctl;
    ev->len = p->ctl_len;

    if (p->opcode != ORBIT_WS_OP_CLOSE) {
        orbit_ws_next_frame(p);
        return ORBIT_WS_CONTROL;
    }

    if (p->ctl_len == 1) {
        return orbit_ws_fail(p, orbit_ws_err_close_len, ev);
    }

    if (p->ctl_len == 0) {
        code = ORBIT_WS_CLOSE_NO_STATUS;

    } else {
        code = (unsigned) p->ctl[0] << 8 | p->ctl[1];

        if (!orbit_ws_close_code_valid(code)) {
            return orbit_ws_fail(p, orbit_ws_err_close_code, ev);
        }

        u.state = 0;

        if (orbit_utf8_feed(&u, p->ctl + 2, p->ctl_len - 2) != 0
            || !orbit_utf8_complete(&u))
        {
            return orbit_ws_fail(p, orbit_ws_err_close_utf8, ev);
        }
    }

    ev->code = code;
    p->state = orbit_ws_st_closed;

    return ORBIT_WS_CONTROL;
}


static orbit_ws_event_e
orbit_ws_fail(orbit_ws_parser_t *p, unsigned err, orbit_ws_event_t *ev)
{
    p->failed = 1;
    p->state = err;

    memset(ev, 0, sizeof(orbit_ws_event_t));

    ev->code = orbit_ws_errors[err].code;
    ev->reason = orbit_ws_errors[err].reason;

    return ORBIT_WS_ERROR;
}


static void
orbit_ws_next_frame(orbit_ws_parser_t *p)
{
    p->state = orbit_ws_st_header;
    p->hdr_len = 0;
    p->hdr_need = 2;
}


size_t
orbit_ws_frame_header(unsigned char *buf, int opcode, int fin, uint64_t len,
    const unsigned char *mask)
{
    size_t    n;
    unsigned  i, bit;

    bit = mask ? 0x80 : 0;

    buf[0] = (unsigned char) ((fin ? 0x80 : 0) | (opcode & 0x0f));

    if (len < 126) {
        buf[1] = (unsigned char) (bit | len);
        n = 2;

    } else if (len <= 0xffff) {
        buf[1] = (unsigned char) (bit | 126);
        buf[2] = (unsigned char) (len >> 8);
        buf[3] = (unsigned char) len;
        n = 4;

    } else {
        buf[1] = (unsigned char) (bit | 127);

        for (i = 0; i < 8; i++) {
            buf[2 + i] = (unsigned char) (len >> (56 - 8 * i));
        }

        n = 10;
    }

    if (mask) {
        memcpy(buf + n, mask, 4);
        n += 4;
    }

    return n;
}


void
orbit_ws_mask(unsigned char *p, size_t n, const unsigned char key[4],
    uint64_t offset)
{
    size_t          i;
    uint64_t        w, k8;
    unsigned char   k[8];

    for (i = 0; i < 8; i++) {
        k[i] = key[(offset + i) & 3];
    }

    /* eight bytes at a time: the key repeats every four */

    memcpy(&k8, k, 8);

    for ( /* void */ ; n >= 8; n -= 8, p += 8) {
        memcpy(&w, p, 8);
        w ^= k8;
        memcpy(p, &w, 8);
    }

    for (i = 0; i < n; i++) {
        p[i] ^= k[i & 3];
    }
}


size_t
orbit_ws_close_payload(unsigned char *buf, unsigned code, const char *reason)
{
    size_t  n;

    if (code == ORBIT_WS_CLOSE_NO_STATUS) {
        return 0;
    }

    buf[0] = (unsigned char) (code >> 8);
    buf[1] = (unsigned char) code;

    n = reason ? strlen(reason) : 0;

    if (n > ORBIT_WS_CONTROL_MAX - 2) {
        n = ORBIT_WS_CONTROL_MAX - 2;

        /* back to the start of the character that does not fit */
        while (n && ((unsigned char) reason[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    if (n) {
        memcpy(buf + 2, reason, n);
    }

    return 2 + n;
}


int
orbit_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


int
orbit_ws_accept(const char *key, size_t len, char *out)
{
    size_t          i;
    unsigned        md_len;
    unsigned char   c, buf[ORBIT_WS_KEY_LEN + sizeof(orbit_ws_guid) - 1];
    unsigned char   md[EVP_MAX_MD_SIZE], b64[ORBIT_WS_ACCEPT_LEN + 1];

    /* 16 bytes: 22 base64 characters (the last with 2 bits) and "==" */

    if (len != ORBIT_WS_KEY_LEN || key[22] != '=' || key[23] != '=') {
        return -1;
    }

    for (i = 0; i < 22; i++) {
        c = (unsigned char) key[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '+' || c == '/'))
        {
            return -1;
        }
    }

    memcpy(buf, key, ORBIT_WS_KEY_LEN);
    memcpy(buf + ORBIT_WS_KEY_LEN, orbit_ws_guid, sizeof(orbit_ws_guid) - 1);

    if (EVP_Digest(buf, sizeof(buf), md, &md_len, EVP_sha1(), NULL) != 1
        || md_len != 20)
    {
        return -1;
    }

    EVP_EncodeBlock(b64, md, 20);
    memcpy(out, b64, ORBIT_WS_ACCEPT_LEN);

    return 0;
}


void
orbit_ws_client_key(const unsigned char random[16], char *out)
{
    unsigned char  b64[ORBIT_WS_KEY_LEN + 1];

    EVP_EncodeBlock(b64, random, 16);
    memcpy(out, b64, ORBIT_WS_KEY_LEN);
}


/* ------------------------------------------------ tokens and handshake */

#define orbit_ws_lower(c)  ((c) >= 'A' && (c) <= 'Z' ? (c) | 0x20 : (c))
#define orbit_ws_ows(c)    ((c) == ' ' || (c) == '\t')


/* RFC 7230 tchar */

static int
orbit_ws_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


static int
orbit_ws_token_in(const char *list, size_t len, const char *token,
    size_t tlen)
{
    size_t       i;
    const char  *p, *end, *s;

    p = list;
    end = list + len;

    while (p < end) {
        while (p < end && (orbit_ws_ows(*p) || *p == ',')) {
            p++;
        }

        s = p;

        while (p < end && *p != ',' && !orbit_ws_ows(*p)) {
            p++;
        }

        if ((size_t) (p - s) != tlen || tlen == 0) {
            continue;
        }

        for (i = 0; i < tlen; i++) {
            if (orbit_ws_lower(s[i]) != orbit_ws_lower(token[i])) {
                break;
            }
        }

        if (i == tlen) {
            return 1;
        }
    }

    return 0;
}


int
orbit_ws_has_token(const char *list, size_t len, const char *token)
{
    return orbit_ws_token_in(list, len, token, strlen(token));
}


int
orbit_ws_url_parse(orbit_ws_url_t *u, const char *url, size_t len)
{
    size_t       n, i;
    unsigned     port;
    const char  *p, *end, *a;

    memset(u, 0, sizeof(orbit_ws_url_t));

    if (len >= 5 && strncasecmp(url, "ws://", 5) == 0) {
        n = 5;
        u->port = 80;

    } else if (len >= 6 && strncasecmp(url, "wss://", 6) == 0) {
        n = 6;
        u->port = 443;
        u->tls = 1;

    } else {
        return -1;
    }

    /* nothing to escape, and no fragment */

    for (i = n; i < len; i++) {
        if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] >= 0x7f
            || url[i] == '#')
        {
            return -1;
        }
    }

    p = url + n;
    end = url + len;
    a = p;

    if (p < end && *p == '[') {
        u->host = ++p;

        while (p < end && *p != ']') {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')
                  || (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
            {
                return -1;
            }

            p++;
        }

        if (p == end) {
            return -1;
        }

        u->host_len = p++ - u->host;

    } else {
        u->host = p;

        while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                           || (*p >= '0' && *p <= '9') || *p == '-'
                           || *p == '.' || *p == '_'))
        {
            p++;
        }

        u->host_len = p - u->host;
    }

    if (u->host_len == 0) {
        return -1;
    }

    if (p < end && *p == ':') {
        p++;
        port = 0;

        for (n = 0; p < end && *p >= '0' && *p <= '9'; n++, p++) {
            port = port * 10 + (*p - '0');

            if (port > 65535) {
                return -1;
            }
        }

        if (n == 0 || port == 0) {
            return -1;
        }

        u->port = port;
    }

    /* what follows the authority: the path, the query, or nothing */

    if (p < end && *p != '/' && *p != '?') {
        return -1;                      /* user information, a bad host */
    }

    u->authority = a;
    u->authority_len = p - a;
    u->path = p;
    u->path_len = end - p;

    return 0;
}


int
orbit_ws_header_valid(const char *name, size_t nlen, const char *value,
    size_t vlen)
{
    size_t         i;
    unsigned char  c;

    if (nlen == 0) {
        return 0;
    }

    for (i = 0; i < nlen; i++) {
        if (!orbit_ws_tchar((unsigned char) name[i])) {
            return 0;
        }
    }

    for (i = 0; i < vlen; i++) {
        c = (unsigned char) value[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* "HTTP/d.d ddd[ reason]" */

static int
orbit_ws_status_line(orbit_ws_response_t *r, const char *p, size_t len)
{
    size_t  i;

    if (len < 12 || memcmp(p, "HTTP/", 5) != 0
        || p[5] < '0' || p[5] > '9' || p[6] != '.'
        || p[7] < '0' || p[7] > '9' || p[8] != ' ')
    {
        return -1;
    }

    r->status = 0;

    for (i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        r->status = r->status * 10 + (p[i] - '0');
    }

    if (r->status < 100 || (len > 12 && p[12] != ' ')) {
        return -1;
    }

    for (i = 12; i < len; i++) {
        if ((unsigned char) p[i] < 0x20 && p[i] != '\t') {
            return -1;
        }
    }

    return 0;
}


#define orbit_ws_is_header(name, n, s)                                       \
    ((n) == sizeof(s) - 1 && strncasecmp(name, s, sizeof(s) - 1) == 0)

static int
orbit_ws_header_line(orbit_ws_response_t *r, const char *p, size_t len)
{
    size_t       n;
    const char  *name, *v, *end;

    end = p + len;
    name = p;

    while (p < end && orbit_ws_tchar((unsigned char) *p)) {
        p++;
    }

    n = p - name;

    /* no folded lines, no space before the colon */

    if (n == 0 || p == end || *p != ':') {
        return -1;
    }

    for (p++; p < end && orbit_ws_ows(*p); p++) { /* void */ }

    while (end > p && orbit_ws_ows(end[-1])) {
        end--;
    }

    for (v = p; p < end; p++) {
        if (((unsigned char) *p < 0x20 && *p != '\t') || *p == 0x7f) {
            return -1;
        }
    }

    len = end - v;

    if (orbit_ws_is_header(name, n, "Upgrade")) {
        r->upgrade |= orbit_ws_has_token(v, len, "websocket");

    } else if (orbit_ws_is_header(name, n, "Connection")) {
        r->connection |= orbit_ws_has_token(v, len, "upgrade");

    } else if (orbit_ws_is_header(name, n, "Sec-WebSocket-Accept")) {
        r->accepts++;
        r->accept = v;
        r->accept_len = len;

    } else if (orbit_ws_is_header(name, n, "Sec-WebSocket-Protocol")) {
        r->protocols++;
        r->protocol = v;
        r->protocol_len = len;

    } else if (orbit_ws_is_header(name, n, "Sec-WebSocket-Extensions")) {
        r->extensions = 1;
    }

    return 0;
}


long
orbit_ws_response_parse(orbit_ws_response_t *r, const char *p, size_t len)
{
    size_t       n;
    const char  *line, *lf, *end;

    memset(r, 0, sizeof(orbit_ws_response_t));

    line = p;
    end = p + len;

    while (line < end) {
        lf = memchr(line, '\n', end - line);

        if (lf == NULL) {
            return 0;
        }

        n = lf - line;

        if (n && line[n - 1] == '\r') {
            n--;
        }

        if (memchr(line, '\r', n) != NULL) {
            return -1;                  /* a bare CR */
        }

        if (line == p) {
            if (orbit_ws_status_line(r, line, n) != 0) {
                return -1;
            }

        } else if (n == 0) {
            return (long) (lf + 1 - p);

        } else if (orbit_ws_header_line(r, line, n) != 0) {
            return -1;
        }

        line = lf + 1;
    }

    return 0;
}


const char *
orbit_ws_response_check(const orbit_ws_response_t *r, const char *key,
    const char *protocols, size_t plen)
{
    size_t  i;
    char    accept[ORBIT_WS_ACCEPT_LEN];

    if (r->status != 101) {
        return "the status is not 101";
    }

    if (!r->upgrade) {
        return "no \"Upgrade: websocket\"";
    }

    if (!r->connection) {
        return "no \"Connection: Upgrade\"";
    }

    if (r->accepts != 1) {
        return r->accepts ? "more than one Sec-WebSocket-Accept"
                          : "no Sec-WebSocket-Accept";
    }

    if (orbit_ws_accept(key, ORBIT_WS_KEY_LEN, accept) != 0
        || r->accept_len != ORBIT_WS_ACCEPT_LEN
        || memcmp(r->accept, accept, ORBIT_WS_ACCEPT_LEN) != 0)
    {
        return "a wrong Sec-WebSocket-Accept";
    }

    if (r->extensions) {
        return "an extension that was not offered";
    }

    if (r->protocols == 0) {
        return NULL;
    }

    if (r->protocols > 1 || r->protocol_len == 0) {
        return "a bad Sec-WebSocket-Protocol";
    }

    for (i = 0; i < r->protocol_len; i++) {
        if (!orbit_ws_tchar((unsigned char) r->protocol[i])) {
            return "a bad Sec-WebSocket-Protocol";
        }
    }

    if (protocols == NULL
        || !orbit_ws_token_in(protocols, plen, r->protocol, r->protocol_len))
    {
        return "a subprotocol that was not offered";
    }

    return NULL;
}
