/*
 * OrbitDesk: API keys on the request path (see orbit_apikey_cache.h): the
 * shared-memory cache, its filling from PostgreSQL, revocations, and the
 * lastUsedAt writer.
 *
 * The cache.  An rbtree keyed by the key's SHA-256 (its first bytes as the
 * tree key, all 32 compared), with an LRU queue, in a slab zone shared by
 * the workers, like limit_req's.  An entry is 128 bytes, one slab chunk of
 * that class: the rbtree node up to its color (32 bytes on 64-bit), state,
 * scopes (one byte: the eight spec scopes), the minute lastUsedAt was last
 * written, the LRU links, the entry's end of life and the key's expiry
 * (seconds), the hash, the key id and the tenant id (UUIDs as 16 bytes).
 * With the slab's page bookkeeping a 1m zone holds about 7,500 keys.  When
 * the zone is full the least recently used entries are evicted: they are
 * looked up again when next used, nothing is lost.
 *
 * Lifetimes.  A valid key is trusted for 30 s (ORBIT_APIKEY_TTL): the bound
 * on what a node that missed a revocation message believes, and on how
 * long a suspended tenant's keys keep working.  An unknown key, or a key
 * of a tenant that is not active, is remembered as bad for 5 s: a flood of
 * one bad key costs one query per 5 s, not one per request (a flood of
 * ever new bad keys costs one indexed lookup each).  A revoked, deleted or
 * expired key is remembered as revoked for 60 s and, as such, is never
 * overwritten by a lookup: a lookup that read the key before its revocation
 * committed and answers after the revocation reached this node cannot put
 * the key back.  60 s outlasts any query (orbit_postgres timeout=, 10 s by
 * default); after that the database says "revoked" itself.
 *
 * lastUsedAt.  A request must not wait for it, and a busy key must not
 * turn every request into a write.  So: the cache notes, per key, the time
 * lastUsedAt was last brought up to date (shared by the workers: once a
 * minute per key per node), and the worker queues the key id; a timer
 * writes the queue every second in one UPDATE ... WHERE id = ANY($1), in
 * its own pool, tied to no request.  Why not one fire-and-forget query per
 * key: under many keys it is one statement a second per worker instead of
 * one per key, and nothing is held by the request.  What is lost: the last
 * second's marks when a worker exits, and precision below a minute, which
 * the spec's "last used" does not need.
 */

#include "api/orbit_apikey_cache.h"
#include "ngx_http_orbit_module.h"


#define ORBIT_APIKEY_TTL          30       /* s, a valid key */
#define ORBIT_APIKEY_BAD_TTL      5        /* s, an unknown key */
#define ORBIT_APIKEY_REVOKED_TTL  60       /* s, a revoked key */
#define ORBIT_APIKEY_USED_EVERY   60       /* s, lastUsedAt granularity */

/* entries evicted by force, at most, to make room for one new entry */
#define ORBIT_APIKEY_EVICT_MAX    8

#define ORBIT_APIKEY_TOUCH_MAX    64       /* key ids per UPDATE */
#define ORBIT_APIKEY_TOUCH_DELAY  1000     /* ms */

#define ORBIT_UUID_LEN            36


enum {
    ORBIT_APIKEY_INVALID = 0,              /* unknown, or tenant inactive */
    ORBIT_APIKEY_VALID,
    ORBIT_APIKEY_REVOKED                   /* revoked, deleted, expired */
};


/* An entry, laid over an ngx_rbtree_node_t from its color on. */
typedef struct {
    u_char                       color;
    u_char                       state;
    u_char                       scopes;       /* ORBIT_SCOPE_ bits >> 16 */
    u_char                       dummy;
    uint32_t                     used;         /* lastUsedAt written, s */
    ngx_queue_t                  queue;        /* LRU: most recent first */
    uint32_t                     until;        /* the entry's end, s */
    uint32_t                     expires;      /* the key's; 0: never */
    u_char                       hash[32];
    u_char                       key_id[16];
    u_char                       tenant_id[16];
} orbit_apikey_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
} orbit_apikey_shctx_t;


/* per configuration cycle, in each process: the zone's shm_zone->data */
typedef struct {
    orbit_apikey_shctx_t        *sh;
    ngx_slab_pool_t             *shpool;
} orbit_apikey_ctx_t;


/* what a request takes from an entry, copied out under the lock */
typedef struct {
    ngx_uint_t                   state;
    ngx_uint_t                   scopes;       /* ORBIT_SCOPE_ bits */
    uint32_t                     expires;
    uint32_t                     used;
    u_char                       key_id[16];
    u_char                       tenant_id[16];
    unsigned                     touch:1;      /* write lastUsedAt */
} orbit_apikey_entry_t;


