/*
 * OrbitDesk real time: the worker's rooms and their Redis channels.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_orbit_module.h"
#include "api/orbit_auth.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_RT_CHANNEL      "orbit:rt:"
#define ORBIT_RT_LOG          "orbit:rt:log:"
#define ORBIT_RT_LOG_MAXLEN   "10000"       /* events kept per tenant */
#define ORBIT_RT_LOG_TTL      "86400000"    /* ms: an idle tenant's log */


struct orbit_room_s {
    ngx_str_node_t               sn;       /* sn.str: the name, after */
    ngx_queue_t                  members;
    void                        *sub;      /* the Redis subscription */
    ngx_log_t                   *log;
};


static void orbit_room_message(void *data, ngx_str_t *channel,
    ngx_str_t *payload);
static void orbit_rt_published(orbit_redis_cmd_t *cmd, redisReply *reply);
static void orbit_rt_checked(orbit_pg_query_t *q, PGresult *res);
static char *orbit_rt_cstr(ngx_pool_t *pool, u_char *data, size_t len);


static ngx_rbtree_t       orbit_rooms;
static ngx_rbtree_node_t  orbit_rooms_sentinel;
static ngx_uint_t         orbit_rooms_ready;


/*
 * The event and its log entry in one round trip: the stream's id is the
 * event's id, and the channel message carries it.
 */
static const char  orbit_rt_script[] =
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*',"
    " 'r', ARGV[1], 'n', ARGV[3], 'd', ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[6])\n"
    "redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2] .. '\\n'"
    " .. ARGV[3] .. '\\n' .. ARGV[4])\n"
    "return id";


orbit_room_member_t *
orbit_room_join(ngx_str_t *name, orbit_room_deliver_pt deliver, void *data,
    ngx_log_t *log)
{
    uint32_t              hash;
    orbit_room_t         *room;
    orbit_redis_t        *rd;
    orbit_room_member_t  *m;
    ngx_str_t             channel;
    u_char                buf[sizeof(ORBIT_RT_CHANNEL) + ORBIT_RT_ROOM_MAX];

    if (name->len == 0 || name->len > ORBIT_RT_ROOM_MAX) {
        return NULL;
    }

    if (!orbit_rooms_ready) {
        ngx_rbtree_init(&orbit_rooms, &orbit_rooms_sentinel,
                        ngx_str_rbtree_insert_value);
        orbit_rooms_ready = 1;
    }

    m = ngx_alloc(sizeof(orbit_room_member_t), log);
    if (m == NULL) {
        return NULL;
    }

    hash = ngx_crc32_short(name->data, name->len);

    room = (orbit_room_t *) ngx_str_rbtree_lookup(&orbit_rooms, name, hash);

    if (room == NULL) {
        rd = ngx_http_orbit_redis();

        if (rd == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "realtime: rooms need orbit_redis");
            ngx_free(m);
            return NULL;
        }

        room = ngx_alloc(sizeof(orbit_room_t) + name->len, log);
        if (room == NULL) {
            ngx_free(m);
            return NULL;
        }

        room->sn.str.data = (u_char *) room + sizeof(orbit_room_t);
        room->sn.str.len = name->len;
        ngx_memcpy(room->sn.str.data, name->data, name->len);
        room->sn.node.key = hash;
        room->log = ngx_cycle->log;
        ngx_queue_init(&room->members);

        channel.data = buf;
        channel.len = ngx_sprintf(buf, ORBIT_RT_CHANNEL "%V", name) - buf;

        room->sub = orbit_redis_subscribe(rd, &channel, orbit_room_message,
                                          room);
        if (room->sub == NULL) {
            ngx_free(room);
            ngx_free(m);
            return NULL;
        }

        ngx_rbtree_insert(&orbit_rooms, &room->sn.node);
    }

    m->room = room;
    m->deliver = deliver;
    m->data = data;
    ngx_queue_insert_tail(&room->members, &m->queue);

    return m;
}


void
orbit_room_leave(orbit_room_member_t *m)
{
    orbit_room_t   *room;
    orbit_redis_t  *rd;

    room = m->room;

    ngx_queue_remove(&m->queue);
    ngx_free(m);

    if (!ngx_queue_empty(&room->members)) {
        return;
    }

    /* the last one out: the worker stops listening to the room */

    ngx_rbtree_delete(&orbit_rooms, &room->sn.node);

    rd = ngx_http_orbit_redis();
    if (rd) {
        orbit_redis_unsubscribe(rd, room->sub);
    }

    ngx_free(room);
}


