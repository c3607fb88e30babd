/*
 * OrbitDesk: the API's rate limiter.  A fixed one-minute window per key,
 * counted in a shared-memory zone, so every worker of a node sees the same
 * counts (per node; a cluster-wide limit is Redis's job).
 *
 *   http:                 orbit_limit_zone NAME SIZE [rate=N r/m | r/s];
 *   http, server, location:
 *                         orbit_limit NAME [rate=N r/m | r/s];
 *                         orbit_limit off;
 *
 * orbit_limit_zone declares a zone of SIZE bytes (at least 32k) and its
 * default rate (100r/m when not given).  orbit_limit picks the zone that
 * applies to a level, and optionally another rate for it (a tenant's
 * server block raising its limit).  It is inherited as a whole, like any
 * nginx directive: a location that names a zone without rate= gets the
 * zone's rate, not the rate of an enclosing block.  The window is always
 * one minute; N r/s is a budget of 60 x N per minute.  Keys are counted
 * per zone: the same key under two rates shares one count.
 *
 * Wiring into a module (the module owns the directives' names):
 *
 *     typedef struct {
 *         ...
 *         orbit_limit_conf_t   limit;
 *     } my_loc_conf_t;            (allocated zeroed: ngx_pcalloc)
 *
 *     { ngx_string("orbit_limit_zone"),
 *       ORBIT_LIMIT_ZONE_DIRECTIVE_TYPE,
 *       orbit_limit_zone_directive,
 *       0,
 *       0,
 *       NULL },
 *
 *     { ngx_string("orbit_limit"),
 *       ORBIT_LIMIT_DIRECTIVE_TYPE,
 *       orbit_limit_directive,
 *       NGX_HTTP_LOC_CONF_OFFSET,
 *       offsetof(my_loc_conf_t, limit),
 *       NULL },
 *
 *     merge_loc_conf:  orbit_limit_merge_conf(&prev->limit, &conf->limit);
 *
 * On the request path:
 *
 *     rc = orbit_limit_check(r, &lcf->limit, &key, &res);
 *     NGX_OK:       allowed; orbit_limit_headers(r, &res), go on
 *     NGX_BUSY:     over the limit; orbit_limit_headers(r, &res), answer 429
 *     NGX_DECLINED: no orbit_limit here (or "off", or an empty key)
 *
 * The check takes the zone's mutex once, for a tree lookup and a few
 * stores: no allocation outside the slab, no syscall, no I/O.
 */

#ifndef _ORBIT_LIMIT_H_INCLUDED_
#define _ORBIT_LIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define ORBIT_LIMIT_ZONE_DIRECTIVE_TYPE                                      \
    (NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23)

#define ORBIT_LIMIT_DIRECTIVE_TYPE                                           \
    (NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12)

/* the spec's default: 100 requests per minute */
#define ORBIT_LIMIT_DEFAULT_RATE  100


/*
 * One level's "orbit_limit".  All zero (ngx_pcalloc) is "not set here":
 * orbit_limit_merge_conf() then takes the enclosing level's.
 */
typedef struct {
    ngx_shm_zone_t              *shm_zone;     /* NULL: "off" or never set */
    ngx_uint_t                   limit;        /* per minute; 0: the zone's */
    unsigned                     set:1;
} orbit_limit_conf_t;


typedef struct {
    ngx_uint_t                   limit;        /* X-RateLimit-Limit */
    ngx_uint_t                   remaining;    /* X-RateLimit-Remaining */
    time_t                       retry_after;  /* seconds; 0 when allowed */
} orbit_limit_result_t;


/* "orbit_limit_zone NAME SIZE [rate=]": conf is not used */
char *orbit_limit_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* "orbit_limit NAME [rate=]" | "orbit_limit off": an orbit_limit_conf_t
 * at cmd->offset in conf */
char *orbit_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

void orbit_limit_merge_conf(orbit_limit_conf_t *prev,
    orbit_limit_conf_t *conf);

/*
 * Counts one request of key (any bytes, 1..65535 of them; the API passes
 * "k:<key id>" or "ip:<address>") against lcf's zone and fills res.
 * NGX_OK: allowed (also when the zone is full: let through, [warn]ed);
 * NGX_BUSY: over the limit, not counted, res->retry_after >= 1;
 * NGX_DECLINED: nothing to limit here, res untouched.
 */
ngx_int_t orbit_limit_check(ngx_http_request_t *r, orbit_limit_conf_t *lcf,
    ngx_str_t *key, orbit_limit_result_t *res);

/*
 * Adds X-RateLimit-Limit and X-RateLimit-Remaining to r's response, and
 * Retry-After when res->retry_after is set.  NGX_OK or NGX_ERROR (no
 * memory).  Call it before the header is sent.
 */
ngx_int_t orbit_limit_headers(ngx_http_request_t *r,
    orbit_limit_result_t *res);


#endif /* _ORBIT_LIMIT_H_INCLUDED_ */
