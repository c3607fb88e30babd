/*
 * OrbitDesk: errors nginx itself answers in an "orbit_api" location (413
 * for a body over client_max_body_size, 408, 500 when a handler fails...)
 * go out in the API's JSON error shape instead of nginx's HTML page, so a
 * client never has to parse two kinds of error.
 *
 * A module of its own (for its own ctx slot) in the orbit library; being
 * dynamic it is set up after the static filters, so it runs before the
 * ones that serialise the response.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"
#include "api/orbit_api.h"


typedef struct {
    ngx_str_t                    body;
    unsigned                     sent:1;
} ngx_http_orbit_error_ctx_t;


static ngx_int_t ngx_http_orbit_error_filter_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_orbit_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_orbit_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_module_t  ngx_http_orbit_error_filter_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_orbit_error_filter_init,      /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_error_filter_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_error_filter_module_ctx, /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_orbit_error_header_filter(ngx_http_request_t *r)
{
    size_t                       len;
    ngx_uint_t                   status;
    orbit_api_req_t             *ar;
    ngx_http_orbit_loc_conf_t   *olcf;
    ngx_http_orbit_error_ctx_t  *ctx;

    status = r->headers_out.status;

    if (status < NGX_HTTP_BAD_REQUEST || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    olcf = ngx_http_get_module_loc_conf(r, ngx_http_orbit_module);

    if (olcf == NULL || !olcf->api) {
        return ngx_http_next_header_filter(r);
    }

    ar = orbit_api_get(r);

    if (ar && ar->json_sent) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_orbit_error_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    len = orbit_error_json(NULL, 0, (int) status, NULL, 0, 0);

    ctx->body.data = ngx_pnalloc(r->pool, len);
    if (ctx->body.data == NULL) {
        return NGX_ERROR;
    }

    ctx->body.len = orbit_error_json((char *) ctx->body.data, len,
                                     (int) status, NULL, 0, 0);

    ngx_http_set_ctx(r, ctx, ngx_http_orbit_error_filter_module);

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    r->headers_out.content_length_n = ctx->body.len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_orbit_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                   *b;
    ngx_chain_t                  out;
    ngx_http_orbit_error_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_orbit_error_filter_module);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's own page is dropped: the JSON body goes out instead */

    if (ctx->sent) {
        return NGX_OK;
    }

    ctx->sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->body.data;
    b->last = ctx->body.data + ctx->body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static ngx_int_t
ngx_http_orbit_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_orbit_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_orbit_error_body_filter;

    return NGX_OK;
}
