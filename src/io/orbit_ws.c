/*
 * OrbitDesk: WebSocket server connections inside nginx.
 *
 * After the upgrade the connection's events come here directly:
 * c->read->handler and c->write->handler are ours and hand over to
 * orbit_ws_conn.c; c->data stays the request (nginx's own code reads it),
 * and the orbit_ws_t is the request's context of ngx_http_orbit_ws_module,
 * a module with no directives that only holds that slot.
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


/* not among nginx 1.22's statuses */
#define ORBIT_WS_UPGRADE_REQUIRED  426


static orbit_ws_t *orbit_ws_get(ngx_connection_t *c);
static void orbit_ws_read_handler(ngx_event_t *rev);
static void orbit_ws_write_handler(ngx_event_t *wev);
static void orbit_ws_message(orbit_ws_conn_t *wc, ngx_uint_t opcode,
    u_char *data, size_t len);
static void orbit_ws_finish(orbit_ws_conn_t *wc);
static void orbit_ws_cleanup(void *data);
static ngx_int_t orbit_ws_check(ngx_http_request_t *r, ngx_str_t *key);


static const orbit_ws_conn_handler_t  orbit_ws_conn_handler = {
    orbit_ws_message,
    orbit_ws_finish
};


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
    u_char              *p;
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

    orbit_ws_conn_init(&ws->conn, c, conf, &orbit_ws_conn_handler, ws, 0);

    cln->handler = orbit_ws_cleanup;
    cln->data = ws;

    /* frames the client sent right behind its headers: read from there */

    if (r->header_in && r->header_in->pos < r->header_in->last) {
        ws->conn.in_pos = r->header_in->pos;
        ws->conn.in_last = r->header_in->last;
        r->header_in->pos = r->header_in->last;
    }

    /* the 101, queued as the first "frame" */

    n = sizeof(head) - 1 + ORBIT_WS_ACCEPT_LEN + 4;

    f = orbit_ws_frame_text(n, &p, c->log);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(ngx_cpymem(p, head, sizeof(head) - 1),
                          accept, ORBIT_WS_ACCEPT_LEN),
               CRLF CRLF, 4);

    if (orbit_ws_conn_queue(&ws->conn, f, 1) != NGX_OK) {
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

    if (ws->conn.in_last > ws->conn.in_pos || c->read->ready) {
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

    h = orbit_header_in(r, "Upgrade");

    if (h == NULL || !orbit_ws_has_token((char *) h->value.data,
                                         h->value.len, "websocket")) {
        return NGX_HTTP_BAD_REQUEST;
    }

    h = orbit_header_in(r, "Connection");

    if (h == NULL || !orbit_ws_has_token((char *) h->value.data,
                                         h->value.len, "upgrade")) {
        return NGX_HTTP_BAD_REQUEST;
    }

    v = orbit_header_in(r, "Sec-WebSocket-Version");

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

    h = orbit_header_in(r, "Sec-WebSocket-Key");

    if (h == NULL) {
        return NGX_HTTP_BAD_REQUEST;
    }

    *key = h->value;

    return NGX_OK;
}


ngx_table_elt_t *
orbit_header_in(ngx_http_request_t *r, const char *name)
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


/* ------------------------------------------------------ the connection */

static void
orbit_ws_read_handler(ngx_event_t *rev)
{
    orbit_ws_t  *ws;

    ws = orbit_ws_get(rev->data);

    orbit_ws_conn_read(&ws->conn);
}


static void
orbit_ws_write_handler(ngx_event_t *wev)
{
    orbit_ws_t  *ws;

    ws = orbit_ws_get(wev->data);

    orbit_ws_conn_write(&ws->conn);
}


static void
orbit_ws_message(orbit_ws_conn_t *wc, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    orbit_ws_t  *ws = wc->data;

    ws->handler->message(ws, opcode, data, len);
}


ngx_int_t
orbit_ws_send_frame(orbit_ws_t *ws, orbit_ws_frame_t *f)
{
    return orbit_ws_conn_send_frame(&ws->conn, f);
}


ngx_int_t
orbit_ws_send(orbit_ws_t *ws, ngx_uint_t opcode, const u_char *data,
    size_t len)
{
    return orbit_ws_conn_send(&ws->conn, opcode, data, len);
}


void
orbit_ws_close(orbit_ws_t *ws, ngx_uint_t code, const char *reason)
{
    orbit_ws_conn_close(&ws->conn, code, reason);
}


/* the one way out: the request is finalized, its pool cleans up */

static void
orbit_ws_finish(orbit_ws_conn_t *wc)
{
    orbit_ws_t  *ws = wc->data;

    orbit_ws_conn_stop(wc);

    ngx_http_finalize_request(ws->request, NGX_DONE);
}


static void
orbit_ws_cleanup(void *data)
{
    orbit_ws_t  *ws = data;

    if (!ws->closed_told && ws->handler) {
        ws->closed_told = 1;
        ws->conn.close_sent = 1;    /* nothing more may be queued */
        ws->handler->closed(ws);
    }

    orbit_ws_conn_free(&ws->conn);
}
