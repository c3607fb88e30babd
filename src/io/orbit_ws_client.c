/*
 * OrbitDesk: WebSocket client connections (see orbit_ws_client.h).
 *
 * States: resolving (nginx's resolver, for a host name) -> connecting
 * (ngx_event_connect_peer) -> TLS (ngx_ssl_handshake, then the
 * certificate) -> handshake (our request out through the connection
 * core's queue, the answer read into a buffer of its own) -> open (the
 * connection core's) -> done.  One timer bounds everything before the
 * open; after it the same timer sends the pings.
 *
 * Every way out goes through orbit_wsc_end(): the resolver's query is
 * cancelled, the connection closed (a TLS close_notify goes out first;
 * should it have to wait, the connection's own pool keeps what it needs),
 * buffers freed; the terminal callback is then posted, so that it never
 * runs under a caller of this API, and the caller may free the client in
 * it.  The pool cleanup does the same when the caller's pool goes first,
 * without a callback.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "orbit_ws_client.h"


#define ORBIT_WSC_ANSWER_MAX  8192      /* the 101's status and headers */
#define ORBIT_WSC_ERROR_MAX   256


enum {
    orbit_wsc_st_idle = 0,
    orbit_wsc_st_resolving,
    orbit_wsc_st_connecting,
    orbit_wsc_st_tls,
    orbit_wsc_st_handshake,
    orbit_wsc_st_open,
    orbit_wsc_st_done
};


static const char  *orbit_wsc_waiting[] = {
    "", "resolving", "connecting", "in the TLS handshake",
    "waiting for the answer", "", ""
};


typedef struct {
    ngx_str_t                    url;
} orbit_wsc_log_ctx_t;


static void orbit_wsc_resolved(ngx_resolver_ctx_t *ctx);
static void orbit_wsc_connect_peer(orbit_ws_client_t *ws);
static void orbit_wsc_handshake_handler(ngx_event_t *ev);
static void orbit_wsc_connected(orbit_ws_client_t *ws);
static ngx_int_t orbit_wsc_ssl_start(orbit_ws_client_t *ws);
static void orbit_wsc_ssl_handshaked(ngx_connection_t *c);
static void orbit_wsc_send_request(orbit_ws_client_t *ws);
static orbit_ws_frame_t *orbit_wsc_request(orbit_ws_client_t *ws);
static void orbit_wsc_read_answer(orbit_ws_client_t *ws);
static ngx_int_t orbit_wsc_answer(orbit_ws_client_t *ws, size_t *head);
static void orbit_wsc_open(orbit_ws_client_t *ws, size_t head);
static void orbit_wsc_handler(ngx_event_t *ev);
static void orbit_wsc_message(orbit_ws_conn_t *wc, ngx_uint_t opcode,
    u_char *data, size_t len);
static void orbit_wsc_finish(orbit_ws_conn_t *wc);
static void orbit_wsc_timer_handler(ngx_event_t *ev);
static void orbit_wsc_fail(orbit_ws_client_t *ws, const char *fmt, ...);
static void orbit_wsc_end(orbit_ws_client_t *ws);
static void orbit_wsc_close_connection(ngx_connection_t *c);
static void orbit_wsc_notify_handler(ngx_event_t *ev);
static void orbit_wsc_cleanup(void *data);
static u_char *orbit_wsc_log_error(ngx_log_t *log, u_char *buf, size_t len);


static const orbit_ws_conn_handler_t  orbit_wsc_conn_handler = {
    orbit_wsc_message,
    orbit_wsc_finish
};


/* ------------------------------------------------------------- config */

void
orbit_ws_client_conf_init(orbit_ws_client_conf_t *conf)
{
    orbit_ws_conf_init(&conf->ws);

    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->ping_interval = NGX_CONF_UNSET_MSEC;
    conf->ssl = NGX_CONF_UNSET_PTR;
    conf->verify = NGX_CONF_UNSET;
    conf->resolver = NGX_CONF_UNSET_PTR;
    conf->resolver_timeout = NGX_CONF_UNSET_MSEC;
}


