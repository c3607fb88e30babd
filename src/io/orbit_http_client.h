/*
 * OrbitDesk: outbound HTTP through libcurl's multi-socket interface, driven
 * by nginx events and one nginx timer per worker.  Many transfers run at
 * once per worker; each has its own timeout and a callback.
 */

#ifndef _ORBIT_HTTP_CLIENT_H_INCLUDED_
#define _ORBIT_HTTP_CLIENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


typedef struct orbit_http_client_s  orbit_http_client_t;
typedef struct orbit_http_req_s     orbit_http_req_t;

/* Called exactly once per accepted request, never from inside send. */
typedef void (*orbit_http_done_pt)(orbit_http_req_t *req);


struct orbit_http_req_s {
    /* in */
    ngx_str_t                    method;       /* "GET" when empty */
    ngx_str_t                    url;
    ngx_array_t                 *headers;      /* of ngx_str_t "Name: v" */
    ngx_str_t                    body;
    ngx_msec_t                   timeout;      /* whole transfer */
    size_t                       max_response; /* 0: 8 MiB */
    orbit_http_done_pt           handler;
    void                        *data;

    /* out: status 0 means no HTTP response (error says why) */
    ngx_uint_t                   status;
    ngx_str_t                    response;     /* body, in req's pool */
    ngx_array_t                 *response_headers; /* of ngx_table_elt_t */
    ngx_str_t                    error;
    unsigned                     timedout:1;

    /* private */
    void                        *easy;
    ngx_pool_t                  *pool;
    orbit_http_client_t         *client;
};


orbit_http_client_t *orbit_http_client_create(ngx_cycle_t *cycle);
void orbit_http_client_destroy(orbit_http_client_t *hc);

/* req lives in pool; destroying the pool cancels the transfer. */
orbit_http_req_t *orbit_http_req_create(ngx_pool_t *pool);
ngx_int_t orbit_http_req_header(orbit_http_req_t *req, ngx_str_t *line);

/* NGX_OK: accepted; NGX_ERROR: could not start (req->error set). */
ngx_int_t orbit_http_send(orbit_http_client_t *hc, orbit_http_req_t *req);

/* No handler call after this; also run by req's pool cleanup. */
void orbit_http_cancel(orbit_http_req_t *req);


#endif /* _ORBIT_HTTP_CLIENT_H_INCLUDED_ */
