/*
 * OrbitDesk: WebSocket server connections inside nginx.
 *
 * After the upgrade the connection's events come here directly:
 * c->read->handler and c->write->handler are ours; c->data stays the
 * request (nginx's own code reads it), and the orbit_ws_t is the request's
 * context of ngx_http_orbit_ws_module, a module with no directives that
 * only holds that slot.
 * The connection is marked idle, so that a graceful shutdown or reload
 * (ngx_close_idle_connections) calls the read handler with c->close set:
 * the client then gets a 1001 close instead of a dropped connection.
 *
 * Every path out goes through orbit_ws_finish(), which finalizes the
 * request once; the request pool's cleanup frees what the connection
 * still holds and tells the protocol, also when nginx itself ends the
 * request.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "orbit_ws.h"


#define ORBIT_WS_READ_SIZE   16384


/*
 * One read buffer for all the worker's sockets: each read is parsed to the
 * end before the handler returns (the parser keeps a partial header, the
 * connection a partial message), so an idle socket holds no buffer.
 */
static u_char  orbit_ws_read_buf[ORBIT_WS_READ_SIZE];

/* not among nginx 1.22's statuses */
#define ORBIT_WS_UPGRADE_REQUIRED  426


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


static orbit_ws_t *orbit_ws_get(ngx_connection_t *c);
static void orbit_ws_read_handler(ngx_event_t *rev);
static void orbit_ws_write_handler(ngx_event_t *wev);
static void orbit_ws_linger_handler(ngx_event_t *ev);
static ngx_int_t orbit_ws_process(orbit_ws_t *ws);
static ngx_int_t orbit_ws_data(orbit_ws_t *ws, orbit_ws_event_t *ev);
static void orbit_ws_control(orbit_ws_t *ws, orbit_ws_event_t *ev);
static ngx_int_t orbit_ws_queue(orbit_ws_t *ws, orbit_ws_frame_t *f,
    ngx_uint_t force);
static ngx_int_t orbit_ws_flush(orbit_ws_t *ws);
static void orbit_ws_post_write(orbit_ws_t *ws);
static void orbit_ws_done(orbit_ws_t *ws);
static void orbit_ws_send_close(orbit_ws_t *ws, ngx_uint_t code,
    const char *reason);
static void orbit_ws_finish(orbit_ws_t *ws);
static void orbit_ws_cleanup(void *data);
static ngx_int_t orbit_ws_check(ngx_http_request_t *r, ngx_str_t *key);
static ngx_table_elt_t *orbit_ws_header(ngx_http_request_t *r,
    const char *name);
static ngx_uint_t orbit_ws_has_token(ngx_str_t *value, const char *token);


static ngx_http_module_t  ngx_http_orbit_ws_module_ctx = {
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};


ngx_module_t  ngx_http_orbit_ws_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_ws_module_ctx,         /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static orbit_ws_t *
orbit_ws_get(ngx_connection_t *c)
{
    return ngx_http_get_module_ctx((ngx_http_request_t *) c->data,
                                   ngx_http_orbit_ws_module);
}


/* ---------------------------------------------------------- handshake */