typedef struct {
    orbit_api_req_t             *ar;
    orbit_apikey_done_pt         done;
    u_char                       hash[32];
    char                         hex[ORBIT_SHA256_HEX_LEN + 1];
    const char                  *values[1];
} orbit_apikey_lookup_t;


typedef struct {
    orbit_api_req_t             *ar;
    orbit_apikey_revoked_pt      done;
} orbit_apikey_publish_t;


static ngx_uint_t orbit_apikey_well_formed(ngx_str_t *key);
static ngx_int_t orbit_apikey_accept(orbit_api_req_t *ar,
    orbit_apikey_entry_t *e);
static ngx_int_t orbit_apikey_lookup(orbit_api_req_t *ar,
    const u_char *hash, const char *hex, orbit_apikey_done_pt done);
static void orbit_apikey_lookup_done(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_apikey_row(PGresult *res, orbit_apikey_entry_t *e);
static void orbit_apikey_published(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static void orbit_apikey_message(void *data, ngx_str_t *channel,
    ngx_str_t *payload);

static ngx_int_t orbit_apikey_cache_get(orbit_apikey_ctx_t *ctx,
    const u_char *hash, orbit_apikey_entry_t *e);
static void orbit_apikey_cache_put(orbit_apikey_ctx_t *ctx,
    const u_char *hash, orbit_apikey_entry_t *e);
static void orbit_apikey_cache_revoke(orbit_apikey_ctx_t *ctx,
    const u_char *hash);
static orbit_apikey_node_t *orbit_apikey_find(orbit_apikey_ctx_t *ctx,
    const u_char *hash);
static orbit_apikey_node_t *orbit_apikey_alloc(orbit_apikey_ctx_t *ctx,
    const u_char *hash, uint32_t now);
static ngx_uint_t orbit_apikey_evict(orbit_apikey_ctx_t *ctx, uint32_t now,
    ngx_uint_t force);
static void orbit_apikey_free(orbit_apikey_ctx_t *ctx,
    orbit_apikey_node_t *an);
static void orbit_apikey_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t orbit_apikey_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

static void orbit_apikey_touch(const u_char *key_id);
static void orbit_apikey_touch_flush(ngx_event_t *ev);
static void orbit_apikey_touch_done(orbit_pg_query_t *q, PGresult *res);

static ngx_int_t orbit_apikey_unhex(u_char *dst, const u_char *src,
    size_t n);
static ngx_int_t orbit_apikey_uuid_parse(u_char *dst, const char *src,
    size_t len);
static u_char *orbit_apikey_uuid_text(u_char *p, const u_char *id);
static ngx_int_t orbit_apikey_uuid_str(ngx_pool_t *pool, ngx_str_t *dst,
    const u_char *id);
static ngx_uint_t orbit_apikey_scopes_parse(const char *s, size_t len);


/* the spec's scopes; entry i is bit ORBIT_SCOPE_CONTACTS_READ << i */
static const char *const  orbit_apikey_scopes[] = {
    "contacts:read",
    "contacts:write",
    "conversations:read",
    "messages:read",
    "messages:send",
    "flows:read",
    "flows:trigger",
    "templates:read",
    NULL
};

#define ORBIT_APIKEY_SCOPE_SHIFT  16


/* the tag of our zones: the same in the next cycle, so a reload adopts */
static ngx_uint_t  orbit_apikey_zone_tag;

/* this worker's lastUsedAt queue */
static u_char       orbit_apikey_touched[ORBIT_APIKEY_TOUCH_MAX][16];
static ngx_uint_t   orbit_apikey_ntouched;
static ngx_event_t  orbit_apikey_touch_event;

/* the timer's ev->data: debug logging reads ngx_event_ident(ev->data) */
static ngx_connection_t  orbit_apikey_touch_ident;


/* the request path */


ngx_uint_t
orbit_apikey_presented(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    if (orbit_header_in(r, "X-Api-Key") == NULL) {
        return 0;
    }

    /* JWT first: a Bearer token decides alone, valid or not */

    h = r->headers_in.authorization;

    if (h && h->value.len >= sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        return 0;
    }

    return 1;
}


ngx_int_t
orbit_apikey_authenticate(orbit_api_req_t *ar, orbit_apikey_done_pt done)
{
    u_char                 hash[32];
    ngx_int_t              rc;
    ngx_shm_zone_t        *zone;
    ngx_table_elt_t       *h;
    orbit_apikey_entry_t   e;
    char                   hex[ORBIT_SHA256_HEX_LEN + 1];

    if (!orbit_apikey_presented(ar->r)) {
        return NGX_OK;
    }

    h = orbit_header_in(ar->r, "X-Api-Key");

    if (!orbit_apikey_well_formed(&h->value)) {
        /* not one of ours: no lookup, orbit_auth_check() refuses it */
        return NGX_OK;
    }

    orbit_sha256_hex(hex, h->value.data, h->value.len);
    (void) orbit_apikey_unhex(hash, (u_char *) hex, sizeof(hash));

    zone = ngx_http_orbit_apikey_zone();

    if (zone) {
        rc = orbit_apikey_cache_get(zone->data, hash, &e);

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ar->r->connection->log, 0,
                       "orbit apikey cache %s, state %ui",
                       rc == NGX_OK ? "hit" : "miss", e.state);

        if (rc == NGX_OK) {
            return orbit_apikey_accept(ar, &e);
        }
    }

    return orbit_apikey_lookup(ar, hash, hex, done);
}


/* ar->who from a valid entry; anything else leaves it unauthenticated */

static ngx_int_t
orbit_apikey_accept(orbit_api_req_t *ar, orbit_apikey_entry_t *e)
{
    orbit_principal_t  *who;

    if (e->state != ORBIT_APIKEY_VALID
        || (e->expires && (uint32_t) ngx_time() >= e->expires))
    {
        return NGX_OK;
    }

    who = &ar->who;

    if (orbit_apikey_uuid_str(ar->r->pool, &who->key_id, e->key_id)
        != NGX_OK
        || orbit_apikey_uuid_str(ar->r->pool, &who->tenant_id, e->tenant_id)
           != NGX_OK)
    {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      NULL);
        return NGX_DECLINED;
    }

    who->kind = ORBIT_AUTH_KEY;
    who->role = 0;
    who->scopes = e->scopes;

    if (e->touch) {
        orbit_apikey_touch(e->key_id);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_apikey_lookup(orbit_api_req_t *ar, const u_char *hash, const char *hex,
    orbit_apikey_done_pt done)
{
    orbit_pg_pool_t        *pool;
    orbit_pg_query_t       *q;
    orbit_apikey_lookup_t  *lk;

    static const char  sql[] =
        "SELECT k.id, k.tenant_id, k.scopes,"
        "  CASE WHEN NOT k.is_active THEN 'revoked'"
        "    WHEN k.expires_at <= now() THEN 'expired'"
        "    WHEN t.status <> 'active' THEN 'tenant'"
        "    ELSE 'ok' END,"
        "  COALESCE(floor(extract(epoch FROM k.expires_at))::bigint, 0),"
        "  COALESCE(floor(extract(epoch FROM k.last_used_at))::bigint, 0)"
        " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.key_hash = $1";

    pool = ngx_http_orbit_pg();

    if (pool == NULL) {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "orbit_postgres is not configured");
        return NGX_DECLINED;
    }

    lk = ngx_palloc(ar->r->pool, sizeof(orbit_apikey_lookup_t));
    q = orbit_pg_query_create(ar->r->pool);

    if (lk == NULL || q == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    lk->ar = ar;
    lk->done = done;
    ngx_memcpy(lk->hash, hash, sizeof(lk->hash));
    ngx_memcpy(lk->hex, hex, sizeof(lk->hex));
    lk->values[0] = lk->hex;

    q->sql = sql;
    q->prepare = 1;
    q->nparams = 1;
    q->values = lk->values;
    q->handler = orbit_apikey_lookup_done;
    q->data = lk;

    if (orbit_pg_query_send(pool, q) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: api key lookup: %V", &q->error);
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "Service Unavailable");
        return NGX_DECLINED;
    }

    orbit_api_hold(ar);

    return NGX_DONE;
}


static void
orbit_apikey_lookup_done(orbit_pg_query_t *q, PGresult *res)
{
    ngx_int_t               rc;
    ngx_shm_zone_t         *zone;
    orbit_api_req_t        *ar;
    orbit_apikey_entry_t    e;
    orbit_apikey_lookup_t  *lk;

    lk = q->data;
    ar = lk->ar;

    if (res == NULL) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: api key lookup: %V", &q->error);

        ar->rc = orbit_api_send_error(ar,
                     q->timedout ? NGX_HTTP_GATEWAY_TIME_OUT
                                 : NGX_HTTP_SERVICE_UNAVAILABLE,
                     q->timedout ? "Gateway Timeout" : "Service Unavailable");
        lk->done(ar, NGX_DECLINED);
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK
        || orbit_apikey_row(res, &e) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: api key lookup failed: %s",
                      PQresultErrorMessage(res));

        ar->rc = orbit_api_send_error(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      NULL);
        lk->done(ar, NGX_DECLINED);
        return;
    }

    zone = ngx_http_orbit_apikey_zone();

    if (zone) {
        /* a revocation that arrived meanwhile wins: e comes back revoked */
        orbit_apikey_cache_put(zone->data, lk->hash, &e);
    }

    rc = orbit_apikey_accept(ar, &e);

    lk->done(ar, rc);
}


