/*
 * OrbitDesk real time: presence, kept in Redis (see orbit_presence.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_orbit_module.h"
#include "realtime/orbit_rooms.h"
#include "realtime/orbit_presence.h"


#define ORBIT_PRESENCE_KEY  "orbit:rt:presence:"


typedef struct {
    ngx_pool_t                  *pool;
    ngx_str_t                    tenant;
    ngx_str_t                    user;
    ngx_log_t                   *log;
} orbit_presence_op_t;


static void orbit_presence_updated(orbit_redis_cmd_t *cmd,
    redisReply *reply);


/*
 * KEYS: the user's sockets, the tenant's users.  ARGV: sid, now, until
 * (0: gone), user.  Returns {sockets before, sockets after}, the expired
 * ones not counted.
 */
static const char  orbit_presence_script[] =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])\n"
    "local before = redis.call('ZCARD', KEYS[1])\n"
    "if ARGV[3] == '0' then redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end\n"
    "local after = redis.call('ZCARD', KEYS[1])\n"
    "if after > 0 then\n"
    "  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')\n"
    "  redis.call('PEXPIREAT', KEYS[1], last[2])\n"
    "  redis.call('ZADD', KEYS[2], last[2], ARGV[4])\n"
    "  redis.call('PEXPIREAT', KEYS[2],"
    "    redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])\n"
    "else redis.call('ZREM', KEYS[2], ARGV[4]) end\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])\n"
    "return {before, after}";


void
orbit_presence_update(ngx_str_t *tenant, ngx_str_t *user, ngx_str_t *sid,
    ngx_msec_t ttl, ngx_log_t *log)
{
    u_char               *p, *user_key, *tenant_key, *now, *until;
    ngx_pool_t           *pool;
    ngx_time_t           *tp;
    orbit_redis_t        *rd;
    orbit_redis_cmd_t    *cmd;
    orbit_presence_op_t  *op;
    const char           *argv[9];
    size_t                argvlen[9];
    uint64_t              ms;

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return;
    }

    /* it outlives the socket, and so the socket's log */
    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    op = ngx_palloc(pool, sizeof(orbit_presence_op_t));
    user_key = ngx_pnalloc(pool, sizeof(ORBIT_PRESENCE_KEY) + tenant->len
                                 + 1 + user->len);
    tenant_key = ngx_pnalloc(pool, sizeof(ORBIT_PRESENCE_KEY) + tenant->len);
    now = ngx_pnalloc(pool, NGX_INT64_LEN);
    until = ngx_pnalloc(pool, NGX_INT64_LEN);
    p = ngx_pnalloc(pool, tenant->len + user->len);
    cmd = orbit_redis_cmd_create(pool);

    if (op == NULL || user_key == NULL || tenant_key == NULL || now == NULL
        || until == NULL || p == NULL || cmd == NULL)
    {
        ngx_destroy_pool(pool);
        return;
    }

    /* the op outlives the caller's strings */
    op->pool = pool;
    op->log = ngx_cycle->log;
    op->tenant.data = p;
    op->tenant.len = tenant->len;
    op->user.data = ngx_cpymem(p, tenant->data, tenant->len);
    op->user.len = user->len;
    ngx_memcpy(op->user.data, user->data, user->len);

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    cmd->handler = orbit_presence_updated;
    cmd->data = op;

    argv[0] = "EVAL";
    argv[1] = orbit_presence_script;
    argv[2] = "2";
    argv[3] = (char *) user_key;
    argv[4] = (char *) tenant_key;
    argv[5] = (char *) sid->data;
    argv[6] = (char *) now;
    argv[7] = (char *) until;
    argv[8] = (char *) user->data;

    argvlen[0] = 4;
    argvlen[1] = sizeof(orbit_presence_script) - 1;
    argvlen[2] = 1;
    argvlen[3] = ngx_sprintf(user_key, ORBIT_PRESENCE_KEY "%V:%V", tenant,
                             user) - user_key;
    argvlen[4] = ngx_sprintf(tenant_key, ORBIT_PRESENCE_KEY "%V", tenant)
                 - tenant_key;
    argvlen[5] = sid->len;
    argvlen[6] = ngx_sprintf(now, "%uL", ms) - now;
    argvlen[7] = ttl ? ngx_sprintf(until, "%uL", ms + ttl) - until : 1;
    argvlen[8] = user->len;

    if (ttl == 0) {
        until[0] = '0';
    }

    if (orbit_redis_command(rd, cmd, 9, argv, argvlen) != NGX_OK) {
        ngx_destroy_pool(pool);
    }
}


static void
orbit_presence_updated(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    orbit_presence_op_t  *op = cmd->data;

    u_char      *p;
    ngx_str_t    room, data;
    long long    before, after;
    u_char       buf[sizeof("tenant:") + 64], json[160];

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "realtime: presence of user %V not updated",
                      &op->user);
        goto done;
    }

    before = reply->element[0]->integer;
    after = reply->element[1]->integer;

    if ((before == 0) == (after == 0) || op->tenant.len > 64
        || op->user.len > 64)
    {
        goto done;              /* no change the others need to hear */
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "tenant:%V", &op->tenant) - buf;

    p = ngx_sprintf(json, "{\"userId\":\"%V\",\"online\":%s}", &op->user,
                    after ? "true" : "false");
    data.data = json;
    data.len = p - json;

    (void) orbit_rt_publish(&op->tenant, &room, "presence", &data, NULL,
                            op->log);

done:

    ngx_destroy_pool(op->pool);
}


ngx_int_t
orbit_presence_list(ngx_str_t *tenant, ngx_pool_t *pool,
    orbit_redis_cmd_t *cmd)
{
    u_char         *key, *now;
    ngx_time_t     *tp;
    orbit_redis_t  *rd;
    const char     *argv[4];
    size_t          argvlen[4];

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return NGX_DECLINED;
    }

    key = ngx_pnalloc(pool, sizeof(ORBIT_PRESENCE_KEY) + tenant->len);
    now = ngx_pnalloc(pool, NGX_INT64_LEN + 1);

    if (key == NULL || now == NULL) {
        return NGX_ERROR;
    }

    tp = ngx_timeofday();

    argv[0] = "ZRANGEBYSCORE";
    argv[1] = (char *) key;
    argv[2] = (char *) now;
    argv[3] = "+inf";

    argvlen[0] = sizeof("ZRANGEBYSCORE") - 1;
    argvlen[1] = ngx_sprintf(key, ORBIT_PRESENCE_KEY "%V", tenant) - key;
    argvlen[2] = ngx_sprintf(now, "(%uL",
                             (uint64_t) tp->sec * 1000 + tp->msec) - now;
    argvlen[3] = 4;

    return orbit_redis_command(rd, cmd, 4, argv, argvlen);
}