ngx_int_t
orbit_ws_upgrade(ngx_http_request_t *r, orbit_ws_conf_t *conf,
    const orbit_ws_handler_t *handler, void *data, orbit_ws_t **wsp)
{
    size_t               n;
    ngx_int_t            rc;
    ngx_str_t            key;
    orbit_ws_t          *ws;
    ngx_connection_t    *c;
    orbit_ws_frame_t    *f;
    ngx_pool_cleanup_t  *cln;
    char                 accept[ORBIT_WS_ACCEPT_LEN];

    static const char  head[] =
        "HTTP/1.1 101 Switching Protocols" CRLF
        "Upgrade: websocket" CRLF
        "Connection: Upgrade" CRLF
        "Sec-WebSocket-Accept: ";

    rc = orbit_ws_check(r, &key);
    if (rc != NGX_OK) {
        return rc;
    }

    if (orbit_ws_accept((char *) key.data, key.len, accept) != 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "websocket: Sec-WebSocket-Key is not 16 bytes "
                      "in base64");
        return NGX_HTTP_BAD_REQUEST;
    }

    c = r->connection;

    ws = ngx_pcalloc(r->pool, sizeof(orbit_ws_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ws == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ws->request = r;
    ws->connection = c;
    ws->data = data;
    ws->conf = conf;
    ws->out_last = &ws->out;

    ws->parser.server = 1;
    ws->parser.max_message = conf->max_message;
    orbit_ws_parser_init(&ws->parser);

    ws->linger.handler = orbit_ws_linger_handler;
    ws->linger.data = ws;
    ws->linger.log = c->log;

    cln->handler = orbit_ws_cleanup;
    cln->data = ws;

    /* frames the client sent right behind its headers: read from there */

    if (r->header_in && r->header_in->pos < r->header_in->last) {
        ws->in_pos = r->header_in->pos;
        ws->in_last = r->header_in->last;
        r->header_in->pos = r->header_in->last;
    }

    /* the 101, queued as the first "frame" */

    n = sizeof(head) - 1 + ORBIT_WS_ACCEPT_LEN + 4;

    f = ngx_alloc(offsetof(orbit_ws_frame_t, data) + n, c->log);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    f->refs = 1;                /* the queue's */
    f->len = n;
    ngx_memcpy(ngx_cpymem(ngx_cpymem(f->data, head, sizeof(head) - 1),
                          accept, ORBIT_WS_ACCEPT_LEN),
               CRLF CRLF, 4);

    if (orbit_ws_queue(ws, f, 1) != NGX_OK) {
        orbit_ws_frame_release(f);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the request is answered by hand: nginx sends no header of its own */

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->header_sent = 1;
    r->keepalive = 0;
    r->lingering_close = 0;
    r->main->count++;

    c->log->action = "in a websocket";
    c->idle = 1;
    ngx_http_set_ctx(r, ws, ngx_http_orbit_ws_module);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = orbit_ws_read_handler;
    c->write->handler = orbit_ws_write_handler;

    ws->handler = handler;      /* told of the close from now on */
    *wsp = ws;

    /* what came with the headers, and the 101, once the handler returns */

    ngx_post_event(c->write, &ngx_posted_events);

    if (ws->in_last > ws->in_pos || c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_ws_check(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_table_elt_t  *h, *v;

    if (r->method != NGX_HTTP_GET) {
        return NGX_HTTP_NOT_ALLOWED;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return NGX_HTTP_BAD_REQUEST;
    }
#endif

    if (r->http_version < NGX_HTTP_VERSION_11 || r != r->main) {
        return NGX_HTTP_BAD_REQUEST;
    }

    /* what follows the headers must be frames, not a body */
    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        return NGX_HTTP_BAD_REQUEST;
    }

    h = orbit_ws_header(r, "Upgrade");

    if (h == NULL || !orbit_ws_has_token(&h->value, "websocket")) {
        return NGX_HTTP_BAD_REQUEST;
    }

    h = orbit_ws_header(r, "Connection");

    if (h == NULL || !orbit_ws_has_token(&h->value, "upgrade")) {
        return NGX_HTTP_BAD_REQUEST;
    }

    v = orbit_ws_header(r, "Sec-WebSocket-Version");

    if (v == NULL || v->value.len != 2
        || ngx_strncmp(v->value.data, "13", 2) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Version");
        ngx_str_set(&h->value, "13");
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

        return ORBIT_WS_UPGRADE_REQUIRED;
    }

    h = orbit_ws_header(r, "Sec-WebSocket-Key");

    if (h == NULL) {
        return NGX_HTTP_BAD_REQUEST;
    }

    *key = h->value;

    return NGX_OK;
}


static ngx_table_elt_t *
orbit_ws_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* a comma-separated token list holds token, in any case */

static ngx_uint_t
orbit_ws_has_token(ngx_str_t *value, const char *token)
{
    u_char  *p, *end, *s;
    size_t   len;

    len = ngx_strlen(token);
    p = value->data;
    end = p + value->len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        s = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - s) == len
            && ngx_strncasecmp(s, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* ------------------------------------------------------------ reading */

static void
orbit_ws_read_handler(ngx_event_t *rev)
{
    ssize_t            n;
    ngx_connection_t  *c;
    orbit_ws_t        *ws;

    c = rev->data;
    ws = orbit_ws_get(c);

    if (c->close) {
        /* a graceful shutdown or reload: tell the client, then go */
        c->close = 0;

        if (!ws->close_sent) {
            orbit_ws_close(ws, ORBIT_WS_CLOSE_GOING_AWAY,
                           "server going away");
        }

        /*
         * Called from ngx_close_idle_connections(), outside the event
         * loop: a posted write would wait for the next event or timer
         * (the linger's, 2 s on), so the close frame goes out now.
         */

        if (orbit_ws_flush(ws) == NGX_ERROR) {
            ws->done = 1;
        }

        if (c->error) {
            ws->done = 1;       /* the shutdown timeout: no waiting */
        }

        goto out;
    }

    for ( ;; ) {

        if (orbit_ws_process(ws) != NGX_OK || ws->done) {
            goto out;
        }

        /* all input used, nothing points into it any more */

        ws->in_pos = NULL;
        ws->in_last = NULL;

        if (!rev->ready) {
            break;
        }

        n = c->recv(c, orbit_ws_read_buf, ORBIT_WS_READ_SIZE);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            /* gone without a close frame: 1006 to the protocol */
            c->error = 1;
            ws->done = 1;
            goto out;
        }

        ws->in_pos = orbit_ws_read_buf;
        ws->in_last = orbit_ws_read_buf + n;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ws->done = 1;
    }

out:

    orbit_ws_done(ws);
}


/* parse what is buffered; NGX_OK when it is used up */

static ngx_int_t
orbit_ws_process(orbit_ws_t *ws)
{
    orbit_ws_event_t  ev;

    for ( ;; ) {

        if (ws->close_received) {
            /* nothing is read past the peer's close */
            ws->in_pos = ws->in_last;
            return NGX_OK;
        }

        switch (orbit_ws_parse(&ws->parser, &ws->in_pos, ws->in_last, &ev)) {

        case ORBIT_WS_AGAIN:
            return NGX_OK;

        case ORBIT_WS_DATA:
            if (orbit_ws_data(ws, &ev) != NGX_OK) {
                return NGX_ERROR;
            }
            break;

        case ORBIT_WS_CONTROL:
            orbit_ws_control(ws, &ev);
            break;

        case ORBIT_WS_ERROR:
            ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                          "websocket: %s, closing with %ui",
                          ev.reason, (ngx_uint_t) ev.code);
            orbit_ws_send_close(ws, ev.code, ev.reason);
            ws->close_received = 1;      /* read no further */
            ws->in_pos = ws->in_last;
            return NGX_ERROR;
        }

        if (ws->done) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
orbit_ws_data(orbit_ws_t *ws, orbit_ws_event_t *ev)
{
    u_char  *p;
    size_t   size;

    if (ws->close_sent) {
        return NGX_OK;          /* closing: the protocol hears no more */
    }

    if (ev->first && ev->fin) {
        /* a whole message in one chunk: straight from the read buffer */
        ws->handler->message(ws, ev->opcode, ev->data, ev->len);
        return NGX_OK;
    }

    if (ev->first) {
        ws->msg_len = 0;
        ws->msg_opcode = ev->opcode;
    }

    if (ws->msg_len + ev->len > ws->msg_size) {
        size = ngx_max(ws->msg_size * 2, 4096);

        while (size < ws->msg_len + ev->len) {
            size *= 2;
        }

        p = ngx_alloc(size, ws->connection->log);
        if (p == NULL) {
            orbit_ws_send_close(ws, ORBIT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        if (ws->msg) {
            ngx_memcpy(p, ws->msg, ws->msg_len);
            ngx_free(ws->msg);
        }

        ws->msg = p;
        ws->msg_size = size;
    }

    if (ev->len) {
        ngx_memcpy(ws->msg + ws->msg_len, ev->data, ev->len);
        ws->msg_len += ev->len;
    }

    if (ev->fin) {
        ws->handler->message(ws, ws->msg_opcode, ws->msg, ws->msg_len);

        /* a big message's buffer is not kept for the connection's life */
        if (ws->msg_size > 65536) {
            ngx_free(ws->msg);
            ws->msg = NULL;
            ws->msg_size = 0;
        }

        ws->msg_len = 0;
    }

    return NGX_OK;
}


static void
orbit_ws_control(orbit_ws_t *ws, orbit_ws_event_t *ev)
{
    switch (ev->opcode) {

    case ORBIT_WS_OP_PING:
        if (!ws->close_sent) {
            (void) orbit_ws_send(ws, ORBIT_WS_OP_PONG, ev->data, ev->len);
        }
        return;

    case ORBIT_WS_OP_PONG:
        return;

    default: /* ORBIT_WS_OP_CLOSE */
        ws->close_received = 1;

        if (ws->close_sent) {
            /* the answer to ours: the handshake is complete */
            ws->done = 1;
            return;
        }

        /* echo the code; then close once the echo is out */
        orbit_ws_send_close(ws, ev->code == ORBIT_WS_CLOSE_NO_STATUS
                                ? ORBIT_WS_CLOSE_NORMAL : ev->code, NULL);
        return;
    }
}


/* ------------------------------------------------------------ writing */

orbit_ws_frame_t *
orbit_ws_frame(ngx_uint_t opcode, const u_char *data, size_t len,
    ngx_log_t *log)
{
    size_t             hlen;
    orbit_ws_frame_t  *f;
    u_char             hdr[ORBIT_WS_HEADER_MAX];

    hlen = orbit_ws_frame_header(hdr, opcode, 1, len, NULL);

    f = ngx_alloc(offsetof(orbit_ws_frame_t, data) + hlen + len, log);
    if (f == NULL) {
        return NULL;
    }

    f->refs = 1;
    f->len = hlen + len;

    ngx_memcpy(f->data, hdr, hlen);

    if (len) {
        ngx_memcpy(f->data + hlen, data, len);
    }

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
orbit_ws_send_frame(orbit_ws_t *ws, orbit_ws_frame_t *f)
{
    ngx_int_t  rc;

    if (ws->close_sent || ws->done) {
        return NGX_DECLINED;
    }

    rc = orbit_ws_queue(ws, f, 0);

    if (rc != NGX_OK) {
        return rc;
    }

    f->refs++;

    orbit_ws_post_write(ws);

    return NGX_OK;
}


ngx_int_t
orbit_ws_send(orbit_ws_t *ws, ngx_uint_t opcode, const u_char *data,
    size_t len)
{
    ngx_int_t          rc;
    orbit_ws_frame_t  *f;

    if (ws->close_sent || ws->done) {
        return NGX_DECLINED;
    }

    f = orbit_ws_frame(opcode, data, len, ws->connection->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    rc = orbit_ws_send_frame(ws, f);

    orbit_ws_frame_release(f);

    return rc;
}


/*
 * Sends go out from the write handler, run once the current event is
 * handled: several frames queued meanwhile (a burst of events, answers to
 * a batch of messages) leave in one writev.
 */

static void
orbit_ws_post_write(orbit_ws_t *ws)
{
    if (!ws->connection->write->posted) {
        ngx_post_event(ws->connection->write, &ngx_posted_events);
    }
}


/*
 * Adds f to the queue, which takes over one reference (the caller's to
 * count).
 * Past the cap the client is cut off; "force" (the 101, a close frame)
 * goes past it.
 */

static ngx_int_t
orbit_ws_queue(orbit_ws_t *ws, orbit_ws_frame_t *f, ngx_uint_t force)
{
    orbit_ws_out_t  *o;

    if (!force && ws->queued + f->len > ws->conf->max_queued) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "websocket: client does not read, %uz bytes queued: "
                      "cut off", ws->queued);
        ws->done = 1;
        orbit_ws_post_write(ws);
        return NGX_ERROR;
    }

    o = ngx_alloc(sizeof(orbit_ws_out_t), ws->connection->log);
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

    *ws->out_last = &o->cl;
    ws->out_last = &o->cl.next;
    ws->queued += f->len;

    return NGX_OK;
}


/* NGX_OK: all out; NGX_AGAIN: the rest waits for the socket */

static ngx_int_t
orbit_ws_flush(orbit_ws_t *ws)
{
    ngx_chain_t       *cl;
    orbit_ws_out_t    *o;
    ngx_connection_t  *c;

    c = ws->connection;

    if (ws->out == NULL) {
        return NGX_OK;
    }

    if (c->error) {
        return NGX_ERROR;
    }

    if (!c->write->ready) {
        return NGX_AGAIN;
    }

    cl = c->send_chain(c, ws->out, 0);

    if (cl == NGX_CHAIN_ERROR) {
        c->error = 1;
        return NGX_ERROR;
    }

    while (ws->out && ws->out != cl) {
        o = (orbit_ws_out_t *) ws->out;
        ws->out = o->cl.next;
        ws->queued -= o->frame->len;
        orbit_ws_frame_release(o->frame);
        ngx_free(o);
    }

    if (ws->out == NULL) {
        ws->out_last = &ws->out;
        return NGX_OK;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
orbit_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c;
    orbit_ws_t        *ws;

    c = wev->data;
    ws = orbit_ws_get(c);

    if (!ws->done && orbit_ws_flush(ws) == NGX_ERROR) {
        ws->done = 1;
    }

    orbit_ws_done(ws);
}


/*
 * At the end of each handler: finished, or both close frames exchanged
 * and ours out (the server closes TCP first)?
 */

static void
orbit_ws_done(orbit_ws_t *ws)
{
    if (!ws->done && ws->close_sent && ws->close_received
        && ws->out == NULL)
    {
        ws->done = 1;
    }

    if (ws->done) {
        orbit_ws_finish(ws);
    }

    /* what is still queued waits for the socket's write event: posting
     * it again here would spin the worker while the client reads
     * nothing */
}


/* ------------------------------------------------------------ closing */

void
orbit_ws_close(orbit_ws_t *ws, ngx_uint_t code, const char *reason)
{
    if (ws->close_sent || ws->done) {
        return;
    }

    orbit_ws_send_close(ws, code, reason);

    /* the rest happens in the write handler, never under the caller */
    orbit_ws_post_write(ws);
}


static void
orbit_ws_send_close(orbit_ws_t *ws, ngx_uint_t code, const char *reason)
{
    size_t             len;
    orbit_ws_frame_t  *f;
    u_char             payload[ORBIT_WS_CONTROL_MAX];

    if (ws->close_sent) {
        return;
    }

    ws->close_sent = 1;

    len = orbit_ws_close_payload(payload, code, reason);

    f = orbit_ws_frame(ORBIT_WS_OP_CLOSE, payload, len,
                       ws->connection->log);

    if (f == NULL || orbit_ws_queue(ws, f, 1) != NGX_OK) {
        if (f) {
            orbit_ws_frame_release(f);
        }

        ws->done = 1;
        return;
    }

    /* the peer has this long to answer before the server closes */
    ngx_add_timer(&ws->linger, ws->conf->close_timeout);

    orbit_ws_post_write(ws);
}


static void
orbit_ws_linger_handler(ngx_event_t *ev)
{
    orbit_ws_t  *ws;

    ws = ev->data;

    ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                  "websocket: no close frame in answer: closing");

    orbit_ws_finish(ws);
}


/* the one way out: the request is finalized, its pool cleans up */

static void
orbit_ws_finish(orbit_ws_t *ws)
{
    ngx_http_request_t  *r;
    ngx_connection_t    *c;

    r = ws->request;
    c = ws->connection;

    if (ws->linger.timer_set) {
        ngx_del_timer(&ws->linger);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    c->idle = 0;

    ngx_http_finalize_request(r, NGX_DONE);
}


static void
orbit_ws_cleanup(void *data)
{
    orbit_ws_t  *ws = data;

    ngx_chain_t     *cl;
    orbit_ws_out_t  *o;

    if (ws->linger.timer_set) {
        ngx_del_timer(&ws->linger);
    }

    if (!ws->closed_told && ws->handler) {
        ws->closed_told = 1;
        ws->close_sent = 1;         /* nothing more may be queued */
        ws->handler->closed(ws);
    }

    for (cl = ws->out; cl; /* void */) {
        o = (orbit_ws_out_t *) cl;
        cl = cl->next;
        orbit_ws_frame_release(o->frame);
        ngx_free(o);
    }

    ws->out = NULL;
    ws->out_last = &ws->out;
    ws->queued = 0;

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
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