/* the lookup's row (or none: an unknown key) as an entry */

static ngx_int_t
orbit_apikey_row(PGresult *res, orbit_apikey_entry_t *e)
{
    char      *state;
    int64_t    expires, used;
    uint32_t   now;

    ngx_memzero(e, sizeof(orbit_apikey_entry_t));

    if (PQntuples(res) == 0) {
        e->state = ORBIT_APIKEY_INVALID;
        return NGX_OK;
    }

    if (PQnfields(res) != 6) {
        return NGX_ERROR;
    }

    state = PQgetvalue(res, 0, 3);

    if (ngx_strcmp(state, "ok") == 0) {
        e->state = ORBIT_APIKEY_VALID;

    } else if (ngx_strcmp(state, "tenant") == 0) {
        /* a suspended tenant may come back: not for long */
        e->state = ORBIT_APIKEY_INVALID;
        return NGX_OK;

    } else {
        e->state = ORBIT_APIKEY_REVOKED;
        return NGX_OK;
    }

    if (orbit_apikey_uuid_parse(e->key_id, PQgetvalue(res, 0, 0),
                                PQgetlength(res, 0, 0)) != NGX_OK
        || orbit_apikey_uuid_parse(e->tenant_id, PQgetvalue(res, 0, 1),
                                   PQgetlength(res, 0, 1)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    e->scopes = orbit_apikey_scopes_parse(PQgetvalue(res, 0, 2),
                                          PQgetlength(res, 0, 2));

    expires = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    used = strtoll(PQgetvalue(res, 0, 5), NULL, 10);

    /* the key is not expired ("ok"): expires > now, or 0 for never */
    e->expires = (expires > (int64_t) 0xffffffff) ? 0xffffffff
                                                  : (uint32_t) expires;

    now = (uint32_t) ngx_time();

    if (used <= 0 || used > (int64_t) now
        || now - (uint32_t) used >= ORBIT_APIKEY_USED_EVERY)
    {
        e->used = now;
        e->touch = 1;

    } else {
        e->used = (uint32_t) used;
    }

    return NGX_OK;
}


/* revocation */


ngx_int_t
orbit_apikey_revoke(orbit_api_req_t *ar, const u_char *hex,
    orbit_apikey_revoked_pt done)
{
    u_char                   hash[32];
    size_t                   argvlen[3];
    ngx_int_t                rc;
    const char              *argv[3];
    orbit_redis_t           *rd;
    ngx_shm_zone_t          *zone;
    orbit_redis_cmd_t       *cmd;
    orbit_apikey_publish_t  *pub;

    if (ngx_strlen(hex) != ORBIT_SHA256_HEX_LEN
        || orbit_apikey_unhex(hash, hex, sizeof(hash)) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: revoked api key has a bad hash \"%s\"", hex);
        return NGX_OK;
    }

    zone = ngx_http_orbit_apikey_zone();

    if (zone) {
        orbit_apikey_cache_revoke(zone->data, hash);
    }

    rd = ngx_http_orbit_redis();

    if (rd == NULL) {
        return NGX_OK;
    }

    cmd = orbit_redis_cmd_create(ar->r->pool);
    pub = ngx_palloc(ar->r->pool, sizeof(orbit_apikey_publish_t));

    if (cmd == NULL || pub == NULL) {
        return NGX_OK;
    }

    pub->ar = ar;
    pub->done = done;

    cmd->handler = orbit_apikey_published;
    cmd->data = pub;

    argv[0] = "PUBLISH";
    argv[1] = ORBIT_APIKEY_CHANNEL;
    argv[2] = (const char *) hex;
    argvlen[0] = sizeof("PUBLISH") - 1;
    argvlen[1] = sizeof(ORBIT_APIKEY_CHANNEL) - 1;
    argvlen[2] = ORBIT_SHA256_HEX_LEN;

    rc = orbit_redis_command(rd, cmd, 3, argv, argvlen);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ar->r->connection->log, 0,
                      "orbit: api key revocation not published (%V): "
                      "other nodes drop the key within %d s",
                      &cmd->error, ORBIT_APIKEY_TTL);
        return NGX_OK;
    }

    orbit_api_hold(ar);

    return NGX_DONE;
}


