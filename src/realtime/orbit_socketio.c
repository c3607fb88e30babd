/*
 * OrbitDesk real time: Socket.IO v4 over Engine.IO 4, WebSocket transport.
 *
 *   GET /socket.io/?EIO=4&transport=websocket   -> 101
 *   server: 0{"sid":..,"upgrades":[],"pingInterval":..,"pingTimeout":..,
 *           "maxPayload":..}
 *   client: 40/chat,{"token":"<JWT>"}  ->  40/chat,{"sid":".."}
 *                                      or  44/chat,{"message":".."}
 *   server: 2 every pingInterval; the client answers 3 within pingTimeout
 *
 * Events: join_conversation, leave_conversation, send_message (stored and
 * sent as POST /api/v1/messages does), typing, get_presence
 * (acknowledged with the tenant's online users); the server's come from
 * the rooms, "presence" among them (orbit_presence.h).
 *
 * A socket connected to /chat is in its tenant's room; join_conversation
 * puts it in a conversation's room once PostgreSQL says the conversation
 * is of that tenant and visible to the user.  Rooms' events arrive through
 * orbit_rooms (Redis) and go out as 42/chat,["<event>",<data>].
 *
 * Each socket has one state struct in its request's pool (the pool lives
 * as long as the socket); each membership check is one operation with a
 * pool of its own, destroyed when it is answered or the socket goes.
 *
 * Connection state recovery, as socket.io-client 4.6+ speaks it: the
 * CONNECT answer carries a "pid", every event its id in the tenant's event
 * log as a last argument, and a client that comes back sends {pid,
 * offset} with its token.  The session (user, tenant, rooms) is kept in
 * Redis for two minutes past the socket; if the log still holds the
 * offset, the rooms are joined again and what followed the offset is sent
 * before anything live (live events held meanwhile), and the client sees
 * socket.recovered.  Otherwise it gets a new pid, recovered is false, and
 * it refetches.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_orbit_module.h"
#include "core/orbit_validate.h"
#include "api/orbit_auth.h"
#include "realtime/orbit_rooms.h"
#include "channels/orbit_send.h"
#include "channels/orbit_channel.h"
#include "realtime/orbit_presence.h"
#include "realtime/orbit_socketio.h"


#define ORBIT_SIO_NSP          "/chat"
#define ORBIT_SIO_SID_BYTES    15          /* 20 base64url characters */
#define ORBIT_SIO_SID_LEN      20
#define ORBIT_SIO_ID_LEN       48
#define ORBIT_SIO_SESSION      "orbit:rt:session:"
#define ORBIT_SIO_SESSION_TTL  "120000"    /* ms kept past the socket */
#define ORBIT_SIO_REPLAY_MAX   "1000"      /* events sent on recovery */


typedef struct {
    orbit_ws_t                  *ws;
    orbit_socketio_conf_t       *conf;
    ngx_log_t                   *log;
    ngx_event_t                  ping;
    ngx_queue_t                  rooms;        /* conversation members */
    ngx_queue_t                  checks;       /* of rooms, in flight */
    ngx_queue_t                  sends;        /* send_message in flight */
    ngx_queue_t                  ops;          /* Redis reads in flight */
    orbit_room_member_t         *tenant_room;
    ngx_uint_t                   role;
    ngx_str_t                    sid;
    ngx_str_t                    user_id;
    ngx_str_t                    tenant_id;
    u_char                       sid_buf[ORBIT_SIO_SID_LEN + 1];
    u_char                       user_buf[ORBIT_SIO_ID_LEN];
    u_char                       tenant_buf[ORBIT_SIO_ID_LEN];
    ngx_str_t                    pid;          /* the session's */
    u_char                       pid_buf[ORBIT_SIO_SID_LEN + 1];
    ngx_str_t                    offset;       /* recovering from */
    u_char                       offset_buf[ORBIT_SIO_ID_LEN];
    ngx_pool_t                  *recovery;     /* its Redis commands */
    ngx_queue_t                  held;         /* live, while recovering */
    uint64_t                     replayed_ms;  /* the last missed event */
    uint64_t                     replayed_seq;
    orbit_rt_last_t              last;         /* the last event given */

    unsigned                     connected:1;  /* to /chat */
    unsigned                     recovering:1;
    unsigned                     awaiting_pong:1;
    unsigned                     pinged:1;     /* at least once */
} orbit_sio_t;


/* a join_conversation waiting for PostgreSQL */
/* a send_message being stored: it outlives its socket if need be */
typedef struct {
    ngx_queue_t                  queue;        /* in sio->sends */
    ngx_pool_t                  *pool;         /* its own */
    orbit_sio_t                 *sio;          /* NULL: the socket went */
    ngx_int_t                    ack;
    ngx_str_t                    tenant;
    ngx_log_t                   *log;
} orbit_sio_sending_t;


/* a live event that came while the missed ones were being fetched */
typedef struct {
    ngx_queue_t                  queue;
    orbit_ws_frame_t            *frame;
    uint64_t                     ms;
    uint64_t                     seq;
} orbit_sio_held_t;


/* a get_presence waiting for Redis */
typedef struct {
    ngx_queue_t                  queue;        /* in sio->ops */
    ngx_pool_t                  *pool;
    orbit_sio_t                 *sio;
    ngx_int_t                    ack;          /* -1: none wanted */
} orbit_sio_op_t;


