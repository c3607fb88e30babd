/*
 * OrbitDesk: the RFC 6455 codec, shared by the WebSocket server and client
 * connections.  It knows nothing of nginx: bytes in, events out; frames
 * out into the caller's buffers.  No allocation.
 *
 * Reading: the caller hands the parser whatever arrived; the parser
 * unmasks payload in place and returns one event at a time.  Data comes
 * out in chunks (a message may span frames and reads); control frames
 * (at most 125 bytes) come out whole, buffered inside the parser.  Every
 * rule of RFC 6455 sections 5 and 7 is checked here, UTF-8 of text
 * messages incrementally (a bad byte fails at once, not at the end), so
 * an error event carries the close code to send.
 */

#ifndef _ORBIT_WS_CODEC_H_INCLUDED_
#define _ORBIT_WS_CODEC_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define ORBIT_WS_OP_CONT           0x0
#define ORBIT_WS_OP_TEXT           0x1
#define ORBIT_WS_OP_BINARY         0x2
#define ORBIT_WS_OP_CLOSE          0x8
#define ORBIT_WS_OP_PING           0x9
#define ORBIT_WS_OP_PONG           0xa

#define ORBIT_WS_CLOSE_NORMAL      1000
#define ORBIT_WS_CLOSE_GOING_AWAY  1001
#define ORBIT_WS_CLOSE_PROTOCOL    1002
#define ORBIT_WS_CLOSE_UNSUPPORTED 1003
#define ORBIT_WS_CLOSE_NO_STATUS   1005    /* never on the wire */
#define ORBIT_WS_CLOSE_BAD_DATA    1007
#define ORBIT_WS_CLOSE_POLICY      1008
#define ORBIT_WS_CLOSE_TOO_BIG     1009
#define ORBIT_WS_CLOSE_INTERNAL    1011

#define ORBIT_WS_CONTROL_MAX       125
#define ORBIT_WS_HEADER_MAX        14      /* 2 + 8 length + 4 mask */
#define ORBIT_WS_ACCEPT_LEN        28      /* base64 of a SHA-1 */
#define ORBIT_WS_KEY_LEN           24      /* base64 of 16 bytes */


/* an incremental UTF-8 check (Hoehrmann's DFA states: 0 is a boundary) */

typedef struct {
    uint32_t        state;
} orbit_utf8_t;

/* 0: valid so far (perhaps mid-character); -1: can never be valid */
int orbit_utf8_feed(orbit_utf8_t *u, const unsigned char *p, size_t n);

/* 1 when the text fed so far ends on a character boundary */
int orbit_utf8_complete(const orbit_utf8_t *u);


typedef enum {
    ORBIT_WS_AGAIN = 0,        /* all input used: feed more */
    ORBIT_WS_DATA,             /* a chunk of a text/binary message */
    ORBIT_WS_CONTROL,          /* a whole ping, pong or close frame */
    ORBIT_WS_ERROR             /* fail the connection with ev->code */
} orbit_ws_event_e;


typedef struct {
    int             opcode;    /* DATA: the message's TEXT/BINARY;
                                  CONTROL: PING, PONG or CLOSE */
    unsigned char  *data;      /* DATA: into the caller's input, unmasked;
                                  CONTROL: into the parser, valid until the
                                  next call */
    size_t          len;
    unsigned        first:1;   /* DATA: the message's first chunk */
    unsigned        fin:1;     /* DATA: the message's last chunk */
    unsigned        code;      /* CLOSE: the peer's code (1005 when none);
                                  ERROR: the code to close with */
    const char     *reason;    /* ERROR: what was wrong, for the log and
                                  the close frame (short, static) */
} orbit_ws_event_t;


typedef struct {
    /* set by the caller before the first call, then left alone */
    uint64_t        max_message;   /* 1009 past it; 0: no cap */
    unsigned        server:1;      /* peer frames must be masked (server
                                      side), or must not be (client) */

    /* private */
    unsigned        state;
    unsigned char   hdr[ORBIT_WS_HEADER_MAX];
    unsigned        hdr_len;
    unsigned        hdr_need;
    unsigned        opcode;        /* of the frame being read */
    unsigned        fin:1;
    unsigned        masked:1;
    unsigned        in_message:1;  /* a fragmented message is open */
    unsigned        failed:1;
    unsigned char   mask[4];
    uint64_t        frame_left;    /* payload bytes still to come */
    uint64_t        frame_pos;     /* payload bytes seen: mask offset */
    int             msg_opcode;    /* TEXT or BINARY of the open message */
    uint64_t        msg_len;       /* bytes of the open message so far */
    orbit_utf8_t    utf8;
    unsigned char   ctl[ORBIT_WS_CONTROL_MAX];
    size_t          ctl_len;
} orbit_ws_parser_t;


/* zero the private state (keeps max_message and server) */
void orbit_ws_parser_init(orbit_ws_parser_t *p);