ngx_str_t *
orbit_room_name(orbit_room_member_t *m)
{
    return &m->room->sn.str;
}


orbit_room_member_t *
orbit_room_find(ngx_queue_t *rooms, ngx_str_t *room)
{
    ngx_queue_t          *q;
    ngx_str_t            *name;
    orbit_room_member_t  *m;

    for (q = ngx_queue_head(rooms);
         q != ngx_queue_sentinel(rooms);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, orbit_room_member_t, link);
        name = &m->room->sn.str;

        if (name->len == room->len
            && ngx_strncmp(name->data, room->data, room->len) == 0)
        {
            return m;
        }
    }

    return NULL;
}


static void
orbit_room_message(void *data, ngx_str_t *channel, ngx_str_t *payload)
{
    orbit_room_t  *room = data;

    ngx_uint_t            i;
    ngx_queue_t          *q, *next;
    orbit_rt_event_t      ev;
    orbit_room_member_t  *m;

    if (orbit_rt_event_parse(payload, &ev) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, room->log, 0,
                      "realtime: a malformed event on \"%V\" dropped",
                      channel);
        return;
    }

    ev.room = room->sn.str;

    /* a member's delivery never leaves the room under us: closing a
     * socket is always deferred to its own events */

    for (q = ngx_queue_head(&room->members);
         q != ngx_queue_sentinel(&room->members);
         q = next)
    {
        next = ngx_queue_next(q);
        m = ngx_queue_data(q, orbit_room_member_t, queue);
        m->deliver(m, &ev);
    }

    for (i = 0; i < ORBIT_RT_PROTOCOLS; i++) {
        if (ev.frames[i]) {
            orbit_ws_frame_release(ev.frames[i]);
        }
    }
}


ngx_int_t
orbit_rt_event_parse(ngx_str_t *payload, orbit_rt_event_t *ev)
{
    u_char     *p, *end, *nl;
    ngx_str_t  *field[3];
    ngx_uint_t  i;

    ngx_memzero(ev, sizeof(orbit_rt_event_t));

    field[0] = &ev->id;
    field[1] = &ev->from;
    field[2] = &ev->name;

    p = payload->data;
    end = p + payload->len;

    for (i = 0; i < 3; i++) {
        nl = ngx_strlchr(p, end, '\n');
        if (nl == NULL) {
            return NGX_ERROR;
        }

        field[i]->data = p;
        field[i]->len = nl - p;
        p = nl + 1;
    }

    if (ev->name.len == 0 || p == end) {
        return NGX_ERROR;
    }

    ev->data.data = p;
    ev->data.len = end - p;

    return NGX_OK;
}


ngx_int_t
orbit_rt_publish(ngx_str_t *tenant, ngx_str_t *room, const char *name,
    ngx_str_t *data, ngx_str_t *from, ngx_log_t *log)
{
    u_char             *log_key, *channel;
    ngx_pool_t         *pool;
    orbit_redis_t      *rd;
    orbit_redis_cmd_t  *cmd;
    const char         *argv[11];
    size_t              argvlen[11];

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return NGX_DECLINED;
    }

    /* the command's own pool: it lives until the reply, maybe longer
     * than the caller's connection, whose log it must not keep */
    pool = ngx_create_pool(512, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    log_key = ngx_pnalloc(pool, sizeof(ORBIT_RT_LOG) + tenant->len);
    channel = ngx_pnalloc(pool, sizeof(ORBIT_RT_CHANNEL) + room->len);
    cmd = orbit_redis_cmd_create(pool);

    if (log_key == NULL || channel == NULL || cmd == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    cmd->handler = orbit_rt_published;
    cmd->data = pool;

    argv[0] = "EVAL";
    argv[1] = orbit_rt_script;
    argv[2] = "2";
    argv[3] = (char *) log_key;
    argv[4] = (char *) channel;
    argv[5] = (char *) room->data;
    argv[6] = from ? (char *) from->data : "";
    argv[7] = name;
    argv[8] = (char *) data->data;
    argv[9] = ORBIT_RT_LOG_MAXLEN;
    argv[10] = ORBIT_RT_LOG_TTL;

    argvlen[0] = 4;
    argvlen[1] = sizeof(orbit_rt_script) - 1;
    argvlen[2] = 1;
    argvlen[3] = ngx_sprintf(log_key, ORBIT_RT_LOG "%V", tenant) - log_key;
    argvlen[4] = ngx_sprintf(channel, ORBIT_RT_CHANNEL "%V", room) - channel;
    argvlen[5] = room->len;
    argvlen[6] = from ? from->len : 0;
    argvlen[7] = ngx_strlen(name);
    argvlen[8] = data->len;
    argvlen[9] = sizeof(ORBIT_RT_LOG_MAXLEN) - 1;
    argvlen[10] = sizeof(ORBIT_RT_LOG_TTL) - 1;

    if (orbit_redis_command(rd, cmd, 11, argv, argvlen) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "realtime: event \"%s\" to \"%V\" not published: %V",
                      name, room, &cmd->error);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_rt_published(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_pool_t  *pool = cmd->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "realtime: an event was not published: %s",
                      reply ? reply->str : (char *) cmd->error.data);
    }

    ngx_destroy_pool(pool);
}