void
orbit_ws_client_conf_merge(orbit_ws_client_conf_t *conf,
    orbit_ws_client_conf_t *prev)
{
    orbit_ws_conf_merge(&conf->ws, &prev->ws);

    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 10000);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval, 0);
    ngx_conf_merge_value(conf->verify, prev->verify, 1);
    ngx_conf_merge_ptr_value(conf->ssl, prev->ssl, NULL);
    ngx_conf_merge_ptr_value(conf->resolver, prev->resolver, NULL);
    ngx_conf_merge_msec_value(conf->resolver_timeout,
                              prev->resolver_timeout, 30000);
}


ngx_int_t
orbit_ws_client_ssl(ngx_conf_t *cf, orbit_ws_client_conf_t *conf,
    ngx_str_t *trusted)
{
    ngx_str_t            file;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    conf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conf->ssl == NULL) {
        return NGX_ERROR;
    }

    conf->ssl->log = cf->log;

    if (ngx_ssl_create(conf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conf->ssl;

    /*
     * Loaded here, in the master: a worker reads no file when it connects.
     * Without a file of our own, OpenSSL's default one (the system's CA
     * bundle), if there is one.
     */

    if (trusted && trusted->len) {
        file = *trusted;

    } else {
        file.data = (u_char *) X509_get_default_cert_file();
        file.len = ngx_strlen(file.data);

        if (ngx_file_info(file.data, &fi) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_WARN, cf->log, ngx_errno,
                          "websocket client: no CA file \"%V\": no server "
                          "certificate will be trusted", &file);
            ngx_str_null(&file);
        }
    }

    return ngx_ssl_trusted_certificate(cf, conf->ssl, &file, 10);
}


/* ---------------------------------------------------------- connecting */

