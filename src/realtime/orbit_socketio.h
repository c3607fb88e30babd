/*
 * OrbitDesk real time: Socket.IO v4 (protocol 5 over Engine.IO 4, the
 * WebSocket transport) at "orbit_socketio" locations, namespace /chat.
 */

#ifndef _ORBIT_SOCKETIO_H_INCLUDED_
#define _ORBIT_SOCKETIO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "io/orbit_ws.h"


typedef struct {
    orbit_ws_conf_t              ws;           /* max_message: maxPayload */
    ngx_msec_t                   ping_interval;
    ngx_msec_t                   ping_timeout;
} orbit_socketio_conf_t;


/* the content handler's work: NGX_DONE once the socket is open */
ngx_int_t orbit_socketio_handler(ngx_http_request_t *r,
    orbit_socketio_conf_t *conf);


#endif /* _ORBIT_SOCKETIO_H_INCLUDED_ */