orbit_rt_check_t *
orbit_rt_check_conversation(const char *id, ngx_str_t *tenant,
    ngx_str_t *user, ngx_uint_t role, size_t ctx_size,
    orbit_rt_checked_pt handler, void *data, ngx_log_t *log)
{
    size_t             len;
    const char       **v;
    ngx_pool_t        *pool;
    orbit_pg_pool_t   *pg;
    orbit_pg_query_t  *q;
    orbit_rt_check_t  *chk;

    static const char  sql[] =
        "SELECT 1 FROM conversations"
        " WHERE id = $1::uuid AND tenant_id = $2::uuid"
        "   AND ($3::text <> 'AGENT' OR assignee_id = $4::uuid)";

    pg = ngx_http_orbit_pg();
    if (pg == NULL) {
        return NULL;
    }

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    len = ngx_strlen(id);

    chk = ngx_pcalloc(pool, sizeof(orbit_rt_check_t));
    v = ngx_palloc(pool, 4 * sizeof(char *));
    q = orbit_pg_query_create(pool);

    if (chk == NULL || v == NULL || q == NULL) {
        goto failed;
    }

    chk->pool = pool;
    chk->handler = handler;
    chk->data = data;
    chk->ctx = ctx_size ? ngx_pcalloc(pool, ctx_size) : NULL;
    chk->room.len = sizeof("conversation:") - 1 + len;
    chk->room.data = ngx_pnalloc(pool, chk->room.len);

    /* the values outlive the caller's: the query may wait its turn */
    v[0] = orbit_rt_cstr(pool, (u_char *) id, len);
    v[1] = orbit_rt_cstr(pool, tenant->data, tenant->len);
    v[2] = orbit_auth_role_name(role);
    v[3] = orbit_rt_cstr(pool, user->data, user->len);

    if ((ctx_size && chk->ctx == NULL) || chk->room.data == NULL
        || v[0] == NULL || v[1] == NULL || v[2] == NULL || v[3] == NULL)
    {
        goto failed;
    }

    ngx_sprintf(chk->room.data, "conversation:%s", id);

    q->sql = sql;
    q->nparams = 4;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_rt_checked;
    q->data = chk;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        goto failed;
    }

    return chk;

failed:

    ngx_destroy_pool(pool);
    return NULL;
}


static void
orbit_rt_checked(orbit_pg_query_t *q, PGresult *res)
{
    orbit_rt_check_t  *chk = q->data;

    ngx_int_t  rc;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, chk->pool->log, 0,
                      "realtime: the check of \"%V\" failed: %s%V",
                      &chk->room, res ? PQresultErrorMessage(res) : "",
                      &q->error);
        rc = NGX_ERROR;

    } else {
        rc = PQntuples(res) ? NGX_OK : NGX_DECLINED;
    }

    chk->handler(chk, rc);

    /* q and res are the pool's only until this handler returns */
    ngx_destroy_pool(chk->pool);
}


static char *
orbit_rt_cstr(ngx_pool_t *pool, u_char *data, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, data, len) = '\0';

    return (char *) p;
}
