/*
 * OrbitDesk REST: the route table, the request context every handler
 * gets, and the ways out (a JSON body, an error in the seed's shape).
 *
 * A request goes: route -> authenticate -> authorise -> read and parse the
 * body -> handler.  A handler answers at once (returns what
 * orbit_api_send_* returned), or starts async work: orbit_api_query() and
 * orbit_api_offload() hold the request and call back; the callback ends it
 * with orbit_api_finish(ar, rc).
 */

#ifndef _ORBIT_API_H_INCLUDED_
#define _ORBIT_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "core/orbit_core.h"
#include "core/orbit_validate.h"
#include "api/orbit_auth.h"
#include "io/orbit_pg.h"
#include "io/orbit_ws.h"


typedef struct orbit_api_req_s  orbit_api_req_t;

typedef ngx_int_t (*orbit_api_handler_pt)(orbit_api_req_t *ar);

/* a query's result: TUPLES_OK or COMMAND_OK only (errors are answered) */
typedef void (*orbit_api_result_pt)(orbit_api_req_t *ar, PGresult *res);

/* runs in a thread of nginx's pool: no nginx calls, no request memory */
typedef void (*orbit_api_work_pt)(void *ctx);
typedef void (*orbit_api_work_done_pt)(orbit_api_req_t *ar, void *ctx);


struct orbit_api_req_s {
    ngx_http_request_t          *r;
    orbit_route_match_t          match;
    json_t                      *body;         /* parsed JSON, or NULL */
    orbit_principal_t            who;
    orbit_api_result_pt          result;       /* of the running query */
    void                        *data;         /* the handler's state */
    ngx_int_t                    rc;           /* of a helper's answer */

    unsigned                     json_sent:1;  /* our own body went out */
};


/* NGX_OK: the caller (ar->who) may call the route; else answered */
ngx_int_t orbit_auth_check(orbit_api_req_t *ar);

/* the content handler of "orbit_api" */
ngx_int_t orbit_api_handler(ngx_http_request_t *r);

/* the request's context, if an orbit handler took it */
orbit_api_req_t *orbit_api_get(ngx_http_request_t *r);

void orbit_api_hold(orbit_api_req_t *ar);
void orbit_api_finish(orbit_api_req_t *ar, ngx_int_t rc);

ngx_int_t orbit_api_send_json(orbit_api_req_t *ar, ngx_uint_t status,
    u_char *data, size_t len);
/* a body of another type (a webhook's text/plain or TwiML answer) */
ngx_int_t orbit_api_send(orbit_api_req_t *ar, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);
ngx_int_t orbit_api_send_error(orbit_api_req_t *ar, ngx_uint_t status,
    const char *message);

/* json (an object) answered with "name": "value" added to it */
ngx_int_t orbit_api_send_json_with(orbit_api_req_t *ar, ngx_uint_t status,
    u_char *json, size_t len, const char *name, const char *value);

/*
 * Checking helpers return NGX_OK to go on; otherwise they have answered
 * (400 and why) and the handler returns ar->rc.
 */

/* 400 with every message of a failed validation */
ngx_int_t orbit_api_validate(orbit_api_req_t *ar,
    const orbit_v_field_t *fields);

/*
 * The request body as it came, nul-terminated, in the request pool (a
 * body nginx spilled to a file is read back): for ORBIT_RAW_BODY routes.
 */
ngx_int_t orbit_api_raw_body(orbit_api_req_t *ar, ngx_str_t *body);

/* the caller's tenant, nul-terminated; NULL (403 sent) for a superadmin */
const char *orbit_api_tenant(orbit_api_req_t *ar);

/*
 * A keyset cursor "<microseconds>.<uuid>", as the lists' nextCursor gives
 * it, split into its parts; else 400 sent.
 */
ngx_int_t orbit_api_cursor(orbit_api_req_t *ar, const char *cursor,
    const char **us, const char **id);

/* the request header name (any case), or NULL */
ngx_table_elt_t *orbit_api_header_in(ngx_http_request_t *r,
    const char *name);
/* 400 with the messages of errs (a validation of the handler's own) */
ngx_int_t orbit_api_refuse(orbit_api_req_t *ar, const orbit_v_errors_t *errs);

/* a string field of the body, nul-terminated in the request pool */
u_char *orbit_api_body_str(orbit_api_req_t *ar, const char *name);

/* query argument name, URL-decoded and nul-terminated, or NULL */
char *orbit_api_arg(orbit_api_req_t *ar, const char *name);

/* ?name= one of values (or absent: NULL) */
ngx_int_t orbit_api_arg_enum(orbit_api_req_t *ar, const char *name,
    const char *const *values, const char **out);

/* ?limit= (1..max, default 50) and ?cursor= */
ngx_int_t orbit_api_page_args(orbit_api_req_t *ar, const char **limit,
    const char **cursor, ngx_uint_t max);

/* route parameter n, which must be a UUID */
ngx_int_t orbit_api_uuid_param(orbit_api_req_t *ar, ngx_uint_t n,
    const char **out);