static void orbit_sio_message(orbit_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);
static void orbit_sio_closed(orbit_ws_t *ws);
static void orbit_sio_packet(orbit_sio_t *sio, u_char *p, u_char *end);
static void orbit_sio_connect(orbit_sio_t *sio, json_t *auth);
static void orbit_sio_disconnect(orbit_sio_t *sio);
static void orbit_sio_event(orbit_sio_t *sio, ngx_int_t ack, json_t *args);
static void orbit_sio_join(orbit_sio_t *sio, ngx_int_t ack, json_t *arg);
static void orbit_sio_join_checked(orbit_rt_check_t *chk, ngx_int_t rc);
static void orbit_sio_leave(orbit_sio_t *sio, ngx_int_t ack, json_t *arg);
static void orbit_sio_typing(orbit_sio_t *sio, ngx_int_t ack, json_t *arg);
static void orbit_sio_presence(orbit_sio_t *sio, ngx_int_t ack);
static void orbit_sio_presence_found(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static void orbit_sio_alive(orbit_sio_t *sio, ngx_uint_t alive);
static const char *orbit_sio_conversation_id(json_t *arg);
static void orbit_sio_deliver(orbit_room_member_t *m, orbit_rt_event_t *ev);
static void orbit_sio_send_message(orbit_sio_t *sio, ngx_int_t ack,
    json_t *arg);
static void orbit_sio_ack_json(orbit_sio_t *sio, ngx_int_t ack,
    ngx_str_t *message, const char *error);
static void orbit_sio_message_stored(orbit_pg_query_t *q, PGresult *res);
static void orbit_sio_ack(orbit_sio_t *sio, ngx_int_t ack, const char *error);
static void orbit_sio_send(orbit_sio_t *sio, const char *fmt, ...);
static void orbit_sio_ping_handler(ngx_event_t *ev);
static ngx_int_t orbit_sio_joined(orbit_sio_t *sio);
static void orbit_sio_recover(orbit_sio_t *sio);
static void orbit_sio_session_found(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static void orbit_sio_missed_found(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static void orbit_sio_recovered(orbit_sio_t *sio, ngx_uint_t ok);
static void orbit_sio_session_save(orbit_sio_t *sio);
static void orbit_sio_session_saved(orbit_redis_cmd_t *cmd,
    redisReply *reply);
static orbit_ws_frame_t *orbit_sio_frame(ngx_str_t *name, ngx_str_t *data,
    ngx_str_t *id, ngx_log_t *log);
static ngx_int_t orbit_sio_id(ngx_str_t *id, uint64_t *ms, uint64_t *seq);
static ngx_int_t orbit_sio_room_joined(orbit_sio_t *sio, ngx_str_t *room);


static const orbit_ws_handler_t  orbit_sio_handler = {
    orbit_sio_message,
    orbit_sio_closed
};


ngx_int_t
orbit_socketio_handler(ngx_http_request_t *r, orbit_socketio_conf_t *conf)
{
    ngx_int_t     rc;
    ngx_str_t     eio, transport;
    orbit_sio_t  *sio;
    orbit_ws_t   *ws;

    /* Engine.IO 4 over WebSocket only: polling is answered 400 */

    if (ngx_http_arg(r, (u_char *) "EIO", 3, &eio) != NGX_OK
        || eio.len != 1 || eio.data[0] != '4'
        || ngx_http_arg(r, (u_char *) "transport", 9, &transport) != NGX_OK
        || transport.len != 9
        || ngx_strncmp(transport.data, "websocket", 9) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "socket.io: only EIO=4&transport=websocket is served");
        return NGX_HTTP_BAD_REQUEST;
    }

    sio = ngx_pcalloc(r->pool, sizeof(orbit_sio_t));
    if (sio == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_random_token((char *) sio->sid_buf, ORBIT_SIO_SID_BYTES) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sio->sid.data = sio->sid_buf;
    sio->sid.len = ORBIT_SIO_SID_LEN;
    sio->conf = conf;
    sio->log = r->connection->log;
    ngx_queue_init(&sio->rooms);
    ngx_queue_init(&sio->checks);
    ngx_queue_init(&sio->sends);
    ngx_queue_init(&sio->ops);
    ngx_queue_init(&sio->held);

    if (orbit_random_token((char *) sio->pid_buf, ORBIT_SIO_SID_BYTES) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sio->pid.data = sio->pid_buf;
    sio->pid.len = ORBIT_SIO_SID_LEN;

    rc = orbit_ws_upgrade(r, &conf->ws, &orbit_sio_handler, sio, &ws);
    if (rc != NGX_OK) {
        return rc;
    }

    sio->ws = ws;

    sio->ping.handler = orbit_sio_ping_handler;
    sio->ping.data = sio;
    sio->ping.log = sio->log;
    sio->ping.cancelable = 1;     /* a reload does not wait for it */

    orbit_sio_send(sio, "0{\"sid\":\"%V\",\"upgrades\":[],"
                   "\"pingInterval\":%M,\"pingTimeout\":%M,"
                   "\"maxPayload\":%uz}",
                   &sio->sid, conf->ping_interval, conf->ping_timeout,
                   conf->ws.max_message);

    ngx_add_timer(&sio->ping, conf->ping_interval);

    return NGX_DONE;
}


/* ----------------------------------------------------------- incoming */

static void
orbit_sio_message(orbit_ws_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    orbit_sio_t  *sio = ws->data;

    if (opcode != ORBIT_WS_OP_TEXT || len == 0) {
        /* binary attachments are not part of this gateway's events */
        orbit_ws_close(ws, ORBIT_WS_CLOSE_UNSUPPORTED,
                       "binary packets are not accepted");
        return;
    }

    switch (data[0]) {

    case '1':                                  /* close */
        orbit_ws_close(ws, ORBIT_WS_CLOSE_NORMAL, NULL);
        return;

    case '2':                                  /* a client's ping */
        orbit_sio_send(sio, "3%*s", len - 1, data + 1);
        return;

    case '3':                                  /* pong */
        if (sio->awaiting_pong) {
            sio->awaiting_pong = 0;

            if (sio->ping.timer_set) {
                ngx_del_timer(&sio->ping);
            }

            ngx_add_timer(&sio->ping, sio->conf->ping_interval);

            if (sio->connected) {
                orbit_sio_alive(sio, 1);
            }
        }
        return;

    case '4':                                  /* a Socket.IO packet */
        orbit_sio_packet(sio, data + 1, data + len);
        return;

    case '6':                                  /* noop */
        return;

    default:
        orbit_ws_close(ws, ORBIT_WS_CLOSE_PROTOCOL,
                       "not an Engine.IO packet");
        return;
    }
}


/* <type>[<nsp>,][<ackId>][JSON] */

static void
orbit_sio_packet(orbit_sio_t *sio, u_char *p, u_char *end)
{
    u_char        type, *nsp, *nsp_end;
    ngx_int_t     ack;
    json_t       *json;
    json_error_t  err;

    if (p == end || *p < '0' || *p > '6') {
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_PROTOCOL,
                       "not a Socket.IO packet");
        return;
    }

    type = *p++;

    if (type == '5' || type == '6') {
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_UNSUPPORTED,
                       "binary packets are not accepted");
        return;
    }

    nsp = (u_char *) "/";
    nsp_end = nsp + 1;

    if (p < end && *p == '/') {
        nsp = p;

        while (p < end && *p != ',') {
            p++;
        }

        nsp_end = p;

        if (p < end) {
            p++;
        }
    }

    ack = -1;

    if (p < end && *p >= '0' && *p <= '9') {
        ack = 0;

        while (p < end && *p >= '0' && *p <= '9') {
            if (ack > 100000000) {
                orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_PROTOCOL,
                               "ack id too large");
                return;
            }

            ack = ack * 10 + (*p++ - '0');
        }
    }

    json = NULL;

    if (p < end) {
        json = json_loadb((char *) p, end - p, JSON_DECODE_ANY, &err);

        if (json == NULL) {
            orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_PROTOCOL,
                           "the packet's payload is not JSON");
            return;
        }
    }

    if ((size_t) (nsp_end - nsp) != sizeof(ORBIT_SIO_NSP) - 1
        || ngx_strncmp(nsp, ORBIT_SIO_NSP, sizeof(ORBIT_SIO_NSP) - 1) != 0)
    {
        if (type == '0' && nsp_end - nsp == 1) {
            orbit_sio_send(sio, "44{\"message\":\"Invalid namespace\"}");

        } else if (type == '0') {
            orbit_sio_send(sio, "44%*s,{\"message\":\"Invalid namespace\"}",
                           (size_t) (nsp_end - nsp), nsp);
        }

        /* other packets of unknown namespaces are dropped, as servers do */
        goto done;
    }

    if (!sio->connected && type != '0') {
        /* the protocol's rule: a namespace is connected first */
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_POLICY,
                       "the first packet must be CONNECT");
        goto done;
    }

    switch (type) {

    case '0':
        orbit_sio_connect(sio, json);
        break;

    case '1':
        orbit_sio_disconnect(sio);
        break;

    case '2':
        orbit_sio_event(sio, ack, json);
        break;

    default:
        /* '3' acks: the server asks for none; '4' is the server's */
        break;
    }

