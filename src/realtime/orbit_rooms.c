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
 * event's id, and the channel messages carry it.  KEYS: the log, then one
 * channel per room.  ARGV: rooms ("\n"-separated), from, to, name, data,
 * the log's length and time to live.
 */
static const char  orbit_rt_script[] =
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*',"
    " 'r', ARGV[1], 't', ARGV[3], 'n', ARGV[4], 'd', ARGV[5])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[7])\n"
    "local msg = id .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n'"
    " .. ARGV[4] .. '\\n' .. ARGV[5]\n"
    "for i = 2, #KEYS do redis.call('PUBLISH', KEYS[i], msg) end\n"
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
    ngx_str_t  *field[4];
    ngx_uint_t  i;

    ngx_memzero(ev, sizeof(orbit_rt_event_t));

    field[0] = &ev->id;
    field[1] = &ev->from;
    field[2] = &ev->to;
    field[3] = &ev->name;

    p = payload->data;
    end = p + payload->len;

    for (i = 0; i < 4; i++) {
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
orbit_rt_broadcast(ngx_str_t *tenant, ngx_str_t *rooms, ngx_uint_t nrooms,
    ngx_str_t *to, const char *name, ngx_str_t *data, ngx_str_t *from,
    ngx_log_t *log)
{
    int                 argc;
    u_char             *log_key, *channel, *list, *p;
    size_t              len;
    ngx_uint_t          i;
    ngx_pool_t         *pool;
    orbit_redis_t      *rd;
    orbit_redis_cmd_t  *cmd;
    const char         *argv[10 + ORBIT_RT_ROOMS_MAX];
    size_t              argvlen[10 + ORBIT_RT_ROOMS_MAX];

    if (nrooms == 0 || nrooms > ORBIT_RT_ROOMS_MAX) {
        return NGX_ERROR;
    }

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return NGX_DECLINED;
    }

    /* the command's own pool: it lives until the reply, maybe longer
     * than the caller's connection, whose log it must not keep */
    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    len = 0;
    for (i = 0; i < nrooms; i++) {
        len += rooms[i].len + 1;
    }

    log_key = ngx_pnalloc(pool, sizeof(ORBIT_RT_LOG) + tenant->len);
    list = ngx_pnalloc(pool, len);
    cmd = orbit_redis_cmd_create(pool);

    if (log_key == NULL || list == NULL || cmd == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    cmd->handler = orbit_rt_published;
    cmd->data = pool;

    argv[0] = "EVAL";
    argv[1] = orbit_rt_script;
    argv[3] = (char *) log_key;

    argvlen[0] = 4;
    argvlen[1] = sizeof(orbit_rt_script) - 1;
    argvlen[3] = ngx_sprintf(log_key, ORBIT_RT_LOG "%V", tenant) - log_key;

    argc = 4;
    p = list;

    for (i = 0; i < nrooms; i++) {
        channel = ngx_pnalloc(pool, sizeof(ORBIT_RT_CHANNEL) + rooms[i].len);
        if (channel == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        argv[argc] = (char *) channel;
        argvlen[argc++] = ngx_sprintf(channel, ORBIT_RT_CHANNEL "%V",
                                      &rooms[i])
                          - channel;

        if (i) {
            *p++ = '\n';
        }

        p = ngx_cpymem(p, rooms[i].data, rooms[i].len);
    }

    /* the number of keys, "1" to "5" */
    argv[2] = (char *) ngx_pnalloc(pool, 2);
    if (argv[2] == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    argvlen[2] = ngx_sprintf((u_char *) argv[2], "%ui", nrooms + 1)
                 - (u_char *) argv[2];

    argv[argc] = (char *) list;
    argvlen[argc++] = p - list;
    argv[argc] = from ? (char *) from->data : "";
    argvlen[argc++] = from ? from->len : 0;
    argv[argc] = to ? (char *) to->data : "";
    argvlen[argc++] = to ? to->len : 0;
    argv[argc] = name;
    argvlen[argc++] = ngx_strlen(name);
    argv[argc] = (char *) data->data;
    argvlen[argc++] = data->len;
    argv[argc] = ORBIT_RT_LOG_MAXLEN;
    argvlen[argc++] = sizeof(ORBIT_RT_LOG_MAXLEN) - 1;
    argv[argc] = ORBIT_RT_LOG_TTL;
    argvlen[argc++] = sizeof(ORBIT_RT_LOG_TTL) - 1;

    if (orbit_redis_command(rd, cmd, argc, argv, argvlen) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "realtime: event \"%s\" to \"%V\" not published: %V",
                      name, &rooms[0], &cmd->error);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_uint_t
orbit_rt_audience(ngx_str_t *to, ngx_uint_t role, ngx_str_t *user)
{
    u_char  *p, *end, *word;
    size_t   len;

    if (to->len == 0) {
        return 1;
    }

    p = to->data;
    end = p + to->len;

    while (p < end) {
        word = p;

        while (p < end && *p != ' ') {
            p++;
        }

        len = p - word;
        p++;

        if (len == sizeof("staff") - 1
            && ngx_strncmp(word, "staff", len) == 0)
        {
            if (role & (ORBIT_ROLE_ADMIN|ORBIT_ROLE_MANAGER)) {
                return 1;
            }

            continue;
        }

        if (len == user->len && ngx_strncmp(word, user->data, len) == 0) {
            return 1;
        }
    }

    return 0;
}


ngx_uint_t
orbit_rt_repeat(orbit_rt_last_t *last, orbit_rt_event_t *ev)
{
    if (ev->id.len == last->len
        && ngx_memcmp(ev->id.data, last->id, last->len) == 0)
    {
        return 1;
    }

    if (ev->id.len <= ORBIT_RT_ID_MAX) {
        last->len = ev->id.len;
        ngx_memcpy(last->id, ev->id.data, ev->id.len);

    } else {
        last->len = 0;
    }

    return 0;
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


ngx_int_t
orbit_rt_inbox_event(ngx_str_t *tenant, ngx_str_t *conversation,
    ngx_str_t *audience, const char *name, ngx_str_t *data, ngx_log_t *log)
{
    ngx_str_t  to, rooms[2];
    u_char     buf[2][sizeof("conversation:") + 48];

    if (conversation->len == 0 || conversation->len > 48
        || tenant->len > 48)
    {
        return NGX_DECLINED;
    }

    rooms[0].data = buf[0];
    rooms[0].len = ngx_sprintf(buf[0], "conversation:%V", conversation)
                   - buf[0];
    rooms[1].data = buf[1];
    rooms[1].len = ngx_sprintf(buf[1], "tenant:%V", tenant) - buf[1];

    if (audience && audience->len) {
        to = *audience;

    } else {
        ngx_str_set(&to, "staff");
    }

    return orbit_rt_broadcast(tenant, rooms, 2, &to, name, data, NULL, log);
}
