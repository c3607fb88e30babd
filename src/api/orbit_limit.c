/*
 * OrbitDesk: the API's rate limiter (see orbit_limit.h for the directives
 * and the calls).
 *
 * The algorithm is a fixed one-minute window per key.  A key's window
 * opens with its first request and lasts 60 s; it admits "limit" requests
 * and refuses the rest with the time left until it closes; the next
 * request after that opens a new window.  Why not a sliding window:
 *
 *   - the headers stay honest: X-RateLimit-Remaining counts down by one per
 *     request and never creeps back up mid-window, and Retry-After is the
 *     exact moment the next request is admitted (1..60 s), so a client
 *     that waits as told is never refused again;
 *   - it is what the spec's seed (@nestjs/throttler) does, so integrations
 *     written against it see the same numbers: the 101st request within a
 *     minute gets 429;
 *   - one timestamp and one counter per key.
 *
 * The price is the boundary: a client can spend a whole window at its end
 * and the next one at its start, 2 x limit in a little over an instant;
 * any 60 s still overlaps at most two windows, so never more than 2 x limit
 * in any 60 s.  Windows open per key, not on the wall clock's minute, so
 * keys do not all refill at the same moment.
 *
 * Memory: one key costs an ngx_rbtree_node_t up to its color (32 bytes),
 * an orbit_limit_node_t up to its data (32 bytes) and the key itself: 64 +
 * len bytes, which the slab rounds up to a power of two: 128 bytes for any
 * key up to 64 bytes ("ip:" + an IPv6 address, "k:" + a UUID), 256 up to
 * 192.  Add about 0.6% of page bookkeeping: a 1m zone holds about 8,000
 * keys, the 10m of the example about 80,000.  A key idle for a minute is
 * worth nothing (its window has ended) and is freed on the way; when the
 * zone is full anyway, the least recently used keys are evicted (they start
 * over with a full window), and when even that frees no room the request
 * goes through unlimited, with a [warn] at most once a second per worker.
 *
 * All shared state is touched under the zone's slab mutex only, once per
 * request: a tree lookup and a few stores, or an allocation in the slab.
 */


#include "api/orbit_limit.h"


#define ORBIT_LIMIT_WINDOW      60000      /* ms */
#define ORBIT_LIMIT_KEY_MAX     65535      /* orbit_limit_node_t.len */
#define ORBIT_LIMIT_RATE_MAX    1000000000 /* per minute: fits a uint32_t */

/* entries evicted by force, at most, to make room for one new key */
#define ORBIT_LIMIT_EVICT_MAX   8


/* A key's state, laid over an ngx_rbtree_node_t from its color on. */
typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;          /* of data */
    uint32_t                     count;        /* requests admitted */
    ngx_queue_t                  queue;        /* LRU: most recent first */
    ngx_msec_t                   start;        /* the window opened, ms */
    u_char                       data[1];      /* the key */
} orbit_limit_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
} orbit_limit_shctx_t;


/* per configuration cycle, in each process: the zone's shm_zone->data */
typedef struct {
    orbit_limit_shctx_t         *sh;
    ngx_slab_pool_t             *shpool;
    ngx_uint_t                   limit;        /* orbit_limit_zone rate= */
    time_t                       full_logged;  /* this process's last warn */
} orbit_limit_ctx_t;


static ngx_int_t orbit_limit_lookup(orbit_limit_ctx_t *ctx, uint32_t hash,
    ngx_str_t *key, ngx_msec_t now, ngx_uint_t limit,
    orbit_limit_result_t *res);
static ngx_int_t orbit_limit_count(orbit_limit_node_t *ln, ngx_msec_t now,
    ngx_uint_t limit, orbit_limit_result_t *res);
static ngx_msec_int_t orbit_limit_elapsed(orbit_limit_node_t *ln,
    ngx_msec_t now);
static ngx_rbtree_node_t *orbit_limit_alloc(orbit_limit_ctx_t *ctx,
    size_t size, ngx_msec_t now);