/* the client's address as text, or NULL (unix socket) */
const char *orbit_api_client_ip(orbit_api_req_t *ar);

/* nul-terminated copies in pool */
char *orbit_api_strdup(ngx_pool_t *pool, const char *s);
char *orbit_api_strdup_n(ngx_pool_t *pool, const u_char *s, size_t len);

/* route parameter n (":id"), nul-terminated in the request pool */
u_char *orbit_api_param(orbit_api_req_t *ar, ngx_uint_t n);

/*
 * Sends sql with text parameters (copied by libpq when sent) and holds
 * the request; done gets the result.  Failures (PostgreSQL down, timeout,
 * constraint violations, bad input the database refused) are answered
 * here with the matching 4xx/5xx.  Returns NGX_DONE or what to return.
 */
ngx_int_t orbit_api_query(orbit_api_req_t *ar, const char *sql,
    int nparams, const char **values, orbit_api_result_pt done);

/*
 * The answer to a query that failed (res NULL: not completed; else the
 * database's error), for code that runs its own orbit_pg queries.
 */
ngx_int_t orbit_api_query_failed(orbit_api_req_t *ar, orbit_pg_query_t *q,
    PGresult *res);

/*
 * orbit_api_query() with $1 the route's :id (a UUID, else 400), $2 the
 * caller's tenant, and, when nparams is 4, $3 the caller and $4 the
 * client's address.
 */
ngx_int_t orbit_api_query_id(orbit_api_req_t *ar, const char *sql,
    int nparams, orbit_api_result_pt done);

/*
 * The usual done: row 0 is (status int, body json, message text); a NULL
 * body answers an error of that status with that message.
 */
void orbit_api_respond_row(orbit_api_req_t *ar, PGresult *res);

/* runs work(ctx) in nginx's thread pool, then done(ar, ctx) in the loop */
ngx_int_t orbit_api_offload(orbit_api_req_t *ar, orbit_api_work_pt work,
    orbit_api_work_done_pt done, void *ctx, size_t ctx_size);

/* handlers, one file per resource */
ngx_int_t orbit_api_health(orbit_api_req_t *ar);

ngx_int_t orbit_api_auth_register(orbit_api_req_t *ar);
ngx_int_t orbit_api_auth_login(orbit_api_req_t *ar);
ngx_int_t orbit_api_auth_refresh(orbit_api_req_t *ar);
ngx_int_t orbit_api_auth_logout(orbit_api_req_t *ar);
ngx_int_t orbit_api_auth_me(orbit_api_req_t *ar);

ngx_int_t orbit_api_tenants_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_tenants_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_tenants_update(orbit_api_req_t *ar);

ngx_int_t orbit_api_audit_list(orbit_api_req_t *ar);

ngx_int_t orbit_api_users_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_users_create(orbit_api_req_t *ar);
ngx_int_t orbit_api_users_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_users_update(orbit_api_req_t *ar);

ngx_int_t orbit_api_keys_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_keys_create(orbit_api_req_t *ar);
ngx_int_t orbit_api_keys_revoke(orbit_api_req_t *ar);
ngx_int_t orbit_api_keys_delete(orbit_api_req_t *ar);

ngx_int_t orbit_api_contacts_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_create(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_import(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_export(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_update(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_delete(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_tag(orbit_api_req_t *ar);
ngx_int_t orbit_api_contacts_untag(orbit_api_req_t *ar);

ngx_int_t orbit_api_conversations_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_conversations_unread(orbit_api_req_t *ar);
ngx_int_t orbit_api_conversations_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_conversations_update(orbit_api_req_t *ar);
ngx_int_t orbit_api_conversations_read(orbit_api_req_t *ar);
ngx_int_t orbit_api_conversations_messages(orbit_api_req_t *ar);

ngx_int_t orbit_api_messages_send(orbit_api_req_t *ar);
ngx_int_t orbit_api_media_upload(orbit_api_req_t *ar);
ngx_int_t orbit_api_media_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_media_content(orbit_api_req_t *ar);

/* a media type and a file name as they are stored and served (see
 * orbit_api_media.c), in pool */
const char *orbit_media_type(ngx_pool_t *pool, u_char *s, size_t len);
const char *orbit_media_filename(ngx_pool_t *pool, const char *name);

/* a URL a provider fetches a tenant's media by (a signed link on
 * orbit_public_url, or S3's presigned URL): NGX_DECLINED when none */
ngx_int_t orbit_media_link(ngx_pool_t *pool, ngx_str_t *tenant,
    const char *id, time_t ttl, ngx_str_t *url);
ngx_int_t orbit_api_channels_list(orbit_api_req_t *ar);
ngx_int_t orbit_api_channels_create(orbit_api_req_t *ar);
ngx_int_t orbit_api_channels_get(orbit_api_req_t *ar);
ngx_int_t orbit_api_channels_update(orbit_api_req_t *ar);
ngx_int_t orbit_api_channels_delete(orbit_api_req_t *ar);


#endif /* _ORBIT_API_H_INCLUDED_ */