orbit_ws_client_t *
orbit_ws_client_create(ngx_pool_t *pool, ngx_log_t *log,
    orbit_ws_client_conf_t *conf)
{
    orbit_ws_client_t   *ws;
    ngx_pool_cleanup_t  *cln;

    ws = ngx_pcalloc(pool, sizeof(orbit_ws_client_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (ws == NULL || cln == NULL) {
        return NULL;
    }

    ws->pool = pool;
    ws->log = log;
    ws->conf = conf;

    ws->timer.handler = orbit_wsc_timer_handler;
    ws->timer.data = ws;
    ws->timer.log = log;

    ws->notify.handler = orbit_wsc_notify_handler;
    ws->notify.data = ws;
    ws->notify.log = log;

    cln->handler = orbit_wsc_cleanup;
    cln->data = ws;

    return ws;
}


ngx_int_t
orbit_ws_client_header(orbit_ws_client_t *ws, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_keyval_t  *kv;

    if (!orbit_ws_header_valid((char *) name->data, name->len,
                               (char *) value->data, value->len))
    {
        return NGX_ERROR;
    }

    if (ws->headers == NULL) {
        ws->headers = ngx_array_create(ws->pool, 4, sizeof(ngx_keyval_t));
        if (ws->headers == NULL) {
            return NGX_ERROR;
        }
    }

    kv = ngx_array_push(ws->headers);
    if (kv == NULL) {
        return NGX_ERROR;
    }

    kv->key = *name;
    kv->value = *value;

    return NGX_OK;
}


ngx_int_t
orbit_ws_client_connect(orbit_ws_client_t *ws, ngx_str_t *url,
    const orbit_ws_client_handler_t *handler, void *data)
{
    u_char               *p;
    ngx_int_t             rc;
    ngx_addr_t            addr;
    ngx_log_t            *log;
    ngx_resolver_ctx_t   *ctx;
    orbit_wsc_log_ctx_t  *lctx;
    u_char                random[16];

    if (ws->state != orbit_wsc_st_idle) {
        ngx_str_set(&ws->error, "connect called twice");
        return NGX_ERROR;
    }

    /* the URL, and the host as a C string, in the caller's pool */

    ws->url_text.data = ngx_pnalloc(ws->pool, 2 * url->len + 1);
    if (ws->url_text.data == NULL) {
        return NGX_ERROR;
    }

    ws->url_text.len = url->len;
    p = ngx_cpymem(ws->url_text.data, url->data, url->len);

    if (orbit_ws_url_parse(&ws->url, (char *) ws->url_text.data,
                           ws->url_text.len) != 0)
    {
        ngx_str_set(&ws->error, "invalid ws:// or wss:// URL");
        return NGX_ERROR;
    }

    ws->host = p;
    *ngx_cpymem(p, ws->url.host, ws->url.host_len) = '\0';

    if (ws->url.tls && ws->conf->ssl == NULL) {
        ngx_str_set(&ws->error, "wss:// without a TLS context");
        return NGX_ERROR;
    }

    if (ws->protocols.len
        && !orbit_ws_header_valid("Sec-WebSocket-Protocol", 22,
                                  (char *) ws->protocols.data,
                                  ws->protocols.len))
    {
        ngx_str_set(&ws->error, "invalid protocols");
        return NGX_ERROR;
    }

    if (RAND_bytes(random, 16) != 1) {
        ngx_str_set(&ws->error, "RAND_bytes() failed");
        return NGX_ERROR;
    }

    orbit_ws_client_key(random, ws->key);

    rc = ngx_parse_addr(ws->pool, &addr, ws->host, ws->url.host_len);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    ws->host_is_addr = (rc == NGX_OK);

    if (!ws->host_is_addr
        && (ws->conf->resolver == NULL
            || ws->conf->resolver->connections.nelts == 0))
    {
        ngx_str_set(&ws->error, "a host name needs a resolver");
        return NGX_ERROR;
    }

    /*
     * The connection's pool: its log (with the URL for context) and the
     * TLS state, which may outlive the client by a close_notify.
     */

    ws->cpool = ngx_create_pool(1024, ws->log);
    if (ws->cpool == NULL) {
        return NGX_ERROR;
    }

    log = ngx_palloc(ws->cpool, sizeof(ngx_log_t));
    lctx = ngx_palloc(ws->cpool, sizeof(orbit_wsc_log_ctx_t));

    if (log == NULL || lctx == NULL) {
        ngx_destroy_pool(ws->cpool);
        ws->cpool = NULL;
        return NGX_ERROR;
    }

    /* not the query: it may carry a token */

    p = ngx_strlchr(ws->url_text.data, ws->url_text.data + url->len, '?');

    lctx->url.data = ws->url_text.data;
    lctx->url.len = (p ? p : ws->url_text.data + url->len) - lctx->url.data;
    lctx->url.data = ngx_pstrdup(ws->cpool, &lctx->url);

    if (lctx->url.data == NULL) {
        ngx_destroy_pool(ws->cpool);
        ws->cpool = NULL;
        return NGX_ERROR;
    }

    *log = *ws->log;
    log->handler = orbit_wsc_log_error;
    log->data = lctx;
    log->action = NULL;

    ws->cpool->log = log;
    ws->clog = log;
    ws->timer.log = log;

    ws->handler = handler;
    ws->data = data;

    ngx_add_timer(&ws->timer, ws->conf->timeout);

    if (ws->host_is_addr) {
        ngx_memcpy(&ws->sockaddr, addr.sockaddr, addr.socklen);
        ws->peer.socklen = addr.socklen;
        ws->state = orbit_wsc_st_connecting;

        orbit_wsc_connect_peer(ws);
        return NGX_OK;
    }

    ctx = ngx_resolve_start(ws->conf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_del_timer(&ws->timer);
        ngx_destroy_pool(ws->cpool);
        ws->cpool = NULL;
        ngx_str_set(&ws->error, "cannot start resolving");
        return NGX_ERROR;
    }

    ctx->name.data = ws->host;
    ctx->name.len = ws->url.host_len;
    ctx->handler = orbit_wsc_resolved;
    ctx->data = ws;
    ctx->timeout = ws->conf->resolver_timeout;

    ws->resolving = ctx;
    ws->state = orbit_wsc_st_resolving;

    /* the handler may run in there, with a name the resolver has cached */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* ctx is freed */
        ws->resolving = NULL;
        orbit_wsc_fail(ws, "cannot resolve \"%s\"", ws->host);
    }

    return NGX_OK;
}


static void
orbit_wsc_resolved(ngx_resolver_ctx_t *ctx)
{
    orbit_ws_client_t  *ws;

    ws = ctx->data;
    ws->resolving = NULL;

    if (ctx->state) {
        orbit_wsc_fail(ws, "\"%s\" could not be resolved (%i: %s)",
                       ws->host, ctx->state,
                       ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        return;
    }

    /* the resolver rotates the addresses: the first one */

    ngx_memcpy(&ws->sockaddr, ctx->addrs[0].sockaddr,
               ctx->addrs[0].socklen);
    ws->peer.socklen = ctx->addrs[0].socklen;

    ngx_resolve_name_done(ctx);

    ws->state = orbit_wsc_st_connecting;

    orbit_wsc_connect_peer(ws);
}


static void
orbit_wsc_connect_peer(orbit_ws_client_t *ws)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_peer_connection_t  *pc;

    pc = &ws->peer;

    ngx_inet_set_port(&ws->sockaddr.sockaddr, (in_port_t) ws->url.port);

    ws->peer_name.data = ngx_pnalloc(ws->pool, NGX_SOCKADDR_STRLEN);
    if (ws->peer_name.data == NULL) {
        orbit_wsc_fail(ws, "no memory");
        return;
    }

    ws->peer_name.len = ngx_sock_ntop(&ws->sockaddr.sockaddr, pc->socklen,
                                      ws->peer_name.data,
                                      NGX_SOCKADDR_STRLEN, 1);

    pc->sockaddr = &ws->sockaddr.sockaddr;
    pc->name = &ws->peer_name;
    pc->get = ngx_event_get_peer;
    pc->log = ws->clog;
    pc->log_error = NGX_ERROR_ERR;
    pc->tries = 1;

    ws->clog->action = "connecting";

    rc = ngx_event_connect_peer(pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        /* logged; no connection left */
        pc->connection = NULL;
        orbit_wsc_fail(ws, "connect() to %V failed", pc->name);
        return;
    }

    c = pc->connection;
    c->data = ws;
    c->pool = ws->cpool;

    /* small frames (20 ms of audio) go out at once, not after an ACK */
    (void) ngx_tcp_nodelay(c);
    c->read->handler = orbit_wsc_handshake_handler;
    c->write->handler = orbit_wsc_handshake_handler;

    if (rc == NGX_OK) {
        orbit_wsc_connected(ws);
    }

    /* NGX_AGAIN: the write event tells */
}


static void
orbit_wsc_handshake_handler(ngx_event_t *ev)
{
    int                 err;
    u_char             *p;
    socklen_t           len;
    ngx_connection_t   *c;
    orbit_ws_client_t  *ws;
    u_char              text[NGX_MAX_ERROR_STR];

    c = ev->data;
    ws = c->data;

    switch (ws->state) {

    case orbit_wsc_st_connecting:
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            (void) ngx_connection_error(c, err, "connect() failed");
            p = ngx_strerror(err, text, sizeof(text) - 1);
            *p = '\0';
            orbit_wsc_fail(ws, "connect() to %V failed (%d: %s)",
                           &ws->peer_name, err, text);
            return;
        }

        orbit_wsc_connected(ws);
        return;

    case orbit_wsc_st_handshake:
        if (ev->write) {
            orbit_ws_conn_write(&ws->conn);

        } else {
            orbit_wsc_read_answer(ws);
        }

        return;

    default:
        /* TLS is nginx's until it calls orbit_wsc_ssl_handshaked() */
        return;
    }
}