static ngx_uint_t orbit_limit_evict(orbit_limit_ctx_t *ctx, ngx_msec_t now,
    ngx_uint_t force);
static void orbit_limit_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t orbit_limit_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t value);
static ngx_int_t orbit_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t orbit_limit_parse_rate(ngx_str_t *value);


/*
 * The tag of our zones in ngx_shared_memory_add(): the same whichever
 * module declares them, and the same address in the next cycle (the
 * module's .so stays mapped across a reload), so a reload adopts them.
 */
static ngx_uint_t  orbit_limit_zone_tag;


ngx_int_t
orbit_limit_check(ngx_http_request_t *r, orbit_limit_conf_t *lcf,
    ngx_str_t *key, orbit_limit_result_t *res)
{
    uint32_t            hash;
    ngx_int_t           rc;
    ngx_uint_t          limit;
    ngx_time_t         *tp;
    ngx_msec_t          now;
    orbit_limit_ctx_t  *ctx;

    if (lcf == NULL || lcf->shm_zone == NULL || key->len == 0) {
        return NGX_DECLINED;
    }

    ctx = lcf->shm_zone->data;

    if (key->len > ORBIT_LIMIT_KEY_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "orbit_limit: a key of %uz bytes is too long for "
                      "zone \"%V\", not limited",
                      key->len, &lcf->shm_zone->shm.name);
        return NGX_DECLINED;
    }

    limit = lcf->limit ? lcf->limit : ctx->limit;

    hash = ngx_crc32_short(key->data, key->len);

    /* the cached time of this event loop iteration: no syscall */

    tp = ngx_timeofday();
    now = (ngx_msec_t) tp->sec * 1000 + tp->msec;

    res->limit = limit;
    res->remaining = limit - 1;
    res->retry_after = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    rc = orbit_limit_lookup(ctx, hash, key, now, limit, res);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "orbit_limit \"%V\": %i, %ui of %ui left",
                   key, rc, res->remaining, limit);

    switch (rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "orbit_limit: \"%V\" is over %ui requests a minute "
                      "in zone \"%V\", retry after %T s",
                      key, limit, &lcf->shm_zone->shm.name,
                      res->retry_after);
        return NGX_BUSY;

    default: /* NGX_ERROR: no room for the key even after evicting */

        if (ctx->full_logged != ngx_time()) {
            ctx->full_logged = ngx_time();

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "orbit_limit: zone \"%V\" is full, a request "
                          "went through unlimited; make it larger",
                          &lcf->shm_zone->shm.name);
        }

        /* res: as for the first request of a window */

        return NGX_OK;
    }
}


ngx_int_t
orbit_limit_headers(ngx_http_request_t *r, orbit_limit_result_t *res)
{
    static ngx_str_t  limit = ngx_string("X-RateLimit-Limit");
    static ngx_str_t  remaining = ngx_string("X-RateLimit-Remaining");
    static ngx_str_t  retry_after = ngx_string("Retry-After");

    if (orbit_limit_header(r, &limit, res->limit) != NGX_OK
        || orbit_limit_header(r, &remaining, res->remaining) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (res->retry_after > 0) {
        return orbit_limit_header(r, &retry_after,
                                  (ngx_uint_t) res->retry_after);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_limit_header(ngx_http_request_t *r, ngx_str_t *name, ngx_uint_t value)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%ui", value) - p;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/* called with the zone locked */

static ngx_int_t
orbit_limit_lookup(orbit_limit_ctx_t *ctx, uint32_t hash, ngx_str_t *key,
    ngx_msec_t now, ngx_uint_t limit, orbit_limit_result_t *res)
{
    size_t               size;
    ngx_int_t            rc;
    ngx_rbtree_node_t   *node, *sentinel;
    orbit_limit_node_t  *ln;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        ln = (orbit_limit_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, ln->data, key->len, (size_t) ln->len);

        if (rc == 0) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&ctx->sh->queue, &ln->queue);

            return orbit_limit_count(ln, now, limit, res);
        }

        node = (rc < 0) ? node->left : node->right;
    }

    /* a new key: never seen, or freed since */

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(orbit_limit_node_t, data)
           + key->len;

    node = orbit_limit_alloc(ctx, size, now);
    if (node == NULL) {
        return NGX_ERROR;
    }

    node->key = hash;

    ln = (orbit_limit_node_t *) &node->color;

    ln->len = (u_short) key->len;
    ln->count = 0;
    ln->start = now;

    ngx_memcpy(ln->data, key->data, key->len);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->queue, &ln->queue);

    return orbit_limit_count(ln, now, limit, res);
}


