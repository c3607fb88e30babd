/*
 * OrbitDesk: WebSocket connections inside nginx, over the codec of
 * orbit_ws_codec.h.
 *
 * A server connection is taken over from an HTTP request at the upgrade:
 * the 101 answer is our first output, then the connection's events are
 * ours until it closes.  A protocol (Socket.IO, SignalR) sits on top: it
 * gets whole messages, sends frames, and hears once that the connection
 * is gone.
 *
 * After the upgrade the connection is orbit_ws_conn.h's (frames, the
 * capped output queue, pings, the close handshake, shared with the client
 * connections of orbit_ws_client.h).  Its buffers are allocated apart,
 * never from the request pool, which would only grow over a connection of
 * hours; the pool's cleanup frees what is left.
 */

#ifndef _ORBIT_WS_H_INCLUDED_
#define _ORBIT_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "orbit_ws_conn.h"


typedef struct orbit_ws_s        orbit_ws_t;


typedef struct {
    /* a whole text or binary message, valid during the call */
    void                       (*message)(orbit_ws_t *ws, ngx_uint_t opcode,
                                          u_char *data, size_t len);

    /* the connection is gone: exactly once; nothing may be sent now */
    void                       (*closed)(orbit_ws_t *ws);
} orbit_ws_handler_t;


struct orbit_ws_s {
    ngx_http_request_t          *request;
    ngx_connection_t            *connection;
    void                        *data;         /* the protocol's */

    /* private */
    const orbit_ws_handler_t    *handler;
    orbit_ws_conn_t              conn;
    unsigned                     closed_told:1;
};


/*
 * The handshake of RFC 6455 section 4.2 on r.  NGX_OK: the connection is
 * ours (*wsp set, the 101 queued; the content handler returns NGX_DONE).
 * Otherwise an HTTP status to answer with (400, 426 with its
 * Sec-WebSocket-Version header already set, 500).
 */
ngx_int_t orbit_ws_upgrade(ngx_http_request_t *r, orbit_ws_conf_t *conf,
    const orbit_ws_handler_t *handler, void *data, orbit_ws_t **wsp);

/*
 * Queue and try to send.  NGX_OK: queued (or sent).  NGX_DECLINED: the
 * connection is closing, nothing queued.  Past the queue's cap the client
 * is cut off: NGX_ERROR, and the connection closes when control returns.
 * Frames: orbit_ws_frame() and its refcount, in orbit_ws_conn.h.
 */
ngx_int_t orbit_ws_send_frame(orbit_ws_t *ws, orbit_ws_frame_t *f);
ngx_int_t orbit_ws_send(orbit_ws_t *ws, ngx_uint_t opcode,
    const u_char *data, size_t len);

/* the close handshake, with code and a short reason (may be NULL) */
void orbit_ws_close(orbit_ws_t *ws, ngx_uint_t code, const char *reason);


/* the request's header name (in any case), or NULL */
ngx_table_elt_t *orbit_header_in(ngx_http_request_t *r, const char *name);


#endif /* _ORBIT_WS_H_INCLUDED_ */