static void
orbit_wsc_connected(orbit_ws_client_t *ws)
{
    if (!ws->url.tls) {
        orbit_wsc_send_request(ws);
        return;
    }

    ws->state = orbit_wsc_st_tls;

    if (orbit_wsc_ssl_start(ws) != NGX_OK) {
        orbit_wsc_fail(ws, "cannot start TLS");
    }
}


static ngx_int_t
orbit_wsc_ssl_start(orbit_ws_client_t *ws)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    X509_VERIFY_PARAM   *param;

    c = ws->peer.connection;

    if (ngx_ssl_create_connection(ws->conf->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* SNI: names only (RFC 6066 has no addresses in it) */

    if (!ws->host_is_addr
        && SSL_set_tlsext_host_name(c->ssl->connection, (char *) ws->host)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed", ws->host);
        return NGX_ERROR;
    }

    /*
     * The certificate is checked as it comes (the chain against the CA
     * file, and the name or address), and the verdict read once the
     * handshake is done, as nginx's proxy_ssl_verify does.
     */

    if (ws->conf->verify) {
        param = SSL_get0_param(c->ssl->connection);

        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);

        if ((ws->host_is_addr
             ? X509_VERIFY_PARAM_set1_ip_asc(param, (char *) ws->host)
             : X509_VERIFY_PARAM_set1_host(param, (char *) ws->host, 0))
            != 1)
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "X509_VERIFY_PARAM_set1_host(\"%s\") failed",
                          ws->host);
            return NGX_ERROR;
        }
    }

    ws->clog->action = "in the TLS handshake";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = orbit_wsc_ssl_handshaked;
        return NGX_OK;
    }

    orbit_wsc_ssl_handshaked(c);

    return NGX_OK;
}