done:

    if (json) {
        json_decref(json);
    }
}


static void
orbit_sio_connect(orbit_sio_t *sio, json_t *auth)
{
    size_t               len;
    const char          *token, *pid, *offset;
    orbit_secrets_t     *secrets;
    orbit_jwt_claims_t   claims;

    if (sio->connected || sio->recovering) {
        return;                 /* one CONNECT per socket */
    }

    token = json_is_object(auth)
            ? json_string_value(json_object_get(auth, "token")) : NULL;

    if (token && ngx_strncasecmp((u_char *) token, (u_char *) "Bearer ", 7)
                 == 0)
    {
        token += 7;
    }

    secrets = ngx_http_orbit_secrets();

    if (token == NULL || secrets == NULL
        || orbit_jwt_verify((u_char *) secrets->jwt_secret,
                            secrets->jwt_secret_len, token, ngx_time(),
                            &claims) != ORBIT_JWT_OK)
    {
        orbit_sio_send(sio, "44" ORBIT_SIO_NSP
                       ",{\"message\":\"Not authorized\"}");
        return;
    }

    sio->role = orbit_auth_role((u_char *) claims.role,
                                ngx_strlen(claims.role));

    if (claims.tenant_id[0] == '\0' || sio->role == 0
        || sio->role == ORBIT_ROLE_SUPERADMIN)
    {
        orbit_sio_send(sio, "44" ORBIT_SIO_NSP
                       ",{\"message\":\"A tenant user is required\"}");
        return;
    }

    len = ngx_strlen(claims.user_id);
    sio->user_id.data = sio->user_buf;
    sio->user_id.len = ngx_min(len, ORBIT_SIO_ID_LEN);
    ngx_memcpy(sio->user_buf, claims.user_id, sio->user_id.len);

    len = ngx_strlen(claims.tenant_id);
    sio->tenant_id.data = sio->tenant_buf;
    sio->tenant_id.len = ngx_min(len, ORBIT_SIO_ID_LEN);
    ngx_memcpy(sio->tenant_buf, claims.tenant_id, sio->tenant_id.len);

    pid = json_string_value(json_object_get(auth, "pid"));
    offset = json_string_value(json_object_get(auth, "offset"));

    if (pid && offset && ngx_strlen(pid) == ORBIT_SIO_SID_LEN
        && ngx_strlen(offset) < ORBIT_SIO_ID_LEN)
    {
        ngx_memcpy(sio->pid_buf, pid, ORBIT_SIO_SID_LEN);
        sio->offset.data = sio->offset_buf;
        sio->offset.len = ngx_strlen(offset);
        ngx_memcpy(sio->offset_buf, offset, sio->offset.len);

        orbit_sio_recover(sio);
        return;
    }

    if (orbit_sio_joined(sio) != NGX_OK) {
        return;
    }

    orbit_sio_send(sio, "40" ORBIT_SIO_NSP ",{\"sid\":\"%V\",\"pid\":\"%V\"}",
                   &sio->sid, &sio->pid);

    orbit_sio_session_save(sio);
}


/* in the tenant's room (a visitor: its own): connected, or a 44 sent */

static ngx_int_t
orbit_sio_joined(orbit_sio_t *sio)
{
    ngx_str_t  room;
    u_char     buf[sizeof("visitor:") + ORBIT_SIO_ID_LEN];

    /* a live-chat visitor is in its own room, not its tenant's */

    room.data = buf;
    room.len = (sio->role == ORBIT_ROLE_VISITOR
                ? ngx_sprintf(buf, "visitor:%V", &sio->user_id)
                : ngx_sprintf(buf, "tenant:%V", &sio->tenant_id))
               - buf;

    sio->tenant_room = orbit_room_join(&room, orbit_sio_deliver, sio,
                                       sio->log);

    if (sio->tenant_room == NULL) {
        orbit_sio_send(sio, "44" ORBIT_SIO_NSP
                       ",{\"message\":\"Real-time events are unavailable\"}");
        return NGX_ERROR;
    }

    sio->connected = 1;
    orbit_sio_alive(sio, 1);

    ngx_log_error(NGX_LOG_INFO, sio->log, 0,
                  "socket.io: user %V of tenant %V connected as %V",
                  &sio->user_id, &sio->tenant_id, &sio->sid);

    return NGX_OK;
}


/* leaves every room and drops the checks in flight */

static void
orbit_sio_disconnect(orbit_sio_t *sio)
{
    ngx_queue_t          *q;
    orbit_sio_held_t     *h;
    orbit_sio_op_t       *op;
    orbit_rt_check_t     *chk;
    orbit_room_member_t  *m;
    orbit_sio_sending_t  *snd;

    while (!ngx_queue_empty(&sio->checks)) {
        q = ngx_queue_head(&sio->checks);
        chk = ngx_queue_data(q, orbit_rt_check_t, queue);
        ngx_queue_remove(q);
        ngx_destroy_pool(chk->pool);        /* cancels its query */
    }

    while (!ngx_queue_empty(&sio->ops)) {
        q = ngx_queue_head(&sio->ops);
        op = ngx_queue_data(q, orbit_sio_op_t, queue);
        ngx_queue_remove(q);
        ngx_destroy_pool(op->pool);         /* cancels its query */
    }

    /* a message being stored is stored, and published, all the same */

    while (!ngx_queue_empty(&sio->sends)) {
        q = ngx_queue_head(&sio->sends);
        snd = ngx_queue_data(q, orbit_sio_sending_t, queue);
        ngx_queue_remove(q);
        snd->sio = NULL;
    }

    if (sio->recovery) {
        ngx_destroy_pool(sio->recovery);    /* cancels its command */
        sio->recovery = NULL;
    }

    while (!ngx_queue_empty(&sio->held)) {
        q = ngx_queue_head(&sio->held);
        ngx_queue_remove(q);
        h = ngx_queue_data(q, orbit_sio_held_t, queue);
        orbit_ws_frame_release(h->frame);
        ngx_free(h);
    }

    sio->recovering = 0;

    if (sio->connected) {
        orbit_sio_alive(sio, 0);
    }

    while (!ngx_queue_empty(&sio->rooms)) {
        q = ngx_queue_head(&sio->rooms);
        m = ngx_queue_data(q, orbit_room_member_t, link);
        ngx_queue_remove(q);
        orbit_room_leave(m);
    }

    if (sio->tenant_room) {
        orbit_room_leave(sio->tenant_room);
        sio->tenant_room = NULL;
    }

    sio->connected = 0;
}


