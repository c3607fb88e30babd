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
 * Output goes through a queue capped in bytes: a client that stops
 * reading is cut off at the cap instead of growing the worker.  Frames
 * are refcounted, so one event fanned out to a room is framed once and
 * queued to every socket without a copy.
 *
 * Memory: a connection's buffers are allocated apart (ngx_alloc) and freed
 * as they are used, never from the request pool, which would only grow
 * over a connection of hours; the pool's cleanup frees what is left.
 */

#ifndef _ORBIT_WS_H_INCLUDED_
#define _ORBIT_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "orbit_ws_codec.h"


typedef struct orbit_ws_s        orbit_ws_t;
typedef struct orbit_ws_frame_s  orbit_ws_frame_t;


typedef struct {
    size_t                       max_message;  /* in: 1009 past it */
    size_t                       max_queued;   /* out: cut off past it */
    ngx_msec_t                   close_timeout;/* for the peer's close */
} orbit_ws_conf_t;


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
    orbit_ws_conf_t             *conf;
    orbit_ws_parser_t            parser;
    u_char                      *in_pos;       /* input being parsed */
    u_char                      *in_last;
    u_char                      *msg;          /* a message being joined */
    size_t                       msg_len;
    size_t                       msg_size;
    ngx_int_t                    msg_opcode;
    ngx_chain_t                 *out;          /* queued frames */
    ngx_chain_t                **out_last;
    size_t                       queued;       /* bytes in out */
    ngx_event_t                  linger;       /* after our close frame */

    unsigned                     close_sent:1;
    unsigned                     close_received:1;
    unsigned                     done:1;       /* finalize when back */
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

/* a frame to send to many: framed once, refcounted */
orbit_ws_frame_t *orbit_ws_frame(ngx_uint_t opcode, const u_char *data,
    size_t len, ngx_log_t *log);
orbit_ws_frame_t *orbit_ws_frame_ref(orbit_ws_frame_t *f);
void orbit_ws_frame_release(orbit_ws_frame_t *f);

/*
 * Queue and try to send.  NGX_OK: queued (or sent).  NGX_DECLINED: the
 * connection is closing, nothing queued.  Past the queue's cap the client
 * is cut off: NGX_ERROR, and the connection closes when control returns.
 */
ngx_int_t orbit_ws_send_frame(orbit_ws_t *ws, orbit_ws_frame_t *f);
ngx_int_t orbit_ws_send(orbit_ws_t *ws, ngx_uint_t opcode,
    const u_char *data, size_t len);

/* the close handshake, with code and a short reason (may be NULL) */
void orbit_ws_close(orbit_ws_t *ws, ngx_uint_t code, const char *reason);

/* conf defaults, for the protocols' merge_loc_conf */
void orbit_ws_conf_init(orbit_ws_conf_t *conf);
void orbit_ws_conf_merge(orbit_ws_conf_t *conf, orbit_ws_conf_t *prev);


#endif /* _ORBIT_WS_H_INCLUDED_ */