static void
orbit_wsc_ssl_handshaked(ngx_connection_t *c)
{
    long                rc;
    X509               *cert;
    orbit_ws_client_t  *ws;

    ws = c->data;

    if (!c->ssl->handshaked) {
        orbit_wsc_fail(ws, "TLS handshake with %V failed", &ws->peer_name);
        return;
    }

    if (ws->conf->verify) {
        cert = SSL_get_peer_certificate(c->ssl->connection);

        if (cert == NULL) {
            orbit_wsc_fail(ws, "the server sent no certificate");
            return;
        }

        X509_free(cert);

        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "websocket server's certificate: %s (%l)",
                          X509_verify_cert_error_string(rc), rc);
            orbit_wsc_fail(ws, "certificate verify failed: %s",
                           X509_verify_cert_error_string(rc));
            return;
        }
    }

    /* nginx's handshake handlers stay on the events: ours again */

    c->read->handler = orbit_wsc_handshake_handler;
    c->write->handler = orbit_wsc_handshake_handler;

    orbit_wsc_send_request(ws);
}


/* ----------------------------------------------------------- handshake */

static void
orbit_wsc_send_request(orbit_ws_client_t *ws)
{
    ngx_connection_t  *c;
    orbit_ws_frame_t  *f;

    c = ws->peer.connection;

    orbit_ws_conn_init(&ws->conn, c, &ws->conf->ws, &orbit_wsc_conn_handler,
                       ws, 1);

    ws->state = orbit_wsc_st_handshake;
    ws->clog->action = "in the WebSocket handshake";

    ws->answer = ngx_alloc(ORBIT_WSC_ANSWER_MAX, c->log);
    f = orbit_wsc_request(ws);

    if (ws->answer == NULL || f == NULL) {
        if (f) {
            orbit_ws_frame_release(f);
        }

        orbit_wsc_fail(ws, "no memory");
        return;
    }

    if (orbit_ws_conn_queue(&ws->conn, f, 1) != NGX_OK) {
        orbit_ws_frame_release(f);
        orbit_wsc_fail(ws, "no memory");
        return;
    }

    /* out now if the socket takes it, else at its write event */

    orbit_ws_conn_write(&ws->conn);
}