static void
orbit_sio_event(orbit_sio_t *sio, ngx_int_t ack, json_t *args)
{
    const char  *name;
    json_t      *arg;

    name = json_is_array(args)
           ? json_string_value(json_array_get(args, 0)) : NULL;

    if (name == NULL) {
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_PROTOCOL,
                       "an event is an array led by its name");
        return;
    }

    arg = json_array_get(args, 1);

    if (sio->role == ORBIT_ROLE_VISITOR) {
        /* a live-chat visitor hears its own room, and sends over REST */
        orbit_sio_ack(sio, ack, "unknown event");
        return;
    }

    if (ngx_strcmp(name, "join_conversation") == 0) {
        orbit_sio_join(sio, ack, arg);

    } else if (ngx_strcmp(name, "leave_conversation") == 0) {
        orbit_sio_leave(sio, ack, arg);

    } else if (ngx_strcmp(name, "send_message") == 0) {
        orbit_sio_send_message(sio, ack, arg);

    } else if (ngx_strcmp(name, "typing") == 0) {
        orbit_sio_typing(sio, ack, arg);

    } else if (ngx_strcmp(name, "get_presence") == 0) {
        orbit_sio_presence(sio, ack);

    } else {
        /* an event nobody listens to: acknowledged as unknown */
        orbit_sio_ack(sio, ack, "unknown event");
    }
}


/* "id" or {"conversationId": "id"}: a UUID, or NULL */

static const char *
orbit_sio_conversation_id(json_t *arg)
{
    const char  *id;

    id = json_is_object(arg)
         ? json_string_value(json_object_get(arg, "conversationId"))
         : json_string_value(arg);

    if (id == NULL || !orbit_valid_uuid(id, ngx_strlen(id))) {
        return NULL;
    }

    return id;
}


static void
orbit_sio_join(orbit_sio_t *sio, ngx_int_t ack, json_t *arg)
{
    const char        *id;
    orbit_rt_check_t  *chk;

    id = orbit_sio_conversation_id(arg);

    if (id == NULL) {
        orbit_sio_ack(sio, ack, "conversationId must be a UUID");
        return;
    }

    chk = orbit_rt_check_conversation(id, &sio->tenant_id, &sio->user_id,
                                      sio->role, sizeof(ngx_int_t),
                                      orbit_sio_join_checked, sio, sio->log);
    if (chk == NULL) {
        orbit_sio_ack(sio, ack, "the conversation cannot be checked now");
        return;
    }

    *(ngx_int_t *) chk->ctx = ack;

    /* in the socket's checks: its closing cancels them */
    ngx_queue_insert_tail(&sio->checks, &chk->queue);
}


static void
orbit_sio_join_checked(orbit_rt_check_t *chk, ngx_int_t rc)
{
    orbit_sio_t  *sio = chk->data;

    ngx_int_t             ack;
    orbit_room_member_t  *m;

    ack = *(ngx_int_t *) chk->ctx;
    ngx_queue_remove(&chk->queue);

    if (rc == NGX_ERROR) {
        orbit_sio_ack(sio, ack, "the conversation cannot be checked now");
        return;
    }

    if (rc == NGX_DECLINED) {
        orbit_sio_ack(sio, ack, "conversation not found");
        return;
    }

    if (orbit_room_find(&sio->rooms, &chk->room) == NULL) {
        m = orbit_room_join(&chk->room, orbit_sio_deliver, sio, sio->log);

        if (m == NULL) {
            orbit_sio_ack(sio, ack, "the room cannot be joined now");
            return;
        }

        ngx_queue_insert_tail(&sio->rooms, &m->link);
        orbit_sio_session_save(sio);
    }

    orbit_sio_ack(sio, ack, NULL);
}


static void
orbit_sio_leave(orbit_sio_t *sio, ngx_int_t ack, json_t *arg)
{
    const char           *id;
    ngx_str_t             room;
    orbit_room_member_t  *m;
    u_char                buf[sizeof("conversation:") + ORBIT_SIO_ID_LEN];

    id = orbit_sio_conversation_id(arg);

    if (id == NULL) {
        orbit_sio_ack(sio, ack, "conversationId must be a UUID");
        return;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "conversation:%s", id) - buf;

    m = orbit_room_find(&sio->rooms, &room);

    if (m) {
        ngx_queue_remove(&m->link);
        orbit_room_leave(m);
        orbit_sio_session_save(sio);
    }

    orbit_sio_ack(sio, ack, NULL);
}


/* {conversationId, isTyping}: to the others in the room */

static void
orbit_sio_typing(orbit_sio_t *sio, ngx_int_t ack, json_t *arg)
{
    u_char               *p;
    const char           *id;
    ngx_str_t             room, data;
    orbit_room_member_t  *m;
    u_char                buf[sizeof("conversation:") + ORBIT_SIO_ID_LEN];
    u_char                json[256];

    id = orbit_sio_conversation_id(arg);

    if (id == NULL) {
        orbit_sio_ack(sio, ack, "conversationId must be a UUID");
        return;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "conversation:%s", id) - buf;

    m = orbit_room_find(&sio->rooms, &room);

    if (m == NULL) {
        orbit_sio_ack(sio, ack, "join the conversation first");
        return;
    }

    p = ngx_snprintf(json, sizeof(json),
                     "{\"conversationId\":\"%s\",\"userId\":\"%V\","
                     "\"isTyping\":%s}",
                     id, &sio->user_id,
                     json_is_false(json_object_get(arg, "isTyping"))
                     ? "false" : "true");

    data.data = json;
    data.len = p - json;

    if (orbit_rt_publish(&sio->tenant_id, &room, "typing", &data, &sio->sid,
                         sio->log)
        != NGX_OK)
    {
        orbit_sio_ack(sio, ack, "the event cannot be sent now");
        return;
    }

    /* and to the customer, where the channel shows it (Messenger) */
    orbit_outbound_typing(&sio->tenant_id, id,
                          !json_is_false(json_object_get(arg, "isTyping")));

    orbit_sio_ack(sio, ack, NULL);
}