static void
orbit_apikey_published(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    orbit_apikey_publish_t  *pub = cmd->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, pub->ar->r->connection->log, 0,
                      "orbit: api key revocation not published (%V): "
                      "other nodes drop the key within %d s",
                      &cmd->error, ORBIT_APIKEY_TTL);
    }

    pub->done(pub->ar);
}


ngx_int_t
orbit_apikey_init_process(ngx_cycle_t *cycle, ngx_shm_zone_t *zone,
    orbit_redis_t *rd)
{
    ngx_str_t  channel = ngx_string(ORBIT_APIKEY_CHANNEL);

    if (zone == NULL || rd == NULL) {
        return NGX_OK;
    }

    if (orbit_redis_subscribe(rd, &channel, orbit_apikey_message, zone)
        == NULL)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "orbit: cannot subscribe to \"%V\"", &channel);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_apikey_message(void *data, ngx_str_t *channel, ngx_str_t *payload)
{
    ngx_shm_zone_t  *zone = data;

    u_char  hash[32];

    if (payload->len != ORBIT_SHA256_HEX_LEN
        || orbit_apikey_unhex(hash, payload->data, sizeof(hash)) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "orbit: ignored a malformed message on \"%V\"",
                      channel);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "orbit apikey revoked: %V", payload);

    orbit_apikey_cache_revoke(zone->data, hash);
}


