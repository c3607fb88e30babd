/*
 * OrbitDesk: a WebSocket connection after its handshake, on either side:
 * what the server connections (orbit_ws.h) and the client connections
 * (orbit_ws_client.h) share.  Frames in through the codec
 * (orbit_ws_codec.h), whole messages out to the owner; frames out through
 * a queue capped in bytes; pings answered; the close handshake with its
 * timeout; a graceful shutdown or reload answered with 1001.
 *
 * The owner keeps the connection's event handlers (c->data is its own)
 * and calls orbit_ws_conn_read() and orbit_ws_conn_write() from them.
 * When the connection is over the core calls the owner's finish(): it
 * closes (the server finalizes its request, the client its peer
 * connection), and frees what is left with orbit_ws_conn_free().
 *
 * The roles differ where RFC 6455 makes them: a client masks what it
 * sends and wants its peer's frames unmasked; after the close handshake
 * the server closes TCP first, the client waits for that (at most the
 * close timeout).  Failing the connection (a protocol error, a message
 * past the cap) closes it at once, on both sides.
 *
 * Frames are refcounted, so one event fanned out to many server sockets
 * is framed once and queued to each without a copy.  Buffers are
 * allocated apart (ngx_alloc) and freed as they are used: a connection of
 * hours does not grow a pool.
 */

#ifndef _ORBIT_WS_CONN_H_INCLUDED_
#define _ORBIT_WS_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "orbit_ws_codec.h"


#define ORBIT_WS_CLOSE_ABNORMAL  1006  /* never on the wire: no close frame */


typedef struct orbit_ws_conn_s   orbit_ws_conn_t;
typedef struct orbit_ws_frame_s  orbit_ws_frame_t;


typedef struct {
    size_t                       max_message;  /* in: 1009 past it */
    size_t                       max_queued;   /* out: cut off past it */
    ngx_msec_t                   close_timeout;/* for the peer's close */
} orbit_ws_conf_t;


typedef struct {
    /* a whole text or binary message, valid during the call */
    void                       (*message)(orbit_ws_conn_t *wc,
                                          ngx_uint_t opcode, u_char *data,
                                          size_t len);

    /* over (wc->done): close now; called at the end of a handler */
    void                       (*finish)(orbit_ws_conn_t *wc);
} orbit_ws_conn_handler_t;


struct orbit_ws_conn_s {
    ngx_connection_t            *connection;
    void                        *data;         /* the owner's */

    /*
     * The close code of the connection: that of the first close frame,
     * the peer's or ours (1005 when the peer's had none), 1006 when none
     * went either way.  The reason is that frame's (not NUL-terminated).
     */
    ngx_uint_t                   close_code;
    u_char                       close_reason[ORBIT_WS_CONTROL_MAX - 2];
    size_t                       close_reason_len;

    /* why we ended it, when we did (static text): for the owner's log */
    const char                  *error;

    /* private */
    const orbit_ws_conn_handler_t  *handler;
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

    unsigned                     client:1;
    unsigned                     close_sent:1;
    unsigned                     close_received:1;
    unsigned                     failed:1;     /* close at once */
    unsigned                     pong:1;       /* a pong came (client) */
    unsigned                     done:1;       /* finish when back */
};


/* client: we mask, and wait for the server to close TCP */
void orbit_ws_conn_init(orbit_ws_conn_t *wc, ngx_connection_t *c,
    orbit_ws_conf_t *conf, const orbit_ws_conn_handler_t *handler,
    void *data, ngx_uint_t client);

/* the owner's read and write event handlers call these */
void orbit_ws_conn_read(orbit_ws_conn_t *wc);
void orbit_ws_conn_write(orbit_ws_conn_t *wc);

/*
 * Input that came some other way (behind the handshake's answer): copied
 * to the worker's read buffer and parsed now, then the socket is read.
 */
void orbit_ws_conn_read_input(orbit_ws_conn_t *wc, u_char *data, size_t len);

/*
 * Queues f as it is (a handshake's text; "force" goes past the cap); the
 * queue takes over one reference.  NGX_ERROR: not queued.
 */
ngx_int_t orbit_ws_conn_queue(orbit_ws_conn_t *wc, orbit_ws_frame_t *f,
    ngx_uint_t force);

/*
 * Queue and try to send.  NGX_OK: queued (or sent).  NGX_DECLINED: the
 * connection is closing, nothing queued.  Past the queue's cap the peer
 * is cut off: NGX_ERROR, and the connection closes when control returns.
 * A client masks each frame: send_frame() is for the server side only.
 */
ngx_int_t orbit_ws_conn_send_frame(orbit_ws_conn_t *wc, orbit_ws_frame_t *f);
ngx_int_t orbit_ws_conn_send(orbit_ws_conn_t *wc, ngx_uint_t opcode,
    const u_char *data, size_t len);

/* the close handshake, with code and a short reason (may be NULL) */
void orbit_ws_conn_close(orbit_ws_conn_t *wc, ngx_uint_t code,
    const char *reason);

/* in finish(): no timer, no posted event, not idle any more */
void orbit_ws_conn_stop(orbit_ws_conn_t *wc);

/* frees the queue and the message buffer; nothing may be queued after */
void orbit_ws_conn_free(orbit_ws_conn_t *wc);


/* a frame to send to many (server side): framed once, refcounted */
orbit_ws_frame_t *orbit_ws_frame(ngx_uint_t opcode, const u_char *data,
    size_t len, ngx_log_t *log);

/* a text of len bytes for the queue (a handshake), to fill in */
orbit_ws_frame_t *orbit_ws_frame_text(size_t len, u_char **data,
    ngx_log_t *log);

orbit_ws_frame_t *orbit_ws_frame_ref(orbit_ws_frame_t *f);
void orbit_ws_frame_release(orbit_ws_frame_t *f);


/* conf defaults, for merge_loc_conf */
void orbit_ws_conf_init(orbit_ws_conf_t *conf);
void orbit_ws_conf_merge(orbit_ws_conf_t *conf, orbit_ws_conf_t *prev);


#endif /* _ORBIT_WS_CONN_H_INCLUDED_ */
