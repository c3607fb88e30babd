/*
 * OrbitDesk: a WebSocket connection after its handshake, either side (see
 * orbit_ws_conn.h): reading and joining messages, answering control
 * frames, the capped output queue, the close handshake.
 *
 * The connection is marked idle once the owner hands it here, so that a
 * graceful shutdown or reload (ngx_close_idle_connections) calls the read
 * handler with c->close set: the peer then gets a 1001 close instead of a
 * dropped connection.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/rand.h>

#include "orbit_ws_conn.h"


#define ORBIT_WS_READ_SIZE   16384


/*
 * One read buffer for all the worker's sockets: each read is parsed to the
 * end before the handler returns (the parser keeps a partial header, the
 * connection a partial message), so an idle socket holds no buffer.
 */
static u_char  orbit_ws_read_buf[ORBIT_WS_READ_SIZE];


struct orbit_ws_frame_s {
    ngx_uint_t                   refs;
    size_t                       len;
    u_char                       data[1];
};


/* one queued frame: the chain link is first, so a link is its node */
typedef struct {
    ngx_chain_t                  cl;
    ngx_buf_t                    buf;
    orbit_ws_frame_t            *frame;
} orbit_ws_out_t;


static ngx_int_t orbit_ws_conn_process(orbit_ws_conn_t *wc);
static ngx_int_t orbit_ws_conn_data(orbit_ws_conn_t *wc,
    orbit_ws_event_t *ev);
static void orbit_ws_conn_control(orbit_ws_conn_t *wc, orbit_ws_event_t *ev);
static ngx_int_t orbit_ws_conn_flush(orbit_ws_conn_t *wc);
static void orbit_ws_conn_post_write(orbit_ws_conn_t *wc);
static void orbit_ws_conn_done(orbit_ws_conn_t *wc);
static void orbit_ws_conn_send_close(orbit_ws_conn_t *wc, ngx_uint_t code,
    const char *reason);
static void orbit_ws_conn_record_close(orbit_ws_conn_t *wc, ngx_uint_t code,
    const u_char *reason, size_t len);
static void orbit_ws_conn_linger_handler(ngx_event_t *ev);
static orbit_ws_frame_t *orbit_ws_frame_make(ngx_uint_t opcode,
    const u_char *data, size_t len, ngx_uint_t mask, ngx_log_t *log);


void
orbit_ws_conn_init(orbit_ws_conn_t *wc, ngx_connection_t *c,
    orbit_ws_conf_t *conf, const orbit_ws_conn_handler_t *handler,
    void *data, ngx_uint_t client)
{
    wc->connection = c;
    wc->data = data;
    wc->handler = handler;
    wc->conf = conf;
    wc->client = client ? 1 : 0;
    wc->close_code = ORBIT_WS_CLOSE_ABNORMAL;
    wc->out_last = &wc->out;

    wc->parser.server = client ? 0 : 1;
    wc->parser.max_message = conf->max_message;
    orbit_ws_parser_init(&wc->parser);

    wc->linger.handler = orbit_ws_conn_linger_handler;
    wc->linger.data = wc;
    wc->linger.log = c->log;
}


/* ------------------------------------------------------------ reading */

void
orbit_ws_conn_read(orbit_ws_conn_t *wc)
{
    ssize_t            n;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = wc->connection;
    rev = c->read;

    if (c->close) {
        /* a graceful shutdown or reload: tell the peer, then go */
        c->close = 0;

        orbit_ws_conn_close(wc, ORBIT_WS_CLOSE_GOING_AWAY,
                            wc->client ? "client going away"
                                       : "server going away");

        /*
         * Called from ngx_close_idle_connections(), outside the event
         * loop: a posted write would wait for the next event or timer
         * (the linger's, 2 s on), so the close frame goes out now.
         */

        if (orbit_ws_conn_flush(wc) == NGX_ERROR) {
            wc->done = 1;
        }

        if (c->error) {
            wc->done = 1;       /* the shutdown timeout: no waiting */
        }

        goto out;
    }

    for ( ;; ) {

        if (orbit_ws_conn_process(wc) != NGX_OK || wc->done) {
            goto out;
        }

        /* all input used, nothing points into it any more */

        wc->in_pos = NULL;
        wc->in_last = NULL;

        if (!rev->ready) {
            break;
        }

        n = c->recv(c, orbit_ws_read_buf, ORBIT_WS_READ_SIZE);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            wc->done = 1;

            if (n == 0 && wc->close_received) {
                /* the server closing TCP after the close handshake */
                goto out;
            }

            /* gone without a close frame: 1006 */
            c->error = 1;

            if (wc->error == NULL) {
                wc->error = "connection closed without a close frame";
            }

            goto out;
        }

        wc->in_pos = orbit_ws_read_buf;
        wc->in_last = orbit_ws_read_buf + n;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        wc->done = 1;
    }