static orbit_ws_frame_t *
orbit_wsc_request(orbit_ws_client_t *ws)
{
    size_t             len;
    u_char            *p;
    ngx_uint_t         i, slash;
    ngx_keyval_t      *h;
    orbit_ws_frame_t  *f;

    static const char  upgrade[] =
        "Upgrade: websocket" CRLF
        "Connection: Upgrade" CRLF
        "Sec-WebSocket-Version: 13" CRLF
        "Sec-WebSocket-Key: ";

    slash = (ws->url.path_len == 0 || ws->url.path[0] == '?');

    len = sizeof("GET ") - 1 + slash + ws->url.path_len
          + sizeof(" HTTP/1.1" CRLF "Host: ") - 1 + ws->url.authority_len
          + sizeof(CRLF) - 1 + sizeof(upgrade) - 1 + ORBIT_WS_KEY_LEN
          + sizeof(CRLF) - 1;

    if (ws->protocols.len) {
        len += sizeof("Sec-WebSocket-Protocol: " CRLF) - 1
               + ws->protocols.len;
    }

    h = ws->headers ? ws->headers->elts : NULL;

    for (i = 0; h && i < ws->headers->nelts; i++) {
        len += h[i].key.len + sizeof(": " CRLF) - 1 + h[i].value.len;
    }

    len += sizeof(CRLF) - 1;

    f = orbit_ws_frame_text(len, &p, ws->clog);
    if (f == NULL) {
        return NULL;
    }

    p = ngx_cpymem(p, "GET ", 4);

    if (slash) {
        *p++ = '/';
    }

    p = ngx_cpymem(p, ws->url.path, ws->url.path_len);
    p = ngx_cpymem(p, " HTTP/1.1" CRLF "Host: ",
                   sizeof(" HTTP/1.1" CRLF "Host: ") - 1);
    p = ngx_cpymem(p, ws->url.authority, ws->url.authority_len);
    *p++ = CR; *p++ = LF;
    p = ngx_cpymem(p, upgrade, sizeof(upgrade) - 1);
    p = ngx_cpymem(p, ws->key, ORBIT_WS_KEY_LEN);
    *p++ = CR; *p++ = LF;

    if (ws->protocols.len) {
        p = ngx_sprintf(p, "Sec-WebSocket-Protocol: %V" CRLF,
                        &ws->protocols);
    }

    for (i = 0; h && i < ws->headers->nelts; i++) {
        p = ngx_sprintf(p, "%V: %V" CRLF, &h[i].key, &h[i].value);
    }

    *p++ = CR; *p++ = LF;

    return f;
}


static void
orbit_wsc_read_answer(orbit_ws_client_t *ws)
{
    size_t             head;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = ws->peer.connection;

    for ( ;; ) {
        n = c->recv(c, ws->answer + ws->answer_len,
                    ORBIT_WSC_ANSWER_MAX - ws->answer_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                orbit_wsc_fail(ws, "cannot wait for the answer");
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            orbit_wsc_fail(ws, "the server closed the connection before "
                           "answering");
            return;
        }

        ws->answer_len += n;

        rc = orbit_wsc_answer(ws, &head);

        if (rc == NGX_OK) {
            orbit_wsc_open(ws, head);
            return;
        }

        if (rc == NGX_ERROR) {
            return;
        }

        /* NGX_AGAIN: the head is not whole */

        if (ws->answer_len == ORBIT_WSC_ANSWER_MAX) {
            orbit_wsc_fail(ws, "the answer's head is over %d bytes",
                           ORBIT_WSC_ANSWER_MAX);
            return;
        }
    }
}


