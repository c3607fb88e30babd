/*
 * OrbitDesk: WebSocket client connections inside nginx (RFC 6455 client
 * side), for talking to outside real-time services such as OpenAI's
 * realtime API (wss://api.openai.com/v1/realtime?model=...).
 *
 * A ws:// or wss:// URL with an IP address, or a host name resolved by
 * nginx's own resolver (conf->resolver: the `resolver` directive's, so a
 * name never blocks a worker; without one only addresses are accepted).
 * The TCP connection is nginx's peer connection, nonblocking; TLS is
 * nginx's (ngx_ssl_*): SNI with the host name, and the server's
 * certificate checked against a trusted CA file, and against the host
 * name or address, unless conf->verify is off.  Then the HTTP/1.1
 * upgrade (Host, Upgrade, Connection, Sec-WebSocket-Key and -Version,
 * the protocols offered, extra headers such as Authorization or
 * OpenAI-Beta), the 101 checked (orbit_ws_codec.h), and frames through the
 * connection core shared with the server side (orbit_ws_conn.h): ours
 * masked, whole messages up to conf->ws.max_message (1009 past it), a
 * write queue capped at conf->ws.max_queued, pings answered, the close
 * handshake, 1001 at a reload or shutdown.
 *
 * Lifetime.  The client lives in the caller's pool; the connection has a
 * small pool of its own (its log, the TLS state), gone when it closes.
 * After orbit_ws_client_connect() returned NGX_OK exactly one of the two
 * terminal callbacks comes, never from inside a call of this API:
 *
 *   error(ws, text)          the connection never opened: bad name,
 *                            refused, TLS or certificate refused, timed
 *                            out, an answer that is not a valid 101
 *                            (ws->status has its HTTP status, 0 when no
 *                            answer came); also orbit_ws_client_close()
 *                            before the open
 *   close(ws, code, reason)  it had opened (open() came) and is now
 *                            closed: the close code of the connection,
 *                            the peer's when it closed first, ours when
 *                            we did (orbit_ws_client_close(), or a
 *                            protocol error, 1009, ...), 1006 when no
 *                            close frame went either way (reset, ping
 *                            timeout); ws->error says why when it was
 *                            our side's failure
 *
 * The caller may destroy the pool after that call (not during another).
 * Destroying the pool earlier ends the connection at once with no
 * callback at all (the owner went away).
 */

#ifndef _ORBIT_WS_CLIENT_H_INCLUDED_
#define _ORBIT_WS_CLIENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "orbit_ws_conn.h"


typedef struct orbit_ws_client_s  orbit_ws_client_t;


typedef struct {
    orbit_ws_conf_t              ws;           /* message cap, queue cap,
                                                  close timeout */
    ngx_msec_t                   timeout;      /* to the 101: resolving,
                                                  TCP, TLS, the answer */
    ngx_msec_t                   ping_interval;/* 0: no pings; else a ping
                                                  each interval, and no
                                                  pong by the next: 1006 */
    ngx_ssl_t                   *ssl;          /* wss: from
                                                  orbit_ws_client_ssl() */
    ngx_flag_t                   verify;       /* the server's certificate */
    ngx_resolver_t              *resolver;     /* NULL: addresses only */
    ngx_msec_t                   resolver_timeout;
} orbit_ws_client_conf_t;


typedef struct {
    void                       (*open)(orbit_ws_client_t *ws);

    /* a whole text or binary message, valid during the call */
    void                       (*message)(orbit_ws_client_t *ws,
                                          ngx_uint_t opcode, u_char *data,
                                          size_t len);

    /* terminal, one of the two (see above) */
    void                       (*close)(orbit_ws_client_t *ws,
                                        ngx_uint_t code, ngx_str_t *reason);
    void                       (*error)(orbit_ws_client_t *ws,
                                        ngx_str_t *text);
} orbit_ws_client_handler_t;


struct orbit_ws_client_s {
    ngx_pool_t                  *pool;
    ngx_log_t                   *log;
    void                        *data;         /* the caller's */

    /* before connect: the request's extras */
    ngx_str_t                    protocols;    /* Sec-WebSocket-Protocol
                                                  offered; empty: none */
    ngx_array_t                 *headers;      /* ngx_keyval_t */

    /* results */
    ngx_uint_t                   status;       /* the answer's HTTP status */
    ngx_str_t                    protocol;     /* the one chosen, if any */
    ngx_str_t                    error;        /* why it ended, if it
                                                  failed */

    /* private */
    const orbit_ws_client_handler_t  *handler;
    orbit_ws_client_conf_t      *conf;
    ngx_uint_t                   state;
    orbit_ws_url_t               url;
    ngx_str_t                    url_text;
    u_char                      *host;         /* NUL-terminated */
    ngx_uint_t                   host_is_addr;
    ngx_pool_t                  *cpool;        /* the connection's */
    ngx_log_t                   *clog;         /* its log, in cpool */
    ngx_resolver_ctx_t          *resolving;
    ngx_peer_connection_t        peer;
    ngx_sockaddr_t               sockaddr;
    ngx_str_t                    peer_name;
    orbit_ws_conn_t              conn;
    ngx_event_t                  timer;        /* connect timeout, pings */
    ngx_event_t                  notify;       /* the terminal callback */
    u_char                      *answer;       /* the 101 being read */
    size_t                       answer_len;
    char                         key[ORBIT_WS_KEY_LEN];
    unsigned                     opened:1;
    unsigned                     pinged:1;
    unsigned                     told:1;
};


/* conf defaults, for create/merge_loc_conf of the module using it */
void orbit_ws_client_conf_init(orbit_ws_client_conf_t *conf);
void orbit_ws_client_conf_merge(orbit_ws_client_conf_t *conf,
    orbit_ws_client_conf_t *prev);

/*
 * At configuration time: the TLS context for wss:// (TLS 1.2 and 1.3),
 * trusting the CA certificates of "trusted" (PEM; empty: OpenSSL's
 * default file, the system's CA bundle).  NGX_ERROR: logged.
 */
ngx_int_t orbit_ws_client_ssl(ngx_conf_t *cf, orbit_ws_client_conf_t *conf,
    ngx_str_t *trusted);


orbit_ws_client_t *orbit_ws_client_create(ngx_pool_t *pool, ngx_log_t *log,
    orbit_ws_client_conf_t *conf);

/* an extra request header; NGX_ERROR when it is not a valid one */
ngx_int_t orbit_ws_client_header(orbit_ws_client_t *ws, ngx_str_t *name,
    ngx_str_t *value);

/*
 * Starts connecting.  NGX_OK: one terminal callback will come.
 * NGX_ERROR: nothing started, no callback (ws->error says why: an invalid
 * URL, wss:// without a TLS context, a host name without a resolver).
 */
ngx_int_t orbit_ws_client_connect(orbit_ws_client_t *ws, ngx_str_t *url,
    const orbit_ws_client_handler_t *handler, void *data);

/*
 * A text or binary message (one frame, masked), queued.  NGX_OK: queued.
 * NGX_DECLINED: not open, or closing.  NGX_ERROR: past the queue's cap
 * the connection is cut off (close comes, 1006).
 */
ngx_int_t orbit_ws_client_send(orbit_ws_client_t *ws, ngx_uint_t opcode,
    const u_char *data, size_t len);

/* the close handshake (open), or the end of the attempt (before) */
void orbit_ws_client_close(orbit_ws_client_t *ws, ngx_uint_t code,
    const char *reason);


#endif /* _ORBIT_WS_CLIENT_H_INCLUDED_ */