static ngx_int_t
orbit_limit_count(orbit_limit_node_t *ln, ngx_msec_t now, ngx_uint_t limit,
    orbit_limit_result_t *res)
{
    ngx_msec_int_t  ms;

    ms = orbit_limit_elapsed(ln, now);

    /* the window has ended: this request opens the next one */

    if (ms >= ORBIT_LIMIT_WINDOW) {
        ln->start = now;
        ln->count = 0;
        ms = 0;
    }

    res->limit = limit;

    if (ln->count >= limit) {

        /* refused requests are not counted: waiting is enough to recover */

        res->remaining = 0;
        res->retry_after = (ORBIT_LIMIT_WINDOW - ms + 999) / 1000;

        return NGX_BUSY;
    }

    ln->count++;

    res->remaining = limit - ln->count;
    res->retry_after = 0;

    return NGX_OK;
}


/*
 * How long the key's window has been open, in ms.  Each worker reads the
 * time cached at the start of its event loop iteration, so another worker
 * may have opened the window a few milliseconds in this one's future: that
 * counts as just opened (treating it as a clock stepped back would reset
 * the count, admitting more than the limit).  A clock stepped back by more
 * than a window ends the window, rather than holding the key until the
 * clock catches up.
 */

static ngx_msec_int_t
orbit_limit_elapsed(orbit_limit_node_t *ln, ngx_msec_t now)
{
    ngx_msec_int_t  ms;

    ms = (ngx_msec_int_t) (now - ln->start);

    if (ms >= 0) {
        return ms;
    }

    return (ms > -ORBIT_LIMIT_WINDOW) ? 0 : ORBIT_LIMIT_WINDOW;
}


/*
 * Room for a new key.  Two ended windows at the LRU end are freed on every
 * new key, so that idle keys leave without a timer; when the slab is full,
 * live keys are evicted from the LRU end, one at a time until the
 * allocation fits: a new key of a larger slab class than the evicted ones
 * may need several, and the cap keeps the lock hold short.
 */

static ngx_rbtree_node_t *
orbit_limit_alloc(orbit_limit_ctx_t *ctx, size_t size, ngx_msec_t now)
{
    ngx_uint_t          n;
    ngx_rbtree_node_t  *node;

    (void) orbit_limit_evict(ctx, now, 0);
    (void) orbit_limit_evict(ctx, now, 0);

    for (n = 0; /* void */ ; n++) {

        node = ngx_slab_alloc_locked(ctx->shpool, size);

        if (node != NULL || n == ORBIT_LIMIT_EVICT_MAX) {
            return node;
        }

        if (!orbit_limit_evict(ctx, now, 1)) {
            return NULL;
        }
    }
}


/* Frees the least recently used key if its window has ended, or if force. */

static ngx_uint_t
orbit_limit_evict(orbit_limit_ctx_t *ctx, ngx_msec_t now, ngx_uint_t force)
{
    ngx_queue_t         *q;
    ngx_rbtree_node_t   *node;
    orbit_limit_node_t  *ln;

    if (ngx_queue_empty(&ctx->sh->queue)) {
        return 0;
    }

    q = ngx_queue_last(&ctx->sh->queue);
    ln = ngx_queue_data(q, orbit_limit_node_t, queue);

    if (!force && orbit_limit_elapsed(ln, now) < ORBIT_LIMIT_WINDOW) {
        return 0;
    }

    ngx_queue_remove(q);

    node = (ngx_rbtree_node_t *)
               ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

    ngx_rbtree_delete(&ctx->sh->rbtree, node);
    ngx_slab_free_locked(ctx->shpool, node);

    return 1;
}