static ngx_int_t
orbit_wsc_answer(orbit_ws_client_t *ws, size_t *head)
{
    long                  n;
    const char           *err;
    orbit_ws_response_t   r;

    n = orbit_ws_response_parse(&r, (char *) ws->answer, ws->answer_len);

    if (n == 0) {
        return NGX_AGAIN;
    }

    if (n < 0) {
        orbit_wsc_fail(ws, "the answer is not HTTP");
        return NGX_ERROR;
    }

    ws->status = r.status;

    if (r.status != 101) {
        orbit_wsc_fail(ws, "HTTP %ui, not 101", ws->status);
        return NGX_ERROR;
    }

    err = orbit_ws_response_check(&r, ws->key, (char *) ws->protocols.data,
                                  ws->protocols.len);
    if (err) {
        orbit_wsc_fail(ws, "bad handshake: %s", err);
        return NGX_ERROR;
    }

    if (r.protocols) {
        ws->protocol.data = ngx_pnalloc(ws->pool, r.protocol_len);
        if (ws->protocol.data == NULL) {
            orbit_wsc_fail(ws, "no memory");
            return NGX_ERROR;
        }

        ws->protocol.len = r.protocol_len;
        ngx_memcpy(ws->protocol.data, r.protocol, r.protocol_len);
    }

    *head = (size_t) n;

    return NGX_OK;
}


static void
orbit_wsc_open(orbit_ws_client_t *ws, size_t head)
{
    u_char            *answer;
    ngx_connection_t  *c;

    c = ws->peer.connection;

    ngx_del_timer(&ws->timer);

    ws->state = orbit_wsc_st_open;
    ws->opened = 1;
    ws->clog->action = "in a websocket";

    c->read->handler = orbit_wsc_handler;
    c->write->handler = orbit_wsc_handler;
    c->idle = 1;                /* a reload closes it with 1001 */

    if (ws->conf->ping_interval) {
        ws->timer.cancelable = 1;
        ngx_add_timer(&ws->timer, ws->conf->ping_interval);
    }

    ws->handler->open(ws);

    /* frames that came behind the 101, then the socket */

    answer = ws->answer;
    ws->answer = NULL;

    orbit_ws_conn_read_input(&ws->conn, answer + head,
                             ws->answer_len - head);

    ngx_free(answer);
}


/* ------------------------------------------------------------------ open */

static void
orbit_wsc_handler(ngx_event_t *ev)
{
    ngx_connection_t   *c;
    orbit_ws_client_t  *ws;

    c = ev->data;
    ws = c->data;

    if (ev->write) {
        orbit_ws_conn_write(&ws->conn);

    } else {
        orbit_ws_conn_read(&ws->conn);
    }
}


static void
orbit_wsc_message(orbit_ws_conn_t *wc, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    orbit_ws_client_t  *ws = wc->data;

    ws->handler->message(ws, opcode, data, len);
}


ngx_int_t
orbit_ws_client_send(orbit_ws_client_t *ws, ngx_uint_t opcode,
    const u_char *data, size_t len)
{
    if (ws->state != orbit_wsc_st_open) {
        return NGX_DECLINED;
    }

    return orbit_ws_conn_send(&ws->conn, opcode, data, len);
}


void
orbit_ws_client_close(orbit_ws_client_t *ws, ngx_uint_t code,
    const char *reason)
{
    switch (ws->state) {

    case orbit_wsc_st_idle:
    case orbit_wsc_st_done:
        return;

    case orbit_wsc_st_open:
        orbit_ws_conn_close(&ws->conn, code, reason);
        return;

    default:
        orbit_wsc_fail(ws, "closed before the open");
        return;
    }
}


/* the connection core is done with it (open, or failed in the handshake) */

static void
orbit_wsc_finish(orbit_ws_conn_t *wc)
{
    orbit_ws_client_t  *ws = wc->data;

    if (ws->state != orbit_wsc_st_open) {
        orbit_wsc_fail(ws, "%s", wc->error ? wc->error
                                           : "the handshake failed");
        return;
    }

    if (wc->error) {
        ws->error.data = (u_char *) wc->error;
        ws->error.len = ngx_strlen(wc->error);
    }

    orbit_wsc_end(ws);
}


