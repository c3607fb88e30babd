/*
 * OrbitDesk: outbound HTTP through libcurl's multi-socket interface, driven
 * by nginx events and one nginx timer per worker.  Many transfers run at
 * once per worker; each has its own timeout and a callback.
 *
 * Mail transfers go the same way, opted into per request (protocols):
 *   smtp://, smtps://  mail_from and mail_rcpt set: MAIL FROM, RCPT TO,
 *                      and body uploaded as the message (DATA)
 *   imap://, imaps://  curl's URL semantics (";UID=n" fetches a message
 *                      into response), or method as a custom command
 *                      ("UID SEARCH ...": its untagged lines in response)
 * Plain smtp:// and imap:// upgrade with STARTTLS when the server offers
 * it.  The server's reply lines (greeting, each command's answer) are kept
 * in reply; status is the last reply code when the transfer succeeded.
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

    /* in, mail: NULL protocols allow "http,https" only */
    const char                  *protocols;    /* "smtp,smtps" */
    ngx_str_t                    username;
    ngx_str_t                    password;
    ngx_str_t                    mail_from;    /* SMTP: body is sent */
    ngx_array_t                 *mail_rcpt;    /* SMTP: of ngx_str_t */
    unsigned                     fresh:1;      /* a connection of its own,
                                                  closed after */

    /*
     * Connect only to public addresses (a URL someone else named: media
     * downloads): loopback, private, link-local, multicast and unspecified
     * ones are refused before any connect, unless in allow (of
     * ngx_cidr_t).
     */
    unsigned                     public_only:1;
    ngx_array_t                 *allow;

    /* out: status 0 means no HTTP response (error says why) */
    ngx_uint_t                   status;
    ngx_str_t                    response;     /* body, in req's pool */
    ngx_array_t                 *response_headers; /* of ngx_table_elt_t */
    ngx_str_t                    error;
    ngx_str_t                    reply;        /* mail: "line\r\n"... */
    int                          result;       /* libcurl's CURLcode */
    unsigned                     timedout:1;
    unsigned                     too_large:1;  /* over max_response */
    unsigned                     refused:1;    /* not a public address */

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