out:

    orbit_ws_conn_done(wc);
}


void
orbit_ws_conn_read_input(orbit_ws_conn_t *wc, u_char *data, size_t len)
{
    if (len > ORBIT_WS_READ_SIZE) {
        /* the callers hand less: a handshake's buffer is smaller */
        len = ORBIT_WS_READ_SIZE;
    }

    ngx_memcpy(orbit_ws_read_buf, data, len);

    wc->in_pos = orbit_ws_read_buf;
    wc->in_last = orbit_ws_read_buf + len;

    orbit_ws_conn_read(wc);
}


/* parse what is buffered; NGX_OK when it is used up */

static ngx_int_t
orbit_ws_conn_process(orbit_ws_conn_t *wc)
{
    orbit_ws_event_t  ev;

    for ( ;; ) {

        if (wc->close_received) {
            /* nothing is read past the peer's close */
            wc->in_pos = wc->in_last;
            return NGX_OK;
        }

        switch (orbit_ws_parse(&wc->parser, &wc->in_pos, wc->in_last, &ev)) {

        case ORBIT_WS_AGAIN:
            return NGX_OK;

        case ORBIT_WS_DATA:
            if (orbit_ws_conn_data(wc, &ev) != NGX_OK) {
                return NGX_ERROR;
            }
            break;

        case ORBIT_WS_CONTROL:
            orbit_ws_conn_control(wc, &ev);
            break;

        case ORBIT_WS_ERROR:
            ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                          "websocket: %s, closing with %ui",
                          ev.reason, (ngx_uint_t) ev.code);
            wc->error = ev.reason;
            wc->failed = 1;
            orbit_ws_conn_send_close(wc, ev.code, ev.reason);
            wc->close_received = 1;      /* read no further */
            wc->in_pos = wc->in_last;
            return NGX_ERROR;
        }

        if (wc->done) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
orbit_ws_conn_data(orbit_ws_conn_t *wc, orbit_ws_event_t *ev)
{
    u_char  *p;
    size_t   size;

    if (wc->close_sent) {
        return NGX_OK;          /* closing: the owner hears no more */
    }

    if (ev->first && ev->fin) {
        /* a whole message in one chunk: straight from the read buffer */
        wc->handler->message(wc, ev->opcode, ev->data, ev->len);
        return NGX_OK;
    }

    if (ev->first) {
        wc->msg_len = 0;
        wc->msg_opcode = ev->opcode;
    }

    if (wc->msg_len + ev->len > wc->msg_size) {
        size = ngx_max(wc->msg_size * 2, 4096);

        while (size < wc->msg_len + ev->len) {
            size *= 2;
        }

        p = ngx_alloc(size, wc->connection->log);
        if (p == NULL) {
            wc->error = "no memory for a message";
            wc->failed = 1;
            orbit_ws_conn_send_close(wc, ORBIT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        if (wc->msg) {
            ngx_memcpy(p, wc->msg, wc->msg_len);
            ngx_free(wc->msg);
        }

        wc->msg = p;
        wc->msg_size = size;
    }

    if (ev->len) {
        ngx_memcpy(wc->msg + wc->msg_len, ev->data, ev->len);
        wc->msg_len += ev->len;
    }

    if (ev->fin) {
        wc->handler->message(wc, wc->msg_opcode, wc->msg, wc->msg_len);

        /* a big message's buffer is not kept for the connection's life */
        if (wc->msg_size > 65536) {
            ngx_free(wc->msg);
            wc->msg = NULL;
            wc->msg_size = 0;
        }

        wc->msg_len = 0;
    }

    return NGX_OK;
}


static void
orbit_ws_conn_control(orbit_ws_conn_t *wc, orbit_ws_event_t *ev)
{
    switch (ev->opcode) {

    case ORBIT_WS_OP_PING:
        if (!wc->close_sent) {
            (void) orbit_ws_conn_send(wc, ORBIT_WS_OP_PONG, ev->data,
                                      ev->len);
        }
        return;

    case ORBIT_WS_OP_PONG:
        wc->pong = 1;
        return;

    default: /* ORBIT_WS_OP_CLOSE */
        wc->close_received = 1;

        if (wc->close_sent) {
            /* the answer to ours: the handshake is complete */
            if (!wc->client) {
                wc->done = 1;
            }

            return;
        }

        orbit_ws_conn_record_close(wc, ev->code,
                                   ev->len > 2 ? ev->data + 2 : NULL,
                                   ev->len > 2 ? ev->len - 2 : 0);

        /* echo the code; then close once the echo is out */
        orbit_ws_conn_send_close(wc, ev->code == ORBIT_WS_CLOSE_NO_STATUS
                                     ? ORBIT_WS_CLOSE_NORMAL : ev->code,
                                 NULL);
        return;
    }
}


/* ------------------------------------------------------------ writing */

static orbit_ws_frame_t *
orbit_ws_frame_make(ngx_uint_t opcode, const u_char *data, size_t len,
    ngx_uint_t mask, ngx_log_t *log)
{
    size_t             hlen;
    orbit_ws_frame_t  *f;
    u_char             hdr[ORBIT_WS_HEADER_MAX], key[4];

    if (mask && RAND_bytes(key, 4) != 1) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "websocket: RAND_bytes() failed for a mask");
        return NULL;
    }

    hlen = orbit_ws_frame_header(hdr, opcode, 1, len, mask ? key : NULL);

    f = ngx_alloc(offsetof(orbit_ws_frame_t, data) + hlen + len, log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = hlen + len;

    ngx_memcpy(f->data, hdr, hlen);

    if (len) {
        ngx_memcpy(f->data + hlen, data, len);

        if (mask) {
            orbit_ws_mask(f->data + hlen, len, key, 0);
        }
    }

    return f;
}


orbit_ws_frame_t *
orbit_ws_frame(ngx_uint_t opcode, const u_char *data, size_t len,
    ngx_log_t *log)
{
    return orbit_ws_frame_make(opcode, data, len, 0, log);
}


orbit_ws_frame_t *
orbit_ws_frame_text(size_t len, u_char **data, ngx_log_t *log)
{
    orbit_ws_frame_t  *f;

    f = ngx_alloc(offsetof(orbit_ws_frame_t, data) + len, log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = len;
    *data = f->data;

    return f;
}


orbit_ws_frame_t *
orbit_ws_frame_ref(orbit_ws_frame_t *f)
{
    f->refs++;
    return f;
}


void
orbit_ws_frame_release(orbit_ws_frame_t *f)
{
    if (f->refs <= 1) {
        ngx_free(f);
        return;
    }

    f->refs--;
}


ngx_int_t
orbit_ws_conn_send_frame(orbit_ws_conn_t *wc, orbit_ws_frame_t *f)
{
    ngx_int_t  rc;

    if (wc->close_sent || wc->done) {
        return NGX_DECLINED;
    }

    rc = orbit_ws_conn_queue(wc, f, 0);

    if (rc != NGX_OK) {
        return rc;
    }

    f->refs++;

    orbit_ws_conn_post_write(wc);

    return NGX_OK;
}


ngx_int_t
orbit_ws_conn_send(orbit_ws_conn_t *wc, ngx_uint_t opcode, const u_char *data,
    size_t len)
{
    ngx_int_t          rc;
    orbit_ws_frame_t  *f;

    if (wc->close_sent || wc->done) {
        return NGX_DECLINED;
    }

    f = orbit_ws_frame_make(opcode, data, len, wc->client,
                            wc->connection->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    rc = orbit_ws_conn_send_frame(wc, f);

    orbit_ws_frame_release(f);

    return rc;
}


/*
 * Sends go out from the write handler, run once the current event is
 * handled: several frames queued meanwhile (a burst of events, answers to
 * a batch of messages) leave in one writev.
 */

static void
orbit_ws_conn_post_write(orbit_ws_conn_t *wc)
{
    if (!wc->connection->write->posted) {
        ngx_post_event(wc->connection->write, &ngx_posted_events);
    }
}


/*
 * Adds f to the queue, which takes over one reference (the caller's to
 * count).
 * Past the cap the peer is cut off; "force" (a handshake, a close frame)
 * goes past it.
 */

ngx_int_t
orbit_ws_conn_queue(orbit_ws_conn_t *wc, orbit_ws_frame_t *f,
    ngx_uint_t force)
{
    orbit_ws_out_t  *o;

    if (!force && wc->queued + f->len > wc->conf->max_queued) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "websocket: %s does not read, %uz bytes queued: "
                      "cut off", wc->client ? "server" : "client",
                      wc->queued);
        wc->error = "peer does not read: queue full";
        wc->done = 1;
        orbit_ws_conn_post_write(wc);
        return NGX_ERROR;
    }

    o = ngx_alloc(sizeof(orbit_ws_out_t), wc->connection->log);
    if (o == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&o->buf, sizeof(ngx_buf_t));

    o->buf.pos = f->data;
    o->buf.last = f->data + f->len;
    o->buf.start = o->buf.pos;
    o->buf.end = o->buf.last;
    o->buf.memory = 1;
    o->buf.flush = 1;

    o->cl.buf = &o->buf;
    o->cl.next = NULL;
    o->frame = f;

    *wc->out_last = &o->cl;
    wc->out_last = &o->cl.next;
    wc->queued += f->len;

    return NGX_OK;
}


/* NGX_OK: all out; NGX_AGAIN: the rest waits for the socket */

static ngx_int_t
orbit_ws_conn_flush(orbit_ws_conn_t *wc)
{
    ngx_chain_t       *cl;
    orbit_ws_out_t    *o;
    ngx_connection_t  *c;

    c = wc->connection;

    if (wc->out == NULL) {
        return NGX_OK;
    }

    if (c->error) {
        return NGX_ERROR;
    }

    if (!c->write->ready) {
        return NGX_AGAIN;
    }

    cl = c->send_chain(c, wc->out, 0);

    if (cl == NGX_CHAIN_ERROR) {
        c->error = 1;
        return NGX_ERROR;
    }

    while (wc->out && wc->out != cl) {
        o = (orbit_ws_out_t *) wc->out;
        wc->out = o->cl.next;
        wc->queued -= o->frame->len;
        orbit_ws_frame_release(o->frame);
        ngx_free(o);
    }

    if (wc->out == NULL) {
        wc->out_last = &wc->out;
        return NGX_OK;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


void
orbit_ws_conn_write(orbit_ws_conn_t *wc)
{
    if (!wc->done && orbit_ws_conn_flush(wc) == NGX_ERROR) {
        if (wc->error == NULL) {
            wc->error = "write failed";
        }

        wc->done = 1;
    }

    orbit_ws_conn_done(wc);
}


/*
 * At the end of each handler: finished, or both close frames exchanged
 * and ours out?  Then the server closes TCP; so does a client that failed
 * the connection; one that closed cleanly waits for the server to.
 */

static void
orbit_ws_conn_done(orbit_ws_conn_t *wc)
{
    if (!wc->done && wc->close_sent && wc->close_received
        && wc->out == NULL && (!wc->client || wc->failed))
    {
        wc->done = 1;
    }

    if (wc->done) {
        wc->handler->finish(wc);
    }

    /* what is still queued waits for the socket's write event: posting
     * it again here would spin the worker while the peer reads
     * nothing */
}


/* ------------------------------------------------------------ closing */

void
orbit_ws_conn_close(orbit_ws_conn_t *wc, ngx_uint_t code, const char *reason)
{
    if (wc->close_sent || wc->done) {
        return;
    }

    orbit_ws_conn_send_close(wc, code, reason);

    /* the rest happens in the write handler, never under the caller */
    orbit_ws_conn_post_write(wc);
}


static void
orbit_ws_conn_send_close(orbit_ws_conn_t *wc, ngx_uint_t code,
    const char *reason)
{
    size_t             len;
    orbit_ws_frame_t  *f;
    u_char             payload[ORBIT_WS_CONTROL_MAX];

    if (wc->close_sent) {
        return;
    }

    wc->close_sent = 1;

    len = orbit_ws_close_payload(payload, code, reason);

    if (!wc->close_received) {
        orbit_ws_conn_record_close(wc, code, len > 2 ? payload + 2 : NULL,
                                   len > 2 ? len - 2 : 0);
    }

    f = orbit_ws_frame_make(ORBIT_WS_OP_CLOSE, payload, len, wc->client,
                            wc->connection->log);

    if (f == NULL || orbit_ws_conn_queue(wc, f, 1) != NGX_OK) {
        if (f) {
            orbit_ws_frame_release(f);
        }

        wc->done = 1;
        return;
    }

    /*
     * The peer has this long to answer (and, for a client, the server to
     * close TCP) before we close.
     */
    ngx_add_timer(&wc->linger, wc->conf->close_timeout);

    orbit_ws_conn_post_write(wc);
}


static void
orbit_ws_conn_record_close(orbit_ws_conn_t *wc, ngx_uint_t code,
    const u_char *reason, size_t len)
{
    wc->close_code = code;
    wc->close_reason_len = ngx_min(len, sizeof(wc->close_reason));

    if (wc->close_reason_len) {
        ngx_memcpy(wc->close_reason, reason, wc->close_reason_len);
    }
}


static void
orbit_ws_conn_linger_handler(ngx_event_t *ev)
{
    orbit_ws_conn_t  *wc;

    wc = ev->data;

    if (!wc->close_received) {
        ngx_log_error(NGX_LOG_INFO, wc->connection->log, 0,
                      "websocket: no close frame in answer: closing");
    }

    wc->done = 1;
    wc->handler->finish(wc);
}


void
orbit_ws_conn_stop(orbit_ws_conn_t *wc)
{
    ngx_connection_t  *c;

    c = wc->connection;

    if (wc->linger.timer_set) {
        ngx_del_timer(&wc->linger);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    c->idle = 0;
}


void
orbit_ws_conn_free(orbit_ws_conn_t *wc)
{
    ngx_chain_t     *cl;
    orbit_ws_out_t  *o;

    if (wc->linger.timer_set) {
        ngx_del_timer(&wc->linger);
    }

    wc->close_sent = 1;         /* nothing more may be queued */
    wc->done = 1;

    for (cl = wc->out; cl; /* void */) {
        o = (orbit_ws_out_t *) cl;
        cl = cl->next;
        orbit_ws_frame_release(o->frame);
        ngx_free(o);
    }

    wc->out = NULL;
    wc->out_last = &wc->out;
    wc->queued = 0;

    if (wc->msg) {
        ngx_free(wc->msg);
        wc->msg = NULL;
        wc->msg_size = 0;
    }
}


/* ------------------------------------------------------------- config */

void
orbit_ws_conf_init(orbit_ws_conf_t *conf)
{
    conf->max_message = NGX_CONF_UNSET_SIZE;
    conf->max_queued = NGX_CONF_UNSET_SIZE;
    conf->close_timeout = NGX_CONF_UNSET_MSEC;
}


void
orbit_ws_conf_merge(orbit_ws_conf_t *conf, orbit_ws_conf_t *prev)
{
    ngx_conf_merge_size_value(conf->max_message, prev->max_message,
                              1000000);
    ngx_conf_merge_size_value(conf->max_queued, prev->max_queued,
                              1024 * 1024);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout,
                              2000);
}