/* the cache */


/* NGX_OK: e is the live entry of hash; NGX_DECLINED: not cached */

static ngx_int_t
orbit_apikey_cache_get(orbit_apikey_ctx_t *ctx, const u_char *hash,
    orbit_apikey_entry_t *e)
{
    uint32_t              now;
    orbit_apikey_node_t  *an;

    now = (uint32_t) ngx_time();
    e->state = ORBIT_APIKEY_INVALID;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    an = orbit_apikey_find(ctx, hash);

    if (an == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if ((int32_t) (an->until - now) <= 0) {
        orbit_apikey_free(ctx, an);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&an->queue);
    ngx_queue_insert_head(&ctx->sh->queue, &an->queue);

    e->state = an->state;
    e->scopes = (ngx_uint_t) an->scopes << ORBIT_APIKEY_SCOPE_SHIFT;
    e->expires = an->expires;
    e->touch = 0;
    ngx_memcpy(e->key_id, an->key_id, 16);
    ngx_memcpy(e->tenant_id, an->tenant_id, 16);

    if (an->state == ORBIT_APIKEY_VALID
        && now - an->used >= ORBIT_APIKEY_USED_EVERY)
    {
        /* this request brings lastUsedAt up to date, for every worker */
        an->used = now;
        e->touch = 1;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * Stores a lookup's result.  A live revoked entry stays (the lookup read
 * the key before its revocation): e is changed to say so.
 */

static void
orbit_apikey_cache_put(orbit_apikey_ctx_t *ctx, const u_char *hash,
    orbit_apikey_entry_t *e)
{
    uint32_t              now, ttl;
    orbit_apikey_node_t  *an;

    now = (uint32_t) ngx_time();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    an = orbit_apikey_find(ctx, hash);

    if (an && an->state == ORBIT_APIKEY_REVOKED
        && (int32_t) (an->until - now) > 0)
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        e->state = ORBIT_APIKEY_REVOKED;
        return;
    }

    if (an) {
        ngx_queue_remove(&an->queue);
        ngx_queue_insert_head(&ctx->sh->queue, &an->queue);

        if (e->state == ORBIT_APIKEY_VALID
            && an->state == ORBIT_APIKEY_VALID
            && now - an->used < ORBIT_APIKEY_USED_EVERY)
        {
            /* another worker's lookup of the same key came first */
            e->used = an->used;
            e->touch = 0;
        }

    } else {
        an = orbit_apikey_alloc(ctx, hash, now);

        if (an == NULL) {
            /* full even after evicting: this request goes uncached */
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return;
        }
    }

    switch (e->state) {
    case ORBIT_APIKEY_VALID:
        ttl = ORBIT_APIKEY_TTL;
        break;
    case ORBIT_APIKEY_REVOKED:
        ttl = ORBIT_APIKEY_REVOKED_TTL;
        break;
    default:
        ttl = ORBIT_APIKEY_BAD_TTL;
    }

    an->state = (u_char) e->state;
    an->scopes = (u_char) (e->scopes >> ORBIT_APIKEY_SCOPE_SHIFT);
    an->used = e->used;
    an->until = now + ttl;
    an->expires = e->expires;
    ngx_memcpy(an->key_id, e->key_id, 16);
    ngx_memcpy(an->tenant_id, e->tenant_id, 16);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* hash is revoked: cached as such, whether it was cached or not */

static void
orbit_apikey_cache_revoke(orbit_apikey_ctx_t *ctx, const u_char *hash)
{
    uint32_t              now;
    orbit_apikey_node_t  *an;

    now = (uint32_t) ngx_time();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    an = orbit_apikey_find(ctx, hash);

    if (an) {
        ngx_queue_remove(&an->queue);
        ngx_queue_insert_head(&ctx->sh->queue, &an->queue);

    } else {
        an = orbit_apikey_alloc(ctx, hash, now);
    }

    if (an) {
        an->state = ORBIT_APIKEY_REVOKED;
        an->scopes = 0;
        an->until = now + ORBIT_APIKEY_REVOKED_TTL;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* called with the zone locked */

static orbit_apikey_node_t *
orbit_apikey_find(orbit_apikey_ctx_t *ctx, const u_char *hash)
{
    ngx_int_t             rc;
    ngx_rbtree_key_t      key;
    ngx_rbtree_node_t    *node, *sentinel;
    orbit_apikey_node_t  *an;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        an = (orbit_apikey_node_t *) &node->color;

        rc = ngx_memcmp(hash, an->hash, 32);

        if (rc == 0) {
            return an;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * A new entry for hash, in the tree and at the head of the LRU queue; the
 * caller fills the rest.  Two stale entries at the LRU end are freed on
 * the way, so that old entries leave without a timer; when the slab is
 * full, live ones are evicted from the LRU end.
 */

static orbit_apikey_node_t *
orbit_apikey_alloc(orbit_apikey_ctx_t *ctx, const u_char *hash, uint32_t now)
{
    size_t                size;
    ngx_uint_t            n;
    ngx_rbtree_node_t    *node;
    orbit_apikey_node_t  *an;

    (void) orbit_apikey_evict(ctx, now, 0);
    (void) orbit_apikey_evict(ctx, now, 0);

    size = offsetof(ngx_rbtree_node_t, color) + sizeof(orbit_apikey_node_t);

    for (n = 0; /* void */ ; n++) {

        node = ngx_slab_alloc_locked(ctx->shpool, size);

        if (node != NULL) {
            break;
        }

        if (n == ORBIT_APIKEY_EVICT_MAX || !orbit_apikey_evict(ctx, now, 1)) {
            return NULL;
        }
    }

    ngx_memcpy(&node->key, hash, sizeof(ngx_rbtree_key_t));

    an = (orbit_apikey_node_t *) &node->color;

    ngx_memzero(&an->state, sizeof(orbit_apikey_node_t)
                            - offsetof(orbit_apikey_node_t, state));
    ngx_memcpy(an->hash, hash, 32);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);
    ngx_queue_insert_head(&ctx->sh->queue, &an->queue);

    return an;
}


/* Frees the least recently used entry if it is stale, or if force. */

static ngx_uint_t
orbit_apikey_evict(orbit_apikey_ctx_t *ctx, uint32_t now, ngx_uint_t force)
{
    ngx_queue_t          *q;
    orbit_apikey_node_t  *an;

    if (ngx_queue_empty(&ctx->sh->queue)) {
        return 0;
    }

    q = ngx_queue_last(&ctx->sh->queue);
    an = ngx_queue_data(q, orbit_apikey_node_t, queue);

    if (!force && (int32_t) (an->until - now) > 0) {
        return 0;
    }

    orbit_apikey_free(ctx, an);

    return 1;
}


static void
orbit_apikey_free(orbit_apikey_ctx_t *ctx, orbit_apikey_node_t *an)
{
    ngx_rbtree_node_t  *node;

    ngx_queue_remove(&an->queue);

    node = (ngx_rbtree_node_t *)
               ((u_char *) an - offsetof(ngx_rbtree_node_t, color));

    ngx_rbtree_delete(&ctx->sh->rbtree, node);
    ngx_slab_free_locked(ctx->shpool, node);
}


static void
orbit_apikey_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t    **p;
    orbit_apikey_node_t   *an, *ant;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            an = (orbit_apikey_node_t *) &node->color;
            ant = (orbit_apikey_node_t *) &temp->color;

            p = (ngx_memcmp(an->hash, ant->hash, 32) < 0)
                ? &temp->left : &temp->right;
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
orbit_apikey_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    orbit_apikey_ctx_t  *octx = data;

    size_t               len;
    orbit_apikey_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx != NULL) {
        /* a reload kept the zone: the cached keys stay valid */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(orbit_apikey_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    orbit_apikey_rbtree_insert_value);

    ngx_queue_init(&ctx->sh->queue);

    len = sizeof(" in orbit_apikey zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in orbit_apikey zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is expected and handled by eviction */

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


char *
orbit_apikey_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t               size;
    ngx_str_t            *value;
    ngx_shm_zone_t       *shm_zone, **field;
    orbit_apikey_ctx_t   *ctx;

    field = (ngx_shm_zone_t **) ((u_char *) conf + cmd->offset);

    if (*field) {
        return "is duplicate";
    }

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

    ctx = ngx_pcalloc(cf->pool, sizeof(orbit_apikey_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &orbit_apikey_zone_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\" is already declared",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = orbit_apikey_init_zone;
    shm_zone->data = ctx;

    *field = shm_zone;

    return NGX_CONF_OK;
}


/* lastUsedAt */


static void
orbit_apikey_touch(const u_char *key_id)
{
    ngx_uint_t    i;
    ngx_event_t  *ev;

    for (i = 0; i < orbit_apikey_ntouched; i++) {
        if (ngx_memcmp(orbit_apikey_touched[i], key_id, 16) == 0) {
            return;
        }
    }

    ngx_memcpy(orbit_apikey_touched[orbit_apikey_ntouched++], key_id, 16);

    ev = &orbit_apikey_touch_event;

    if (orbit_apikey_ntouched == ORBIT_APIKEY_TOUCH_MAX) {
        orbit_apikey_touch_flush(ev);
        return;
    }

    if (!ev->timer_set) {
        orbit_apikey_touch_ident.fd = (ngx_socket_t) -1;

        ev->handler = orbit_apikey_touch_flush;
        ev->data = &orbit_apikey_touch_ident;
        ev->log = ngx_cycle->log;

        /* a worker that exits does not wait for it: the marks are lost */
        ev->cancelable = 1;

        ngx_add_timer(ev, ORBIT_APIKEY_TOUCH_DELAY);
    }
}


static void
orbit_apikey_touch_flush(ngx_event_t *ev)
{
    u_char            *p;
    ngx_uint_t         i, n;
    ngx_pool_t        *pool;
    orbit_pg_pool_t   *pg;
    orbit_pg_query_t  *q;
    const char       **v;

    static const char  sql[] =
        "UPDATE api_keys SET last_used_at = now()"
        " WHERE id = ANY($1::uuid[])"
        "   AND (last_used_at IS NULL"
        "     OR last_used_at < now() - interval '30 seconds')";

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    n = orbit_apikey_ntouched;
    orbit_apikey_ntouched = 0;

    pg = ngx_http_orbit_pg();

    if (n == 0 || pg == NULL) {
        return;
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    p = ngx_pnalloc(pool, n * (ORBIT_UUID_LEN + 1) + 2);
    v = ngx_palloc(pool, sizeof(char *));
    q = orbit_pg_query_create(pool);

    if (p == NULL || v == NULL || q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    v[0] = (char *) p;

    *p++ = '{';

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ',';
        }

        p = orbit_apikey_uuid_text(p, orbit_apikey_touched[i]);
    }

    *p++ = '}';
    *p = '\0';

    q->sql = sql;
    q->prepare = 1;
    q->nparams = 1;
    q->values = v;
    q->handler = orbit_apikey_touch_done;
    q->data = pool;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "orbit: lastUsedAt of %ui api key(s) not written: %V",
                      n, &q->error);
        ngx_destroy_pool(pool);
    }
}


static void
orbit_apikey_touch_done(orbit_pg_query_t *q, PGresult *res)
{
    ngx_pool_t  *pool = q->data;

    if (res == NULL) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "orbit: lastUsedAt not written: %V", &q->error);

    } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "orbit: lastUsedAt not written: %s",
                      PQresultErrorMessage(res));
    }

    /* q lives in pool: the driver touches neither after this call */
    ngx_destroy_pool(pool);
}


/* scopes */


ngx_uint_t
orbit_apikey_scope(const u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; orbit_apikey_scopes[i]; i++) {
        if (ngx_strlen(orbit_apikey_scopes[i]) == len
            && ngx_strncmp(orbit_apikey_scopes[i], name, len) == 0)
        {
            return (ngx_uint_t) ORBIT_SCOPE_CONTACTS_READ << i;
        }
    }

    return 0;
}