/*
 * Consumes bytes from *pos (advancing it, at most to end) until it has an
 * event to return.  Call again with the same *pos until ORBIT_WS_AGAIN;
 * an empty DATA chunk may come out (an empty final frame).  After
 * ORBIT_WS_ERROR the parser stays failed: every call returns the error.
 * Data after a CLOSE frame is not read: the parser returns ORBIT_WS_AGAIN
 * from then on without consuming.
 */
orbit_ws_event_e orbit_ws_parse(orbit_ws_parser_t *p, unsigned char **pos,
    unsigned char *end, orbit_ws_event_t *ev);


/*
 * Writes a frame header into buf (ORBIT_WS_HEADER_MAX bytes) and returns
 * its length: minimal length encoding; with mask (client side, 4 bytes)
 * the MASK bit and key are written too, and the caller masks the payload
 * with orbit_ws_mask().
 */
size_t orbit_ws_frame_header(unsigned char *buf, int opcode, int fin,
    uint64_t len, const unsigned char *mask);

/* XOR p with key, as if p started at payload offset "offset" */
void orbit_ws_mask(unsigned char *p, size_t n, const unsigned char key[4],
    uint64_t offset);

/*
 * The payload of a close frame: the code, big-endian, then as much of
 * reason as fits in 123 bytes without cutting a UTF-8 character.
 * buf holds ORBIT_WS_CONTROL_MAX bytes.  Returns the length.
 */
size_t orbit_ws_close_payload(unsigned char *buf, unsigned code,
    const char *reason);

/* 1 when code may be sent in (and received in) a close frame */
int orbit_ws_close_code_valid(unsigned code);


/*
 * Handshake.  Sec-WebSocket-Accept for a Sec-WebSocket-Key: out gets
 * ORBIT_WS_ACCEPT_LEN characters (no NUL).  -1 when the key is not the
 * base64 of 16 bytes.
 */
int orbit_ws_accept(const char *key, size_t len, char *out);

/* a client's key from 16 random bytes: ORBIT_WS_KEY_LEN chars, no NUL */
void orbit_ws_client_key(const unsigned char random[16], char *out);

/* 1 when the comma-separated list (a header's value) holds token, in any
 * case */
int orbit_ws_has_token(const char *list, size_t len, const char *token);


/*
 * The client's side of the handshake.  A ws:// or wss:// URL (RFC 6455
 * section 3): the scheme in any case; no user information, no fragment;
 * an IPv6 address in brackets; no byte that would need escaping (space,
 * control characters, non-ASCII).  Pointers are into the URL.
 */

typedef struct {
    const char     *host;      /* a name or an address, IPv6 without [] */
    size_t          host_len;
    const char     *authority; /* host[:port] as written: for Host */
    size_t          authority_len;
    const char     *path;      /* path and query as written; empty or
                                  starting with '?': "/" goes first */
    size_t          path_len;
    unsigned        port;      /* 80 or 443 when not written */
    unsigned        tls:1;     /* wss */
} orbit_ws_url_t;

/* 0, or -1 when url is not such a URL */
int orbit_ws_url_parse(orbit_ws_url_t *u, const char *url, size_t len);

/* 1 when "name: value" may go in a request: name a token, value without
 * CR, LF or other control characters but tab */
int orbit_ws_header_valid(const char *name, size_t nlen, const char *value,
    size_t vlen);


/*
 * The server's answer: a status line and headers, lines ending in CRLF
 * (or a bare LF), up to an empty line.  Pointers are into the input.
 */

typedef struct {
    unsigned        status;
    unsigned        upgrade:1;      /* Upgrade holds "websocket" */
    unsigned        connection:1;   /* Connection holds "upgrade" */
    unsigned        extensions:1;   /* Sec-WebSocket-Extensions came */
    unsigned        accepts;        /* Sec-WebSocket-Accept headers */
    const char     *accept;
    size_t          accept_len;
    unsigned        protocols;      /* Sec-WebSocket-Protocol headers */
    const char     *protocol;
    size_t          protocol_len;
} orbit_ws_response_t;

/*
 * > 0: the length of the whole head (what follows is frames); 0: the
 * head is not whole yet (call again with more); -1: not an HTTP answer.
 * A line found malformed fails at once, before the head is whole.
 */
long orbit_ws_response_parse(orbit_ws_response_t *r, const char *p,
    size_t len);

/*
 * NULL when r accepts the upgrade asked for with key (ORBIT_WS_KEY_LEN
 * characters) and protocols (the Sec-WebSocket-Protocol offered, a
 * comma-separated list; NULL or empty: none): 101, Upgrade, Connection,
 * the right Sec-WebSocket-Accept, no extension (none is offered), at most
 * one of the protocols offered.  Otherwise what is wrong (static text).
 */
const char *orbit_ws_response_check(const orbit_ws_response_t *r,
    const char *key, const char *protocols, size_t plen);


#endif /* _ORBIT_WS_CODEC_H_INCLUDED_ */
