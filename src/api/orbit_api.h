/*
 * OrbitDesk REST: the route table, the request context every handler gets,
 * and the one way out (a JSON body or an error in the seed's shape).
 *
 * A handler answers at once (returns what orbit_api_send_* returned), or
 * starts async work: it calls orbit_api_hold(ar), returns NGX_DONE, and
 * later ends the request with orbit_api_finish(ar, rc).
 */

#ifndef _ORBIT_API_H_INCLUDED_
#define _ORBIT_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "core/orbit_core.h"


typedef struct orbit_api_req_s  orbit_api_req_t;

typedef ngx_int_t (*orbit_api_handler_pt)(orbit_api_req_t *ar);


struct orbit_api_req_s {
    ngx_http_request_t          *r;
    orbit_route_match_t          match;
    json_t                      *body;         /* parsed JSON, or NULL */

    unsigned                     json_sent:1;  /* our own body went out */
};


/* the content handler of "orbit_api" */
ngx_int_t orbit_api_handler(ngx_http_request_t *r);

/* the request's context, if an orbit handler took it */
orbit_api_req_t *orbit_api_get(ngx_http_request_t *r);

void orbit_api_hold(orbit_api_req_t *ar);
void orbit_api_finish(orbit_api_req_t *ar, ngx_int_t rc);

ngx_int_t orbit_api_send_json(orbit_api_req_t *ar, ngx_uint_t status,
    u_char *data, size_t len);
ngx_int_t orbit_api_send_error(orbit_api_req_t *ar, ngx_uint_t status,
    const char *message);

/* handlers, one file per resource */
ngx_int_t orbit_api_health(orbit_api_req_t *ar);


#endif /* _ORBIT_API_H_INCLUDED_ */