u_char *
orbit_apikey_scope_names(u_char *p, u_char *last, ngx_uint_t bits,
    const char *sep)
{
    ngx_uint_t  i, first;

    first = 1;

    for (i = 0; orbit_apikey_scopes[i]; i++) {
        if (!(bits & ((ngx_uint_t) ORBIT_SCOPE_CONTACTS_READ << i))) {
            continue;
        }

        if (!first) {
            p = ngx_slprintf(p, last, "%s", sep);
        }

        p = ngx_slprintf(p, last, "%s", orbit_apikey_scopes[i]);
        first = 0;
    }

    return p;
}


u_char *
orbit_apikey_scope_array(ngx_pool_t *pool, ngx_uint_t bits)
{
    u_char      *p, *s;
    size_t       len;
    ngx_uint_t   i;

    len = sizeof("{}");

    for (i = 0; orbit_apikey_scopes[i]; i++) {
        len += ngx_strlen(orbit_apikey_scopes[i]) + 1;
    }

    s = ngx_pnalloc(pool, len);
    if (s == NULL) {
        return NULL;
    }

    p = s;
    *p++ = '{';
    p = orbit_apikey_scope_names(p, s + len - 2, bits, ",");
    *p++ = '}';
    *p = '\0';

    return s;
}


/* "{contacts:read,messages:send}": PostgreSQL's text[] output (our names
 * need no quoting) */