/*
 * send_message {conversationId, content, type?, replyToId?, private?}: as
 * POST /api/v1/messages (orbit_send.h), acknowledged with {ok, message}
 * or {ok: false, error}.
 */

static void
orbit_sio_send_message(orbit_sio_t *sio, ngx_int_t ack, json_t *arg)
{
    const char           *why, **v;
    ngx_pool_t           *pool;
    orbit_pg_pool_t      *pg;
    orbit_pg_query_t     *q;
    orbit_sio_sending_t  *snd;
    char                  err[160];

    why = orbit_send_check(arg, err, sizeof(err));
    if (why) {
        orbit_sio_ack_json(sio, ack, NULL, why);
        return;
    }

    pg = ngx_http_orbit_pg();
    pool = ngx_create_pool(2048, ngx_cycle->log);

    if (pg == NULL || pool == NULL) {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        orbit_sio_ack_json(sio, ack, NULL, "messages cannot be sent now");
        return;
    }

    snd = ngx_pcalloc(pool, sizeof(orbit_sio_sending_t));
    q = orbit_pg_query_create(pool);

    if (snd == NULL || q == NULL
        || orbit_send_params(pool, arg, &sio->tenant_id, &sio->user_id,
                             orbit_auth_role_name(sio->role), &v)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        orbit_sio_ack_json(sio, ack, NULL, "messages cannot be sent now");
        return;
    }

    snd->pool = pool;
    snd->sio = sio;
    snd->ack = ack;
    snd->log = ngx_cycle->log;
    snd->tenant.data = ngx_pstrdup(pool, &sio->tenant_id);
    snd->tenant.len = sio->tenant_id.len;

    q->sql = orbit_send_sql;
    q->nparams = ORBIT_SEND_PARAMS;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_sio_message_stored;
    q->data = snd;

    if (snd->tenant.data == NULL || orbit_pg_query_send(pg, q) != NGX_OK) {
        ngx_destroy_pool(pool);
        orbit_sio_ack_json(sio, ack, NULL, "messages cannot be sent now");
        return;
    }

    ngx_queue_insert_tail(&sio->sends, &snd->queue);
}


static void
orbit_sio_message_stored(orbit_pg_query_t *q, PGresult *res)
{
    orbit_sio_sending_t  *snd = q->data;

    ngx_str_t     message;
    const char   *why;
    orbit_sio_t  *sio;

    sio = snd->sio;
    why = "the message cannot be stored now";
    ngx_str_null(&message);

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
    {
        orbit_send_publish(res, &snd->tenant, snd->log);

        if (ngx_strcmp(PQgetvalue(res, 0, 0), "201") == 0) {
            message.data = (u_char *) PQgetvalue(res, 0, 1);
            message.len = PQgetlength(res, 0, 1);
            why = NULL;

        } else {
            why = PQgetvalue(res, 0, 2);
        }

    } else if (res) {
        ngx_log_error(NGX_LOG_ERR, snd->log, 0,
                      "socket.io: send_message failed: %s",
                      PQresultErrorMessage(res));
    }

    if (sio) {
        ngx_queue_remove(&snd->queue);
        orbit_sio_ack_json(sio, snd->ack, message.len ? &message : NULL,
                           why);
    }

    ngx_destroy_pool(snd->pool);
}


/* 43/chat,<ack>[{"ok":true,"message":...}] or {"ok":false,"error":...} */

static void
orbit_sio_ack_json(orbit_sio_t *sio, ngx_int_t ack, ngx_str_t *message,
    const char *error)
{
    u_char  *buf, *p;
    size_t   len;

    if (ack < 0) {
        return;
    }

    len = sizeof("43" ORBIT_SIO_NSP ",[{\"ok\":false,\"error\":\"\"}]")
          + NGX_INT_T_LEN
          + (message ? message->len + sizeof(",\"message\":") : 0)
          + (error ? orbit_json_escaped_len(error, ngx_strlen(error)) : 0);

    buf = ngx_alloc(len, sio->log);
    if (buf == NULL) {
        return;
    }

    p = ngx_sprintf(buf, "43" ORBIT_SIO_NSP ",%i[{\"ok\":%s", ack,
                    error ? "false" : "true");

    if (message) {
        p = ngx_sprintf(p, ",\"message\":%V", message);
    }

    if (error) {
        p = ngx_cpymem(p, ",\"error\":\"", sizeof(",\"error\":\"") - 1);
        p = (u_char *) orbit_json_escape((char *) p, error,
                                         ngx_strlen(error));
        *p++ = '"';
    }

    p = ngx_cpymem(p, "}]", 2);

    (void) orbit_ws_send(sio->ws, ORBIT_WS_OP_TEXT, buf, p - buf);

    ngx_free(buf);
}


/* --------------------------------------------------------- outgoing */

static void
orbit_sio_deliver(orbit_room_member_t *m, orbit_rt_event_t *ev)
{
    orbit_sio_t  *sio = m->data;

    orbit_sio_held_t  *h;
    orbit_ws_frame_t  *f;

    if (ev->from.len == sio->sid.len
        && ngx_strncmp(ev->from.data, sio->sid.data, sio->sid.len) == 0)
    {
        return;                 /* the sender's own typing, say */
    }

    if (!orbit_rt_audience(&ev->to, sio->role, &sio->user_id)
        || orbit_rt_repeat(&sio->last, ev))
    {
        return;
    }

    f = ev->frames[ORBIT_RT_SOCKETIO];

    if (f == NULL) {
        /* framed once for all this worker's Socket.IO sockets */
        f = orbit_sio_frame(&ev->name, &ev->data, &ev->id, sio->log);
        if (f == NULL) {
            return;
        }

        ev->frames[ORBIT_RT_SOCKETIO] = f;
    }

    if (sio->recovering) {
        /* after the missed ones, unless it is one of them */
        h = ngx_alloc(sizeof(orbit_sio_held_t), sio->log);
        if (h == NULL) {
            return;
        }

        if (orbit_sio_id(&ev->id, &h->ms, &h->seq) != NGX_OK) {
            h->ms = (uint64_t) -1;
            h->seq = 0;
        }

        h->frame = orbit_ws_frame_ref(f);
        ngx_queue_insert_tail(&sio->held, &h->queue);
        return;
    }

    (void) orbit_ws_send_frame(sio->ws, f);
}


