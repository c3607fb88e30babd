/*
 * OrbitDesk real time: the ASP.NET Core SignalR JSON hub protocol (version
 * 1, the WebSockets transport) at "orbit_signalr" locations, the
 * orchestrator's hub (/hubs/orchestrator).
 */

#ifndef _ORBIT_SIGNALR_H_INCLUDED_
#define _ORBIT_SIGNALR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "io/orbit_ws.h"


typedef struct {
    orbit_ws_conf_t              ws;           /* max_message: a record */
    ngx_msec_t                   keepalive;    /* our {"type":6} */
    ngx_msec_t                   client_timeout;
} orbit_signalr_conf_t;


/*
 * The content handler's work: POST <location>/negotiate answers the
 * negotiation; GET <location> upgrades (NGX_DONE once the socket is open).
 */
ngx_int_t orbit_signalr_handler(ngx_http_request_t *r,
    orbit_signalr_conf_t *conf);


#endif /* _ORBIT_SIGNALR_H_INCLUDED_ */