static ngx_uint_t
orbit_apikey_scopes_parse(const char *s, size_t len)
{
    size_t       i, start;
    ngx_uint_t   bits;

    if (len < 2 || s[0] != '{' || s[len - 1] != '}') {
        return 0;
    }

    bits = 0;
    start = 1;

    for (i = 1; i < len; i++) {
        if (s[i] == ',' || i == len - 1) {
            bits |= orbit_apikey_scope((u_char *) s + start, i - start);
            start = i + 1;
        }
    }

    return bits;
}


/* helpers */


static ngx_uint_t
orbit_apikey_well_formed(ngx_str_t *key)
{
    u_char  *p, *last, c;

    if (key->len != ORBIT_APIKEY_LEN
        || ngx_strncmp(key->data, ORBIT_APIKEY_PREFIX,
                       sizeof(ORBIT_APIKEY_PREFIX) - 1) != 0)
    {
        return 0;
    }

    last = key->data + key->len;

    for (p = key->data + sizeof(ORBIT_APIKEY_PREFIX) - 1; p < last; p++) {
        c = *p;

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return 0;
        }
    }

    return 1;
}


/* n bytes from 2n hex digits */

static ngx_int_t
orbit_apikey_unhex(u_char *dst, const u_char *src, size_t n)
{
    size_t     i;
    ngx_int_t  v;

    for (i = 0; i < n; i++) {
        v = ngx_hextoi((u_char *) src + 2 * i, 2);

        if (v == NGX_ERROR) {
            return NGX_ERROR;
        }

        dst[i] = (u_char) v;
    }

    return NGX_OK;
}