static void
orbit_wsc_timer_handler(ngx_event_t *ev)
{
    orbit_ws_client_t  *ws;

    ws = ev->data;

    if (ws->state != orbit_wsc_st_open) {
        orbit_wsc_fail(ws, "timed out %s", orbit_wsc_waiting[ws->state]);
        return;
    }

    if (ws->conn.close_sent) {
        return;                 /* the close has its own timeout */
    }

    if (ws->pinged && !ws->conn.pong) {
        ngx_log_error(NGX_LOG_INFO, ws->clog, 0,
                      "websocket: no pong in %M ms: closing",
                      ws->conf->ping_interval);
        ngx_str_set(&ws->error, "no pong in time");
        ws->conn.failed = 1;
        orbit_wsc_end(ws);
        return;
    }

    ws->pinged = 1;
    ws->conn.pong = 0;

    if (orbit_ws_conn_send(&ws->conn, ORBIT_WS_OP_PING, NULL, 0)
        == NGX_OK)
    {
        ngx_add_timer(&ws->timer, ws->conf->ping_interval);
    }
}


/* ----------------------------------------------------------------- end */

static void
orbit_wsc_fail(orbit_ws_client_t *ws, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (ws->state == orbit_wsc_st_done) {
        return;
    }

    p = ngx_pnalloc(ws->pool, ORBIT_WSC_ERROR_MAX);

    if (p) {
        va_start(args, fmt);
        ws->error.len = ngx_vslprintf(p, p + ORBIT_WSC_ERROR_MAX, fmt, args)
                        - p;
        va_end(args);
        ws->error.data = p;

    } else {
        ngx_str_set(&ws->error, "no memory");
    }

    ngx_log_error(NGX_LOG_INFO, ws->clog ? ws->clog : ws->log, 0,
                  "websocket client: %V", &ws->error);

    orbit_wsc_end(ws);
}


/* the one way out: everything released, then the callback posted */

static void
orbit_wsc_end(orbit_ws_client_t *ws)
{
    ngx_connection_t  *c;

    if (ws->state == orbit_wsc_st_done) {
        return;
    }

    ws->state = orbit_wsc_st_done;

    if (ws->timer.timer_set) {
        ngx_del_timer(&ws->timer);
    }

    if (ws->resolving) {
        ngx_resolve_name_done(ws->resolving);
        ws->resolving = NULL;
    }

    if (ws->conn.connection) {
        orbit_ws_conn_stop(&ws->conn);
        orbit_ws_conn_free(&ws->conn);
    }

    if (ws->answer) {
        ngx_free(ws->answer);
        ws->answer = NULL;
    }

    c = ws->peer.connection;
    ws->peer.connection = NULL;

    if (c) {
        /* the connection outlives us only in its own pool */
        c->data = NULL;
        orbit_wsc_close_connection(c);

    } else if (ws->cpool) {
        ngx_destroy_pool(ws->cpool);
    }

    ws->cpool = NULL;
    ws->clog = NULL;
    ws->timer.log = ws->log;

    if (ws->handler && !ws->told) {
        ngx_post_event(&ws->notify, &ngx_posted_events);
    }
}


static void
orbit_wsc_close_connection(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = orbit_wsc_close_connection;
            return;
        }
    }

    pool = c->pool;

    ngx_close_connection(c);
    ngx_destroy_pool(pool);
}


static void
orbit_wsc_notify_handler(ngx_event_t *ev)
{
    ngx_str_t           reason;
    orbit_ws_client_t  *ws;

    ws = ev->data;
    ws->told = 1;

    if (!ws->opened) {
        ws->handler->error(ws, &ws->error);
        return;
    }

    reason.data = ws->conn.close_reason;
    reason.len = ws->conn.close_reason_len;

    /* the last use of ws: the callee may destroy its pool */

    ws->handler->close(ws, ws->conn.close_code, &reason);
}


static void
orbit_wsc_cleanup(void *data)
{
    orbit_ws_client_t  *ws = data;

    ws->told = 1;               /* the owner is going: no callback */

    orbit_wsc_end(ws);

    if (ws->notify.posted) {
        ngx_delete_posted_event(&ws->notify);
    }
}


static u_char *
orbit_wsc_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char               *p;
    orbit_wsc_log_ctx_t  *ctx;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
    }

    ctx = log->data;

    return ngx_snprintf(p, len, ", websocket client of %V", &ctx->url);
}