/* 42/chat,["<name>",<data>,"<id>"]: the id last, as recovery wants */

static orbit_ws_frame_t *
orbit_sio_frame(ngx_str_t *name, ngx_str_t *data, ngx_str_t *id,
    ngx_log_t *log)
{
    u_char            *buf, *p;
    size_t             len;
    orbit_ws_frame_t  *f;

    len = sizeof("42" ORBIT_SIO_NSP ",[\"\",,\"\"]") - 1
          + orbit_json_escaped_len((char *) name->data, name->len)
          + data->len
          + orbit_json_escaped_len((char *) id->data, id->len);

    buf = ngx_alloc(len, log);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_cpymem(buf, "42" ORBIT_SIO_NSP ",[\"",
                   sizeof("42" ORBIT_SIO_NSP ",[\"") - 1);
    p = (u_char *) orbit_json_escape((char *) p, (char *) name->data,
                                     name->len);
    *p++ = '"';
    *p++ = ',';
    p = ngx_cpymem(p, data->data, data->len);

    if (id->len) {
        *p++ = ',';
        *p++ = '"';
        p = (u_char *) orbit_json_escape((char *) p, (char *) id->data,
                                         id->len);
        *p++ = '"';
    }

    *p++ = ']';

    f = orbit_ws_frame(ORBIT_WS_OP_TEXT, buf, p - buf, log);
    ngx_free(buf);

    return f;
}


/* 43/chat,<id>[{"ok":true}] or [{"ok":false,"error":".."}] */

static void
orbit_sio_ack(orbit_sio_t *sio, ngx_int_t ack, const char *error)
{
    if (ack < 0) {
        return;
    }

    if (error == NULL) {
        orbit_sio_send(sio, "43" ORBIT_SIO_NSP ",%i[{\"ok\":true}]", ack);
        return;
    }

    /* the errors are this file's constants: no escaping needed */
    orbit_sio_send(sio, "43" ORBIT_SIO_NSP ",%i[{\"ok\":false,"
                   "\"error\":\"%s\"}]", ack, error);
}


static void
orbit_sio_send(orbit_sio_t *sio, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    buf[512];

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    (void) orbit_ws_send(sio->ws, ORBIT_WS_OP_TEXT, buf, p - buf);
}


/*
 * Every pingInterval a "2"; no "3" within pingTimeout closes the socket.
 * A socket that has not connected to /chat by its second ping is closed
 * too.
 */

static void
orbit_sio_ping_handler(ngx_event_t *ev)
{
    orbit_sio_t  *sio = ev->data;

    if (sio->awaiting_pong) {
        ngx_log_error(NGX_LOG_INFO, sio->log, 0,
                      "socket.io: no pong within pingTimeout: closing");
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_GOING_AWAY, "ping timeout");
        return;
    }

    if (!sio->connected && sio->pinged) {
        orbit_ws_close(sio->ws, ORBIT_WS_CLOSE_POLICY,
                       "no namespace connected");
        return;
    }

    orbit_sio_send(sio, "2");

    sio->pinged = 1;
    sio->awaiting_pong = 1;
    ngx_add_timer(&sio->ping, sio->conf->ping_timeout);
}


static void
orbit_sio_closed(orbit_ws_t *ws)
{
    orbit_sio_t  *sio = ws->data;

    if (sio->ping.timer_set) {
        ngx_del_timer(&sio->ping);
    }

    if (sio->connected) {
        /* kept for two minutes from now: the client may come back */
        orbit_sio_session_save(sio);
    }

    orbit_sio_disconnect(sio);
}


/* --------------------------------------------------------- recovery */

static void
orbit_sio_recover(orbit_sio_t *sio)
{
    u_char             *key;
    orbit_redis_t      *rd;
    orbit_redis_cmd_t  *cmd;
    const char         *argv[2];
    size_t              argvlen[2];

    sio->recovering = 1;

    rd = ngx_http_orbit_redis();

    sio->recovery = ngx_create_pool(1024, sio->log);
    if (sio->recovery == NULL || rd == NULL) {
        orbit_sio_recovered(sio, 0);
        return;
    }

    key = ngx_pnalloc(sio->recovery, sizeof(ORBIT_SIO_SESSION)
                                     + ORBIT_SIO_SID_LEN);
    cmd = orbit_redis_cmd_create(sio->recovery);

    if (key == NULL || cmd == NULL) {
        orbit_sio_recovered(sio, 0);
        return;
    }

    cmd->handler = orbit_sio_session_found;
    cmd->data = sio;

    argv[0] = "GET";
    argv[1] = (char *) key;
    argvlen[0] = 3;
    argvlen[1] = ngx_sprintf(key, ORBIT_SIO_SESSION "%V", &sio->pid) - key;

    if (orbit_redis_command(rd, cmd, 2, argv, argvlen) != NGX_OK) {
        orbit_sio_recovered(sio, 0);
    }
}


/* "user\ntenant\nroom\nroom..." of the socket that went */

static void
orbit_sio_session_found(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    orbit_sio_t  *sio = cmd->data;

    u_char               *p, *end, *nl, *log_key;
    ngx_str_t             line[2], room;
    ngx_uint_t            i;
    orbit_redis_t        *rd;
    orbit_redis_cmd_t    *xr;
    orbit_room_member_t  *m;
    const char           *argv[6];
    size_t                argvlen[6];

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        orbit_sio_recovered(sio, 0);     /* expired, or never ours */
        return;
    }

    p = (u_char *) reply->str;
    end = p + reply->len;

    for (i = 0; i < 2; i++) {
        nl = ngx_strlchr(p, end, '\n');
        line[i].data = p;
        line[i].len = (nl ? nl : end) - p;
        p = nl ? nl + 1 : end;
    }

    /* another user's session is not taken over, whatever pid says */

    if (line[0].len != sio->user_id.len || line[1].len != sio->tenant_id.len
        || ngx_strncmp(line[0].data, sio->user_id.data, line[0].len) != 0
        || ngx_strncmp(line[1].data, sio->tenant_id.data, line[1].len) != 0)
    {
        orbit_sio_recovered(sio, 0);
        return;
    }

    if (orbit_sio_joined(sio) != NGX_OK) {
        sio->recovering = 0;
        ngx_destroy_pool(sio->recovery);
        sio->recovery = NULL;
        return;
    }

    /* its conversation rooms, checked when they were joined */

    while (p < end) {
        nl = ngx_strlchr(p, end, '\n');
        room.data = p;
        room.len = (nl ? nl : end) - p;
        p = nl ? nl + 1 : end;

        if (room.len == 0 || orbit_room_find(&sio->rooms, &room)) {
            continue;
        }

        m = orbit_room_join(&room, orbit_sio_deliver, sio, sio->log);
        if (m) {
            ngx_queue_insert_tail(&sio->rooms, &m->link);
        }
    }

    /* what followed the offset: from it, so that we know it is still kept */

    rd = ngx_http_orbit_redis();
    xr = orbit_redis_cmd_create(sio->recovery);
    log_key = ngx_pnalloc(sio->recovery, sizeof("orbit:rt:log:")
                                         + sio->tenant_id.len);

    if (rd == NULL || xr == NULL || log_key == NULL) {
        orbit_sio_recovered(sio, 0);
        return;
    }

    xr->handler = orbit_sio_missed_found;
    xr->data = sio;

    argv[0] = "XRANGE";
    argv[1] = (char *) log_key;
    argv[2] = (char *) sio->offset.data;
    argv[3] = "+";
    argv[4] = "COUNT";
    argv[5] = "1001";

    argvlen[0] = 6;
    argvlen[1] = ngx_sprintf(log_key, "orbit:rt:log:%V", &sio->tenant_id)
                 - log_key;
    argvlen[2] = sio->offset.len;
    argvlen[3] = 1;
    argvlen[4] = 5;
    argvlen[5] = 4;

    if (orbit_redis_command(rd, xr, 6, argv, argvlen) != NGX_OK) {
        orbit_sio_recovered(sio, 0);
    }
}