static ngx_int_t
orbit_apikey_uuid_parse(u_char *dst, const char *src, size_t len)
{
    size_t  i, n;
    u_char  hex[32];

    if (len != ORBIT_UUID_LEN) {
        return NGX_ERROR;
    }

    for (i = 0, n = 0; i < len; i++) {
        if (src[i] == '-') {
            continue;
        }

        if (n == sizeof(hex)) {
            return NGX_ERROR;
        }

        hex[n++] = (u_char) src[i];
    }

    if (n != sizeof(hex)) {
        return NGX_ERROR;
    }

    return orbit_apikey_unhex(dst, hex, 16);
}


static u_char *
orbit_apikey_uuid_text(u_char *p, const u_char *id)
{
    ngx_uint_t  i;

    static const u_char  hex[] = "0123456789abcdef";

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *p++ = '-';
        }

        *p++ = hex[id[i] >> 4];
        *p++ = hex[id[i] & 0xf];
    }

    return p;
}


/* a nul-terminated UUID in pool: handlers pass it to SQL as it is */

static ngx_int_t
orbit_apikey_uuid_str(ngx_pool_t *pool, ngx_str_t *dst, const u_char *id)
{
    u_char  *p;

    p = ngx_pnalloc(pool, ORBIT_UUID_LEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;
    p = orbit_apikey_uuid_text(p, id);
    *p = '\0';
    dst->len = ORBIT_UUID_LEN;

    return NGX_OK;
}
