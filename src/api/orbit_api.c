/*
 * OrbitDesk REST: route, read the body, parse JSON, dispatch, answer.
 */

#include "api/orbit_api.h"
#include "ngx_http_orbit_module.h"


static const orbit_route_t  orbit_api_routes[] = {
    { "GET",  "/api/v1/health",  (void *) orbit_api_health },
};

#define ORBIT_API_NROUTES                                                    \
    (sizeof(orbit_api_routes) / sizeof(orbit_api_routes[0]))


static void orbit_api_body_read(ngx_http_request_t *r);
static ngx_int_t orbit_api_parse_body(orbit_api_req_t *ar);
static ngx_int_t orbit_api_dispatch(orbit_api_req_t *ar);
static ngx_int_t orbit_api_not_found(orbit_api_req_t *ar);
static ngx_int_t orbit_api_bad_method(orbit_api_req_t *ar);
static void orbit_api_cleanup(void *data);


ngx_int_t
orbit_api_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_str_t             method;
    orbit_api_req_t      *ar;
    ngx_pool_cleanup_t   *cln;
    orbit_route_rc_e      found;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(orbit_api_req_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar = cln->data;
    ngx_memzero(ar, sizeof(orbit_api_req_t));
    ar->r = r;

    cln->handler = orbit_api_cleanup;

    ngx_http_set_ctx(r, ar, ngx_http_orbit_module);

    /* HEAD is GET without the body: nginx drops the body for us */

    if (r->method == NGX_HTTP_HEAD) {
        ngx_str_set(&method, "GET");

    } else {
        method = r->method_name;
    }

    found = orbit_route_find(orbit_api_routes, ORBIT_API_NROUTES,
                             (char *) method.data, method.len,
                             (char *) r->uri.data, r->uri.len, &ar->match);

    if (found == ORBIT_ROUTE_NOT_FOUND) {
        return orbit_api_not_found(ar);
    }

    if (found == ORBIT_ROUTE_BAD_METHOD) {
        return orbit_api_bad_method(ar);
    }

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return orbit_api_dispatch(ar);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, orbit_api_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


orbit_api_req_t *
orbit_api_get(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r, ngx_http_orbit_module);
}


void
orbit_api_hold(orbit_api_req_t *ar)
{
    ar->r->main->count++;
}


void
orbit_api_finish(orbit_api_req_t *ar, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = ar->r->connection;

    ngx_http_finalize_request(ar->r, rc);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
orbit_api_send_json(orbit_api_req_t *ar, ngx_uint_t status, u_char *data,
    size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = ar->r;
    ar->json_sent = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = len ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
orbit_api_send_error(orbit_api_req_t *ar, ngx_uint_t status,
    const char *message)
{
    u_char       *buf;
    size_t        len;
    const char   *msgs[1];

    msgs[0] = message;

    len = orbit_error_json(NULL, 0, (int) status, msgs, message ? 1 : 0);

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    len = orbit_error_json((char *) buf, len, (int) status, msgs,
                           message ? 1 : 0);

    return orbit_api_send_json(ar, status, buf, len);
}


static void
orbit_api_body_read(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    orbit_api_req_t  *ar;

    ar = orbit_api_get(r);

    rc = orbit_api_parse_body(ar);

    if (rc == NGX_OK) {
        rc = orbit_api_dispatch(ar);
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
orbit_api_parse_body(orbit_api_req_t *ar)
{
    u_char              *data, *p;
    size_t               len;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    json_error_t         err;
    ngx_http_request_t  *r;
    u_char               msg[JSON_ERROR_TEXT_LENGTH + 64];

    r = ar->r;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    ar->body = json_loadb((char *) data, p - data, JSON_REJECT_DUPLICATES,
                          &err);

    if (ar->body == NULL) {
        ngx_snprintf(msg, sizeof(msg), "Invalid JSON at position %d: %s%Z",
                     err.position, err.text);
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST, (char *) msg);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_api_dispatch(orbit_api_req_t *ar)
{
    orbit_api_handler_pt  handler;

    handler = (orbit_api_handler_pt) ar->match.route->handler;

    return handler(ar);
}


static ngx_int_t
orbit_api_not_found(orbit_api_req_t *ar)
{
    u_char              *msg;
    ngx_http_request_t  *r;

    r = ar->r;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NestJS words it so: "Cannot GET /api/v1/nope" */

    msg = ngx_pnalloc(r->pool, sizeof("Cannot  ") + r->method_name.len
                               + r->uri.len);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(msg, "Cannot %V %V%Z", &r->method_name, &r->uri);

    return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND, (char *) msg);
}


static ngx_int_t
orbit_api_bad_method(orbit_api_req_t *ar)
{
    u_char              *allow;
    size_t               len;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ar->r;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow = ngx_pnalloc(r->pool, 64);
    if (allow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = orbit_route_allow(orbit_api_routes, ORBIT_API_NROUTES,
                            (char *) r->uri.data, r->uri.len,
                            (char *) allow, 64);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = allow;
    h->value.len = len;

    return orbit_api_send_error(ar, NGX_HTTP_NOT_ALLOWED, NULL);
}


static void
orbit_api_cleanup(void *data)
{
    orbit_api_req_t  *ar = data;

    if (ar->body) {
        json_decref(ar->body);
        ar->body = NULL;
    }
}