static void
orbit_sio_missed_found(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    orbit_sio_t  *sio = cmd->data;

    size_t             i, k;
    ngx_str_t          id, room, to, name, data, *field;
    redisReply        *e, *f;
    orbit_ws_frame_t  *fr;

    /*
     * The offset itself comes first when the log still holds it; more
     * than a thousand missed, and the client had better refetch.
     */

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0 || reply->elements > 1000
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[0]->elements != 2
        || reply->element[0]->element[0]->len != sio->offset.len
        || ngx_strncmp(reply->element[0]->element[0]->str,
                       sio->offset.data, sio->offset.len) != 0)
    {
        orbit_sio_recovered(sio, 0);
        return;
    }

    orbit_sio_send(sio, "40" ORBIT_SIO_NSP ",{\"sid\":\"%V\",\"pid\":\"%V\"}",
                   &sio->sid, &sio->pid);

    for (i = 1; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[1]->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        id.data = (u_char *) e->element[0]->str;
        id.len = e->element[0]->len;
        ngx_str_null(&room);
        ngx_str_null(&to);
        ngx_str_null(&name);
        ngx_str_null(&data);

        f = e->element[1];

        for (k = 0; k + 1 < f->elements; k += 2) {
            if (f->element[k]->len != 1) {
                continue;
            }

            switch (f->element[k]->str[0]) {
            case 'r': field = &room; break;
            case 't': field = &to; break;
            case 'n': field = &name; break;
            case 'd': field = &data; break;
            default: continue;
            }

            field->data = (u_char *) f->element[k + 1]->str;
            field->len = f->element[k + 1]->len;
        }

        if (name.len == 0 || data.len == 0
            || orbit_sio_room_joined(sio, &room) != NGX_OK
            || !orbit_rt_audience(&to, sio->role, &sio->user_id))
        {
            continue;
        }

        fr = orbit_sio_frame(&name, &data, &id, sio->log);
        if (fr) {
            (void) orbit_ws_send_frame(sio->ws, fr);
            orbit_ws_frame_release(fr);
        }
    }

    /* the replay's last id: what was held and is older, it already had */

    e = reply->element[reply->elements - 1];
    id.data = (u_char *) e->element[0]->str;
    id.len = e->element[0]->len;

    if (orbit_sio_id(&id, &sio->replayed_ms, &sio->replayed_seq) != NGX_OK) {
        sio->replayed_ms = 0;
        sio->replayed_seq = 0;
    }

    ngx_log_error(NGX_LOG_INFO, sio->log, 0,
                  "socket.io: %V recovered session %V, %uz missed events",
                  &sio->sid, &sio->pid, reply->elements - 1);

    orbit_sio_recovered(sio, 1);
}


/* the end of a recovery: the held live events go out, in order */

static void
orbit_sio_recovered(orbit_sio_t *sio, ngx_uint_t ok)
{
    ngx_queue_t          *q;
    orbit_sio_held_t     *h;
    orbit_room_member_t  *m;

    if (sio->recovery) {
        /* also when called from one of its commands: they are done */
        ngx_destroy_pool(sio->recovery);
        sio->recovery = NULL;
    }

    if (!ok) {
        /* a fresh session: a new pid, no rooms but the tenant's */

        while (!ngx_queue_empty(&sio->rooms)) {
            q = ngx_queue_head(&sio->rooms);
            m = ngx_queue_data(q, orbit_room_member_t, link);
            ngx_queue_remove(q);
            orbit_room_leave(m);
        }

        sio->replayed_ms = 0;
        sio->replayed_seq = 0;

        if (orbit_random_token((char *) sio->pid_buf, ORBIT_SIO_SID_BYTES)
            != 0
            || (sio->tenant_room == NULL && orbit_sio_joined(sio) != NGX_OK))
        {
            sio->recovering = 0;
            orbit_sio_disconnect(sio);
            return;
        }

        orbit_sio_send(sio, "40" ORBIT_SIO_NSP
                       ",{\"sid\":\"%V\",\"pid\":\"%V\"}",
                       &sio->sid, &sio->pid);
    }

    sio->recovering = 0;

    while (!ngx_queue_empty(&sio->held)) {
        q = ngx_queue_head(&sio->held);
        ngx_queue_remove(q);
        h = ngx_queue_data(q, orbit_sio_held_t, queue);

        if (h->ms > sio->replayed_ms
            || (h->ms == sio->replayed_ms && h->seq > sio->replayed_seq))
        {
            (void) orbit_ws_send_frame(sio->ws, h->frame);
        }

        orbit_ws_frame_release(h->frame);
        ngx_free(h);
    }

    orbit_sio_session_save(sio);
}


/* SET orbit:rt:session:<pid> "user\ntenant\nrooms..." PX 120000 */

