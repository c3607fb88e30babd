/*
 * OrbitDesk REST: GET /api/v1/health.
 *
 * PostgreSQL and Redis are asked at once; the answer goes out when both
 * have replied (or failed).  PostgreSQL down is a 503: nothing works
 * without it.  Redis down is "degraded" with a 200: the REST API still
 * works, only real-time fan-out and caches suffer.
 */

#include "api/orbit_api.h"
#include "ngx_http_orbit_module.h"


#define ORBIT_HEALTH_PG_TIMEOUT     2000
#define ORBIT_HEALTH_REDIS_TIMEOUT  1000


typedef struct {
    unsigned                     done:1;
    unsigned                     ok:1;
    ngx_msec_int_t               usec;
    ngx_str_t                    error;
} orbit_health_part_t;


typedef struct {
    orbit_api_req_t             *ar;
    struct timespec              start;
    ngx_uint_t                   pending;
    orbit_health_part_t          pg;
    orbit_health_part_t          redis;
} orbit_health_t;


static void orbit_health_pg_done(orbit_pg_query_t *q, PGresult *res);
static void orbit_health_redis_done(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static void orbit_health_part_done(orbit_health_t *h,
    orbit_health_part_t *part, ngx_uint_t ok, ngx_str_t *error);
static ngx_int_t orbit_health_respond(orbit_health_t *h);
static u_char *orbit_health_part_json(u_char *p, const char *name,
    orbit_health_part_t *part);


static ngx_str_t  orbit_health_not_configured =
    ngx_string("not configured");

static const char  *orbit_health_ping[] = { "PING" };


ngx_int_t
orbit_api_health(orbit_api_req_t *ar)
{
    orbit_health_t     *h;
    orbit_pg_pool_t    *pool;
    orbit_redis_t      *redis;
    orbit_pg_query_t   *q;
    orbit_redis_cmd_t  *cmd;

    h = ngx_pcalloc(ar->r->pool, sizeof(orbit_health_t));
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->ar = ar;
    clock_gettime(CLOCK_MONOTONIC, &h->start);

    pool = ngx_http_orbit_pg();
    redis = ngx_http_orbit_redis();

    if (pool == NULL) {
        h->pg.done = 1;
        h->pg.error = orbit_health_not_configured;

    } else {
        q = orbit_pg_query_create(ar->r->pool);
        if (q == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        q->sql = "SELECT 1";
        q->prepare = 1;
        q->handler = orbit_health_pg_done;
        q->data = h;
        q->timeout = ORBIT_HEALTH_PG_TIMEOUT;

        if (orbit_pg_query_send(pool, q) == NGX_OK) {
            h->pending++;

        } else {
            h->pg.done = 1;
            h->pg.error = q->error;
        }
    }

    if (redis == NULL) {
        h->redis.done = 1;
        h->redis.error = orbit_health_not_configured;

    } else {
        cmd = orbit_redis_cmd_create(ar->r->pool);
        if (cmd == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cmd->handler = orbit_health_redis_done;
        cmd->data = h;
        cmd->timeout = ORBIT_HEALTH_REDIS_TIMEOUT;

        if (orbit_redis_command(redis, cmd, 1, orbit_health_ping, NULL)
            == NGX_OK)
        {
            h->pending++;

        } else {
            h->redis.done = 1;
            h->redis.error = cmd->error;
        }
    }

    if (h->pending == 0) {
        return orbit_health_respond(h);
    }

    orbit_api_hold(ar);

    return NGX_DONE;
}


static void
orbit_health_pg_done(orbit_pg_query_t *q, PGresult *res)
{
    ngx_str_t        err;
    orbit_health_t  *h;

    h = q->data;

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
        orbit_health_part_done(h, &h->pg, 1, NULL);
        return;
    }

    if (res) {
        err.data = (u_char *) PQresultErrorMessage(res);
        err.len = ngx_strlen(err.data);

        /* copy: res is freed when we return */
        err.data = ngx_pstrdup(h->ar->r->pool, &err);
        if (err.data == NULL) {
            err.len = 0;
        }

        orbit_health_part_done(h, &h->pg, 0, &err);
        return;
    }

    orbit_health_part_done(h, &h->pg, 0, &q->error);
}


static void
orbit_health_redis_done(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_str_t        err;
    orbit_health_t  *h;

    h = cmd->data;

    if (reply && reply->type != REDIS_REPLY_ERROR) {
        orbit_health_part_done(h, &h->redis, 1, NULL);
        return;
    }

    if (reply) {
        err.len = reply->len;
        err.data = ngx_pnalloc(h->ar->r->pool, reply->len);
        if (err.data == NULL) {
            err.len = 0;

        } else {
            ngx_memcpy(err.data, reply->str, reply->len);
        }

        orbit_health_part_done(h, &h->redis, 0, &err);
        return;
    }

    orbit_health_part_done(h, &h->redis, 0, &cmd->error);
}


static void
orbit_health_part_done(orbit_health_t *h, orbit_health_part_t *part,
    ngx_uint_t ok, ngx_str_t *error)
{
    struct timespec  now;

    clock_gettime(CLOCK_MONOTONIC, &now);

    part->done = 1;
    part->ok = ok;
    part->usec = (now.tv_sec - h->start.tv_sec) * 1000000
                 + (now.tv_nsec - h->start.tv_nsec) / 1000;

    if (error) {
        part->error = *error;
    }

    if (--h->pending == 0) {
        orbit_api_finish(h->ar, orbit_health_respond(h));
    }
}


static ngx_int_t
orbit_health_respond(orbit_health_t *h)
{
    u_char      *buf, *p;
    size_t       len;
    ngx_uint_t   status;
    const char  *word;

    len = sizeof("{\"status\":\"degraded\",\"version\":\"\"}")
          + sizeof(ORBIT_VERSION) + 2 * 128
          + 6 * (h->pg.error.len + h->redis.error.len);

    buf = ngx_pnalloc(h->ar->r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!h->pg.ok) {
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        word = "error";

    } else {
        status = NGX_HTTP_OK;
        word = h->redis.ok ? "ok" : "degraded";
    }

    p = ngx_sprintf(buf, "{\"status\":\"%s\",", word);
    p = orbit_health_part_json(p, "postgres", &h->pg);
    *p++ = ',';
    p = orbit_health_part_json(p, "redis", &h->redis);
    p = ngx_sprintf(p, ",\"version\":\"%s\"}", ORBIT_VERSION);

    return orbit_api_send_json(h->ar, status, buf, p - buf);
}


static u_char *
orbit_health_part_json(u_char *p, const char *name,
    orbit_health_part_t *part)
{
    if (part->ok) {
        return ngx_sprintf(p, "\"%s\":{\"ok\":true,\"latencyMs\":%d.%03d}",
                           name, (int) (part->usec / 1000),
                           (int) (part->usec % 1000));
    }

    p = ngx_sprintf(p, "\"%s\":{\"ok\":false,\"error\":\"", name);
    p = (u_char *) orbit_json_escape((char *) p, (char *) part->error.data,
                                     part->error.len);

    return ngx_cpymem(p, "\"}", 2);
}