/* ordered by the key's hash, then by its bytes, as the lookup walks it */

static void
orbit_limit_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_int_t            rc;
    ngx_rbtree_node_t  **p;
    orbit_limit_node_t  *ln, *lnt;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            ln = (orbit_limit_node_t *) &node->color;
            lnt = (orbit_limit_node_t *) &temp->color;

            rc = ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len);

            p = (rc < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
orbit_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    orbit_limit_ctx_t  *octx = data;

    size_t              len;
    orbit_limit_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx != NULL) {

        /*
         * A reload kept the zone (same name, size and tag): the counts
         * live on.  The rate is the new configuration's.
         */

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(orbit_limit_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    orbit_limit_rbtree_insert_value);

    ngx_queue_init(&ctx->sh->queue);

    len = sizeof(" in orbit_limit zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in orbit_limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    /*
     * A full zone is expected under a flood of keys and handled by
     * eviction: the slab's own [crit] per failed allocation would only
     * alarm.  orbit_limit_check() warns when eviction is not enough.
     */

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


char *
orbit_limit_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t             size;
    ngx_int_t           limit;
    ngx_str_t          *value;
    ngx_shm_zone_t     *shm_zone;
    orbit_limit_ctx_t  *ctx;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs a zone name", &cmd->name);
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: %V, at least %uzk",
                           &value[1], &value[2], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    limit = ORBIT_LIMIT_DEFAULT_RATE;

    if (cf->args->nelts == 4) {
        limit = orbit_limit_parse_rate(&value[3]);

        if (limit == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "rate=Nr/m or rate=Nr/s", &value[3]);
            return NGX_CONF_ERROR;
        }
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(orbit_limit_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->limit = limit;

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &orbit_limit_zone_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\" is already declared",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = orbit_limit_init_zone;
    shm_zone->data = ctx;

    return NGX_CONF_OK;
}


char *
orbit_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_int_t            limit;
    ngx_str_t           *value;
    ngx_shm_zone_t      *shm_zone;
    orbit_limit_conf_t  *lcf;

    lcf = (orbit_limit_conf_t *) ((u_char *) conf + cmd->offset);

    if (lcf->set) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {

        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" after \"off\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }

        lcf->set = 1;

        return NGX_CONF_OK;
    }

    limit = 0;

    if (cf->args->nelts == 3) {
        limit = orbit_limit_parse_rate(&value[2]);

        if (limit == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "rate=Nr/m or rate=Nr/s", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], 0, &orbit_limit_zone_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown rate limit zone \"%V\" (declare it "
                           "first, at http level)", &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->shm_zone = shm_zone;
    lcf->limit = limit;
    lcf->set = 1;

    return NGX_CONF_OK;
}


void
orbit_limit_merge_conf(orbit_limit_conf_t *prev, orbit_limit_conf_t *conf)
{
    /* the directive is inherited as a whole: zone, rate, or "off" */

    if (!conf->set) {
        *conf = *prev;
    }
}


/* "rate=Nr/m" or "rate=Nr/s": requests per minute, or NGX_ERROR */

static ngx_int_t
orbit_limit_parse_rate(ngx_str_t *value)
{
    u_char     *p;
    size_t      len;
    ngx_int_t   rate, scale;

    if (value->len <= sizeof("rate=r/m") - 1
        || ngx_strncmp(value->data, "rate=", 5) != 0)
    {
        return NGX_ERROR;
    }

    p = value->data + value->len - 3;

    if (ngx_strncmp(p, "r/m", 3) == 0) {
        scale = 1;

    } else if (ngx_strncmp(p, "r/s", 3) == 0) {
        scale = 60;

    } else {
        return NGX_ERROR;
    }

    len = value->len - 5 - 3;

    rate = ngx_atoi(value->data + 5, len);

    if (rate <= 0 || rate > ORBIT_LIMIT_RATE_MAX / scale) {
        return NGX_ERROR;
    }

    return rate * scale;
}