static void
orbit_sio_session_save(orbit_sio_t *sio)
{
    u_char               *key, *val, *p;
    size_t                len;
    ngx_pool_t           *pool;
    ngx_queue_t          *q;
    ngx_str_t            *name;
    orbit_redis_t        *rd;
    orbit_redis_cmd_t    *cmd;
    orbit_room_member_t  *m;
    const char           *argv[5];
    size_t                argvlen[5];

    rd = ngx_http_orbit_redis();
    if (rd == NULL) {
        return;
    }

    len = sio->user_id.len + sio->tenant_id.len + 2;

    for (q = ngx_queue_head(&sio->rooms);
         q != ngx_queue_sentinel(&sio->rooms);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, orbit_room_member_t, link);
        len += orbit_room_name(m)->len + 1;
    }

    /* saved also as the socket goes: not with the connection's log */
    pool = ngx_create_pool(ngx_max(len + 512, 1024), ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    key = ngx_pnalloc(pool, sizeof(ORBIT_SIO_SESSION) + ORBIT_SIO_SID_LEN);
    val = ngx_pnalloc(pool, len);
    cmd = orbit_redis_cmd_create(pool);

    if (key == NULL || val == NULL || cmd == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    p = ngx_sprintf(val, "%V\n%V", &sio->user_id, &sio->tenant_id);

    for (q = ngx_queue_head(&sio->rooms);
         q != ngx_queue_sentinel(&sio->rooms);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, orbit_room_member_t, link);
        name = orbit_room_name(m);
        p = ngx_sprintf(p, "\n%V", name);
    }

    cmd->handler = orbit_sio_session_saved;
    cmd->data = pool;

    argv[0] = "SET";
    argv[1] = (char *) key;
    argv[2] = (char *) val;
    argv[3] = "PX";
    argv[4] = ORBIT_SIO_SESSION_TTL;

    argvlen[0] = 3;
    argvlen[1] = ngx_sprintf(key, ORBIT_SIO_SESSION "%V", &sio->pid) - key;
    argvlen[2] = p - val;
    argvlen[3] = 2;
    argvlen[4] = sizeof(ORBIT_SIO_SESSION_TTL) - 1;

    if (orbit_redis_command(rd, cmd, 5, argv, argvlen) != NGX_OK) {
        ngx_destroy_pool(pool);
    }
}


static void
orbit_sio_session_saved(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_pool_t  *pool = cmd->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                      "socket.io: session not saved, a reconnect will not "
                      "recover it");
    }

    ngx_destroy_pool(pool);
}


/* a stream id "<ms>-<seq>" */

static ngx_int_t
orbit_sio_id(ngx_str_t *id, uint64_t *ms, uint64_t *seq)
{
    u_char  *dash;
    off_t    a, b;

    dash = ngx_strlchr(id->data, id->data + id->len, '-');
    if (dash == NULL) {
        return NGX_ERROR;
    }

    a = ngx_atoof(id->data, dash - id->data);
    b = ngx_atoof(dash + 1, id->data + id->len - dash - 1);

    if (a < 0 || b < 0) {
        return NGX_ERROR;
    }

    *ms = a;
    *seq = b;

    return NGX_OK;
}


static ngx_int_t
orbit_sio_room_joined(orbit_sio_t *sio, ngx_str_t *rooms)
{
    u_char     *p, *end, *nl;
    ngx_str_t   room, *tenant;

    /* an event's rooms, "\n"-separated: is the socket in one of them */

    tenant = sio->tenant_room ? orbit_room_name(sio->tenant_room) : NULL;

    p = rooms->data;
    end = p + rooms->len;

    while (p < end) {
        nl = ngx_strlchr(p, end, '\n');
        room.data = p;
        room.len = (nl ? nl : end) - p;
        p = nl ? nl + 1 : end;

        if (tenant && tenant->len == room.len
            && ngx_strncmp(tenant->data, room.data, room.len) == 0)
        {
            return NGX_OK;
        }

        if (orbit_room_find(&sio->rooms, &room)) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* --------------------------------------------------------- presence */

/* online until the next heartbeat could have come and gone, or gone */

static void
orbit_sio_alive(orbit_sio_t *sio, ngx_uint_t alive)
{
    if (sio->role == ORBIT_ROLE_VISITOR) {
        return;                 /* presence is the agents' */
    }

    orbit_presence_update(&sio->tenant_id, &sio->user_id, &sio->sid,
                          alive ? sio->conf->ping_interval
                                  + sio->conf->ping_timeout + 5000
                                : 0,
                          sio->log);
}


static void
orbit_sio_presence(orbit_sio_t *sio, ngx_int_t ack)
{
    ngx_pool_t         *pool;
    orbit_redis_cmd_t  *cmd;
    orbit_sio_op_t     *op;

    pool = ngx_create_pool(1024, sio->log);
    if (pool == NULL) {
        return;
    }

    op = ngx_pcalloc(pool, sizeof(orbit_sio_op_t));
    cmd = orbit_redis_cmd_create(pool);

    if (op == NULL || cmd == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    op->pool = pool;
    op->sio = sio;
    op->ack = ack;

    cmd->handler = orbit_sio_presence_found;
    cmd->data = op;

    if (orbit_presence_list(&sio->tenant_id, pool, cmd) != NGX_OK) {
        ngx_destroy_pool(pool);
        orbit_sio_ack(sio, ack, "presence is unavailable now");
        return;
    }

    /* in the socket's operations: its closing cancels the command */
    ngx_queue_insert_tail(&sio->ops, &op->queue);
}


/* 43/chat,<ack>[{"ok":true,"online":["<userId>",...]}] */

static void
orbit_sio_presence_found(orbit_redis_cmd_t *cmd, redisReply *reply)
{
    orbit_sio_op_t  *op = cmd->data;

    u_char       *buf, *p;
    size_t        i, len;
    orbit_sio_t  *sio;

    sio = op->sio;
    ngx_queue_remove(&op->queue);

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        orbit_sio_ack(sio, op->ack, "presence is unavailable now");
        goto done;
    }

    if (op->ack < 0) {
        goto done;
    }

    len = sizeof("43" ORBIT_SIO_NSP ",[{\"ok\":true,\"online\":[]}]")
          + NGX_INT_T_LEN;

    for (i = 0; i < reply->elements; i++) {
        len += orbit_json_escaped_len(reply->element[i]->str,
                                      reply->element[i]->len) + 3;
    }

    buf = ngx_pnalloc(op->pool, len);
    if (buf == NULL) {
        goto done;
    }

    p = ngx_sprintf(buf, "43" ORBIT_SIO_NSP ",%i[{\"ok\":true,\"online\":[",
                    op->ack);

    for (i = 0; i < reply->elements; i++) {
        if (i) {
            *p++ = ',';
        }

        *p++ = '"';
        p = (u_char *) orbit_json_escape((char *) p, reply->element[i]->str,
                                         reply->element[i]->len);
        *p++ = '"';
    }

    p = ngx_cpymem(p, "]}]", 3);

    (void) orbit_ws_send(sio->ws, ORBIT_WS_OP_TEXT, buf, p - buf);

done:

    ngx_destroy_pool(op->pool);
}
