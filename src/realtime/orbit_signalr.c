/*
 * OrbitDesk real time: the ASP.NET Core SignalR JSON hub protocol,
 * WebSockets transport, for @microsoft/signalr clients.
 *
 *   POST <hub>/negotiate?negotiateVersion=1   Authorization: Bearer <JWT>
 *     -> {"connectionId":..,"connectionToken":..,"negotiateVersion":1,
 *         "availableTransports":[{"transport":"WebSockets",..}]}
 *   GET <hub>?id=<connectionToken>            (WebSocket upgrade) -> 101
 *   GET <hub>?access_token=<JWT>              (skipNegotiation)   -> 101
 *   client: {"protocol":"json","version":1}\x1e  server: {}\x1e
 *   then records of JSON, each ended by 0x1E, both ways; the server sends
 *   {"type":6} every keepalive and closes after client_timeout of silence.
 *
 * The connection token is not stored but signed: an HMAC-SHA256, keyed
 * with the secrets' JWT secret, over "signalr1|connectionId|userId|
 * tenantId|role|expiry" (30 s, and never past the JWT's own expiry), the
 * token being base64url(that) "." hex(HMAC).  The WebSocket may land on
 * another worker or another node than the negotiation did; any of them
 * verifies the token alone, with no table to share.  The price: a second
 * WebSocket with the same token within its 30 s is not refused (409).
 * With negotiateVersion 0 the token is also the connectionId the client
 * sends; the id others see (typing events) is always the short one inside.
 *
 * Hub methods: JoinTenantGroup(tenantId), JoinChatSession(sessionId)
 * (checked in PostgreSQL as Socket.IO's join_conversation), LeaveChatSession
 * (sessionId), SendTypingIndicator(sessionId, isTyping).  Rooms' events go
 * out as {"type":1,"target":"<event>","arguments":[<data>]}, framed once
 * per event for all of this worker's SignalR connections.
 *
 * Memory as in orbit_socketio.c: one state struct in the request's pool,
 * the record being joined apart (ngx_alloc), each membership check an
 * operation with a pool of its own.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_orbit_module.h"
#include "core/orbit_validate.h"
#include "api/orbit_auth.h"
#include "realtime/orbit_rooms.h"
#include "realtime/orbit_signalr.h"


#define ORBIT_SR_RS            0x1e        /* a record's end */
#define ORBIT_SR_CONN_BYTES    16          /* 22 base64url characters */
#define ORBIT_SR_CONN_LEN      22          /* and orbit_random_token's
                                              nul */
#define ORBIT_SR_ID_LEN        48
#define ORBIT_SR_TOKEN_TTL     30          /* s: negotiate to WebSocket */
#define ORBIT_SR_TOKEN_TAG     "signalr1"
#define ORBIT_SR_PAYLOAD_MAX   256
#define ORBIT_SR_TOKEN_MAX     (ORBIT_SR_PAYLOAD_MAX * 4 / 3 + 4          \
                                + ORBIT_SHA256_HEX_LEN)
#define ORBIT_SR_INVOCATION_MAX  64        /* bytes of an invocationId */

#define ORBIT_SR_TRANSPORTS                                                  \
    "\"availableTransports\":[{\"transport\":\"WebSockets\","               \
    "\"transferFormats\":[\"Text\",\"Binary\"]}]}"


/* who a connection is: from the JWT or from the connection token */
typedef struct {
    ngx_uint_t                   role;
    time_t                       expires;      /* the JWT's */
    ngx_str_t                    conn_id;
    ngx_str_t                    user_id;
    ngx_str_t                    tenant_id;
    u_char                       conn_buf[ORBIT_SR_CONN_LEN + 1];
    u_char                       user_buf[ORBIT_SR_ID_LEN];
    u_char                       tenant_buf[ORBIT_SR_ID_LEN];
} orbit_sr_who_t;


typedef struct {
    orbit_ws_t                  *ws;
    orbit_signalr_conf_t        *conf;
    ngx_log_t                   *log;
    ngx_event_t                  ping;         /* every keepalive */
    ngx_event_t                  timeout;      /* the client's silence */
    ngx_queue_t                  rooms;        /* our members */
    ngx_queue_t                  ops;          /* room checks in flight */
    u_char                      *rec;          /* a record being joined */
    size_t                       rec_len;
    size_t                       rec_size;
    orbit_sr_who_t               who;
    orbit_rt_last_t              last;         /* the last event given */

    unsigned                     handshaken:1;
    unsigned                     closing:1;
} orbit_sr_t;


static ngx_int_t orbit_sr_negotiate(ngx_http_request_t *r);
static ngx_int_t orbit_sr_credentials(ngx_http_request_t *r,
    orbit_sr_who_t *who);
static ngx_int_t orbit_sr_who_set(orbit_sr_who_t *who, const char *user,
    size_t user_len, const char *tenant, size_t tenant_len,
    ngx_uint_t role);
static ngx_int_t orbit_sr_token_make(ngx_http_request_t *r,
    orbit_sr_who_t *who, ngx_str_t *token);
static ngx_int_t orbit_sr_token_verify(ngx_str_t *token,
    orbit_sr_who_t *who);
static void orbit_sr_message(orbit_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);
static void orbit_sr_closed(orbit_ws_t *ws);
static ngx_int_t orbit_sr_keep(orbit_sr_t *sr, u_char *p, size_t len);
static void orbit_sr_record(orbit_sr_t *sr, u_char *p, size_t len);
static void orbit_sr_handshake(orbit_sr_t *sr, json_t *json);
static void orbit_sr_invocation(orbit_sr_t *sr, json_t *json);
static void orbit_sr_join_tenant(orbit_sr_t *sr, const char *inv,
    json_t *args);
static void orbit_sr_join_session(orbit_sr_t *sr, const char *inv,
    json_t *args);
static void orbit_sr_join_checked(orbit_rt_check_t *chk, ngx_int_t rc);
static void orbit_sr_leave_session(orbit_sr_t *sr, const char *inv,
    json_t *args);
static void orbit_sr_typing(orbit_sr_t *sr, const char *inv, json_t *args);
static const char *orbit_sr_session_id(json_t *args);
static ngx_int_t orbit_sr_join(orbit_sr_t *sr, ngx_str_t *room);
static void orbit_sr_deliver(orbit_room_member_t *m, orbit_rt_event_t *ev);
static void orbit_sr_completion(orbit_sr_t *sr, const char *inv,
    const char *error);
static void orbit_sr_send(orbit_sr_t *sr, const char *fmt, ...);
static void orbit_sr_fail(orbit_sr_t *sr, ngx_uint_t code,
    const char *error);
static void orbit_sr_close(orbit_sr_t *sr, ngx_uint_t code,
    const char *reason);
static void orbit_sr_ping_handler(ngx_event_t *ev);
static void orbit_sr_timeout_handler(ngx_event_t *ev);
static void orbit_sr_leave_all(orbit_sr_t *sr);
static char *orbit_sr_cstr(ngx_pool_t *pool, ngx_str_t *s);


static const orbit_ws_handler_t  orbit_sr_handler = {
    orbit_sr_message,
    orbit_sr_closed
};


ngx_int_t
orbit_signalr_handler(ngx_http_request_t *r, orbit_signalr_conf_t *conf)
{
    ngx_int_t    rc;
    ngx_str_t    id;
    orbit_sr_t  *sr;
    orbit_ws_t  *ws;

    if (r->uri.len >= sizeof("/negotiate") - 1
        && ngx_strncmp(r->uri.data + r->uri.len - (sizeof("/negotiate") - 1),
                       "/negotiate", sizeof("/negotiate") - 1) == 0)
    {
        return orbit_sr_negotiate(r);
    }

    sr = ngx_pcalloc(r->pool, sizeof(orbit_sr_t));
    if (sr == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "id", 2, &id) == NGX_OK) {

        /* negotiated: the token says who, whatever else came along */

        if (orbit_sr_token_verify(&id, &sr->who) != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "signalr: unknown or expired connection token");
            return NGX_HTTP_NOT_FOUND;
        }

    } else {

        /* skipNegotiation: the JWT itself, and a new connection id */

        rc = orbit_sr_credentials(r, &sr->who);
        if (rc != NGX_OK) {
            return rc;
        }

        if (orbit_random_token((char *) sr->who.conn_buf,
                               ORBIT_SR_CONN_BYTES)
            != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    sr->conf = conf;
    sr->log = r->connection->log;
    ngx_queue_init(&sr->rooms);
    ngx_queue_init(&sr->ops);

    rc = orbit_ws_upgrade(r, &conf->ws, &orbit_sr_handler, sr, &ws);
    if (rc != NGX_OK) {
        return rc;
    }

    sr->ws = ws;

    sr->ping.handler = orbit_sr_ping_handler;
    sr->ping.data = sr;
    sr->ping.log = sr->log;
    sr->ping.cancelable = 1;     /* a reload does not wait for them */

    sr->timeout.handler = orbit_sr_timeout_handler;
    sr->timeout.data = sr;
    sr->timeout.log = sr->log;
    sr->timeout.cancelable = 1;

    /* the handshake too must come within the client timeout */
    ngx_add_timer(&sr->timeout, conf->client_timeout);

    ngx_log_error(NGX_LOG_INFO, sr->log, 0,
                  "signalr: user %V of tenant %V connected as %V",
                  &sr->who.user_id, &sr->who.tenant_id, &sr->who.conn_id);

    return NGX_DONE;
}


/* ---------------------------------------------------------- negotiate */

static ngx_int_t
orbit_sr_negotiate(ngx_http_request_t *r)
{
    u_char          *buf, *p;
    size_t           len;
    ngx_int_t        rc, version;
    ngx_str_t        token, arg;
    ngx_buf_t       *b;
    ngx_chain_t      out;
    orbit_sr_who_t  *who;

    if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    who = ngx_pcalloc(r->pool, sizeof(orbit_sr_who_t));
    if (who == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = orbit_sr_credentials(r, who);
    if (rc != NGX_OK) {
        return rc;
    }

    version = 0;

    if (ngx_http_arg(r, (u_char *) "negotiateVersion", 16, &arg) == NGX_OK) {
        version = ngx_atoi(arg.data, arg.len);
        version = (version >= 1) ? 1 : 0;    /* what we speak */
    }

    if (orbit_random_token((char *) who->conn_buf, ORBIT_SR_CONN_BYTES) != 0
        || orbit_sr_token_make(r, who, &token) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"connectionId\":\"\",\"connectionToken\":\"\","
                 "\"negotiateVersion\":1,") - 1
          + ORBIT_SR_CONN_LEN + token.len + sizeof(ORBIT_SR_TRANSPORTS) - 1;

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (version == 1) {
        p = ngx_sprintf(buf, "{\"connectionId\":\"%V\","
                        "\"connectionToken\":\"%V\",\"negotiateVersion\":1,"
                        ORBIT_SR_TRANSPORTS, &who->conn_id, &token);

    } else {
        /* version 0: the client sends the connectionId as its id */
        p = ngx_sprintf(buf, "{\"connectionId\":\"%V\","
                        "\"negotiateVersion\":0," ORBIT_SR_TRANSPORTS,
                        &token);
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = p - buf;
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

    b->pos = buf;
    b->last = p;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The JWT of "Authorization: Bearer" or of the access_token argument
 * (browsers cannot set headers on a WebSocket).  NGX_OK, or the status to
 * refuse with.
 */

static ngx_int_t
orbit_sr_credentials(ngx_http_request_t *r, orbit_sr_who_t *who)
{
    u_char              *dst, *src;
    ngx_str_t            token, arg;
    ngx_uint_t           role;
    ngx_table_elt_t     *h;
    orbit_secrets_t     *secrets;
    orbit_jwt_claims_t   claims;

    ngx_str_null(&token);
    h = r->headers_in.authorization;

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        token.data = h->value.data + sizeof("Bearer ") - 1;
        token.len = h->value.len - (sizeof("Bearer ") - 1);

    } else if (ngx_http_arg(r, (u_char *) "access_token", 12, &arg)
               == NGX_OK && arg.len)
    {
        token.data = ngx_pnalloc(r->pool, arg.len);
        if (token.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = token.data;
        src = arg.data;
        ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);
        token.len = dst - token.data;
    }

    if (token.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "signalr: no access token");
        return NGX_HTTP_UNAUTHORIZED;
    }

    /* a C string for the verifier */
    token.data = (u_char *) orbit_sr_cstr(r->pool, &token);
    if (token.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    secrets = ngx_http_orbit_secrets();

    if (secrets == NULL
        || orbit_jwt_verify((u_char *) secrets->jwt_secret,
                            secrets->jwt_secret_len, (char *) token.data,
                            ngx_time(), &claims) != ORBIT_JWT_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "signalr: an invalid access token");
        return NGX_HTTP_UNAUTHORIZED;
    }

    role = orbit_auth_role((u_char *) claims.role, ngx_strlen(claims.role));

    if (claims.tenant_id[0] == '\0' || role == 0
        || role == ORBIT_ROLE_SUPERADMIN || role == ORBIT_ROLE_VISITOR)
    {
        /* the hub's groups are a tenant's, and its users' */
        return NGX_HTTP_FORBIDDEN;
    }

    if (orbit_sr_who_set(who, claims.user_id, ngx_strlen(claims.user_id),
                         claims.tenant_id, ngx_strlen(claims.tenant_id),
                         role)
        != NGX_OK)
    {
        return NGX_HTTP_UNAUTHORIZED;
    }

    who->expires = claims.exp;

    return NGX_OK;
}


static ngx_int_t
orbit_sr_who_set(orbit_sr_who_t *who, const char *user, size_t user_len,
    const char *tenant, size_t tenant_len, ngx_uint_t role)
{
    if (user_len == 0 || user_len > ORBIT_SR_ID_LEN
        || tenant_len == 0 || tenant_len > ORBIT_SR_ID_LEN
        || ngx_strlchr((u_char *) user, (u_char *) user + user_len, '|')
        || ngx_strlchr((u_char *) tenant, (u_char *) tenant + tenant_len,
                       '|'))
    {
        return NGX_ERROR;
    }

    who->role = role;

    who->user_id.data = who->user_buf;
    who->user_id.len = user_len;
    ngx_memcpy(who->user_buf, user, user_len);

    who->tenant_id.data = who->tenant_buf;
    who->tenant_id.len = tenant_len;
    ngx_memcpy(who->tenant_buf, tenant, tenant_len);

    who->conn_id.data = who->conn_buf;
    who->conn_id.len = ORBIT_SR_CONN_LEN;

    return NGX_OK;
}


/* base64url("signalr1|conn|user|tenant|role|expiry") "." hex(HMAC) */

static ngx_int_t
orbit_sr_token_make(ngx_http_request_t *r, orbit_sr_who_t *who,
    ngx_str_t *token)
{
    time_t            expires;
    ngx_str_t         payload;
    orbit_secrets_t  *secrets;
    u_char            buf[ORBIT_SR_PAYLOAD_MAX];
    char              mac[ORBIT_SHA256_HEX_LEN + 1];

    secrets = ngx_http_orbit_secrets();
    if (secrets == NULL) {
        return NGX_ERROR;
    }

    expires = ngx_time() + ORBIT_SR_TOKEN_TTL;

    if (who->expires && who->expires < expires) {
        expires = who->expires;
    }

    payload.data = buf;
    payload.len = ngx_snprintf(buf, sizeof(buf),
                               ORBIT_SR_TOKEN_TAG "|%V|%V|%V|%s|%T",
                               &who->conn_id, &who->user_id,
                               &who->tenant_id,
                               orbit_auth_role_name(who->role), expires)
                  - buf;

    if (orbit_hmac_sha256_hex(mac, secrets->jwt_secret,
                              secrets->jwt_secret_len, payload.data,
                              payload.len)
        != 0)
    {
        return NGX_ERROR;
    }

    token->data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(payload.len)
                                       + 1 + ORBIT_SHA256_HEX_LEN);
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64url(token, &payload);

    token->data[token->len++] = '.';
    ngx_memcpy(token->data + token->len, mac, ORBIT_SHA256_HEX_LEN);
    token->len += ORBIT_SHA256_HEX_LEN;

    return NGX_OK;
}


static ngx_int_t
orbit_sr_token_verify(ngx_str_t *token, orbit_sr_who_t *who)
{
    u_char           *dot, *p, *end, *field[6];
    size_t            flen[6];
    time_t            expires;
    ngx_str_t         b64, payload;
    ngx_uint_t        i, role;
    orbit_secrets_t  *secrets;
    u_char            buf[ORBIT_SR_PAYLOAD_MAX];
    char              mac[ORBIT_SHA256_HEX_LEN + 1];

    secrets = ngx_http_orbit_secrets();

    if (secrets == NULL || token->len > ORBIT_SR_TOKEN_MAX
        || token->len < ORBIT_SHA256_HEX_LEN + 2)
    {
        return NGX_ERROR;
    }

    dot = token->data + token->len - ORBIT_SHA256_HEX_LEN - 1;

    if (*dot != '.') {
        return NGX_ERROR;
    }

    b64.data = token->data;
    b64.len = dot - token->data;

    if (ngx_base64_decoded_length(b64.len) > sizeof(buf)) {
        return NGX_ERROR;
    }

    payload.data = buf;

    if (ngx_decode_base64url(&payload, &b64) != NGX_OK) {
        return NGX_ERROR;
    }

    if (orbit_hmac_sha256_hex(mac, secrets->jwt_secret,
                              secrets->jwt_secret_len, payload.data,
                              payload.len)
        != 0
        || !orbit_equal(mac, ORBIT_SHA256_HEX_LEN, dot + 1,
                        ORBIT_SHA256_HEX_LEN))
    {
        return NGX_ERROR;
    }

    /* signed by us: its fields are as orbit_sr_token_make wrote them */

    p = payload.data;
    end = p + payload.len;

    for (i = 0; i < 6; i++) {
        field[i] = p;

        while (p < end && *p != '|') {
            p++;
        }

        flen[i] = p - field[i];

        if (p == end && i < 5) {
            return NGX_ERROR;
        }

        p++;
    }

    if (flen[0] != sizeof(ORBIT_SR_TOKEN_TAG) - 1
        || ngx_strncmp(field[0], ORBIT_SR_TOKEN_TAG, flen[0]) != 0
        || flen[1] != ORBIT_SR_CONN_LEN)
    {
        return NGX_ERROR;
    }

    expires = ngx_atotm(field[5], flen[5]);

    if (expires == NGX_ERROR || expires < ngx_time()) {
        return NGX_ERROR;
    }

    role = orbit_auth_role(field[4], flen[4]);

    if (role == 0 || role == ORBIT_ROLE_SUPERADMIN) {
        return NGX_ERROR;
    }

    if (orbit_sr_who_set(who, (char *) field[2], flen[2], (char *) field[3],
                         flen[3], role)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(who->conn_buf, field[1], ORBIT_SR_CONN_LEN);
    who->expires = expires;

    return NGX_OK;
}


/* ----------------------------------------------------------- incoming */

/*
 * A WebSocket message holds any number of records, the last of which may
 * go on in the next message: whole records are handled where they are,
 * a record's start is kept until its end comes.
 */

static void
orbit_sr_message(orbit_ws_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len)
{
    orbit_sr_t  *sr = ws->data;

    u_char  *p, *end, *rs;

    if (sr->closing) {
        return;
    }

    /* anything from the client shows it is there */
    ngx_add_timer(&sr->timeout, sr->conf->client_timeout);

    p = data;
    end = data + len;

    while (p < end && !sr->closing) {
        rs = ngx_strlchr(p, end, ORBIT_SR_RS);

        if (rs == NULL) {
            if (orbit_sr_keep(sr, p, end - p) != NGX_OK) {
                orbit_sr_fail(sr, ORBIT_WS_CLOSE_TOO_BIG,
                              "The message is too large");
            }

            return;
        }

        if (sr->rec_len) {
            if (orbit_sr_keep(sr, p, rs - p) != NGX_OK) {
                orbit_sr_fail(sr, ORBIT_WS_CLOSE_TOO_BIG,
                              "The message is too large");
                return;
            }

            orbit_sr_record(sr, sr->rec, sr->rec_len);
            sr->rec_len = 0;

        } else {
            orbit_sr_record(sr, p, rs - p);
        }

        p = rs + 1;
    }
}


static ngx_int_t
orbit_sr_keep(orbit_sr_t *sr, u_char *p, size_t len)
{
    u_char  *rec;
    size_t   size;

    if (sr->rec_len + len > sr->conf->ws.max_message) {
        return NGX_ERROR;
    }

    if (sr->rec_len + len > sr->rec_size) {
        size = ngx_max(sr->rec_size * 2, 1024);
        size = ngx_max(size, sr->rec_len + len);
        size = ngx_min(size, sr->conf->ws.max_message);

        rec = ngx_alloc(size, sr->log);
        if (rec == NULL) {
            return NGX_ERROR;
        }

        if (sr->rec) {
            ngx_memcpy(rec, sr->rec, sr->rec_len);
            ngx_free(sr->rec);
        }

        sr->rec = rec;
        sr->rec_size = size;
    }

    ngx_memcpy(sr->rec + sr->rec_len, p, len);
    sr->rec_len += len;

    return NGX_OK;
}


static void
orbit_sr_record(orbit_sr_t *sr, u_char *p, size_t len)
{
    json_t        *json, *type;
    json_error_t   err;

    json = json_loadb((char *) p, len, 0, &err);

    if (!sr->handshaken) {
        orbit_sr_handshake(sr, json);
        goto done;
    }

    if (!json_is_object(json)) {
        orbit_sr_fail(sr, ORBIT_WS_CLOSE_PROTOCOL,
                      "Connection closed with an error: invalid JSON");
        goto done;
    }

    type = json_object_get(json, "type");

    switch (json_is_integer(type) ? json_integer_value(type) : 0) {

    case 1:                                    /* Invocation */
        orbit_sr_invocation(sr, json);
        break;

    case 4:                                    /* StreamInvocation */
        orbit_sr_completion(sr,
                    json_string_value(json_object_get(json, "invocationId")),
                    "Streaming is not supported");
        break;

    case 2:                                    /* StreamItem */
    case 3:                                    /* Completion */
    case 5:                                    /* CancelInvocation */
    case 6:                                    /* Ping: alive, that is all */
        break;

    case 7:                                    /* Close */
        orbit_sr_close(sr, ORBIT_WS_CLOSE_NORMAL, NULL);
        break;

    default:
        orbit_sr_fail(sr, ORBIT_WS_CLOSE_PROTOCOL,
                      "Connection closed with an error: "
                      "unknown message type");
        break;
    }

done:

    if (json) {
        json_decref(json);
    }
}


/* {"protocol":"json","version":1} -> {}, else {"error":".."} and close */

static void
orbit_sr_handshake(orbit_sr_t *sr, json_t *json)
{
    u_char      *p;
    size_t       len;
    json_t      *version;
    const char  *protocol;
    u_char       buf[128];

    protocol = json_string_value(json_object_get(json, "protocol"));
    version = json_object_get(json, "version");

    if (protocol == NULL || !json_is_integer(version)) {
        orbit_sr_send(sr, "{\"error\":\"The first message must be the "
                      "handshake: {\\\"protocol\\\":\\\"json\\\","
                      "\\\"version\\\":1}\"}");
        orbit_sr_close(sr, ORBIT_WS_CLOSE_POLICY, "handshake expected");
        return;
    }

    if (ngx_strcmp(protocol, "json") != 0) {
        len = ngx_strlen(protocol);

        if (len <= 16 && orbit_json_escaped_len(protocol, len) == len) {
            p = ngx_sprintf(buf, "'%s' ", protocol);

        } else {
            p = buf;
        }

        orbit_sr_send(sr, "{\"error\":\"Requested protocol %*sis not "
                      "available.\"}", (size_t) (p - buf), buf);
        orbit_sr_close(sr, ORBIT_WS_CLOSE_POLICY, "unsupported protocol");
        return;
    }

    if (json_integer_value(version) != 1) {
        orbit_sr_send(sr, "{\"error\":\"The server does not support "
                      "version %L of the 'json' protocol.\"}",
                      (int64_t) json_integer_value(version));
        orbit_sr_close(sr, ORBIT_WS_CLOSE_POLICY, "unsupported version");
        return;
    }

    sr->handshaken = 1;

    orbit_sr_send(sr, "{}");

    ngx_add_timer(&sr->ping, sr->conf->keepalive);
}


static void
orbit_sr_invocation(orbit_sr_t *sr, json_t *json)
{
    json_t      *id, *args;
    const char  *inv, *target;

    target = json_string_value(json_object_get(json, "target"));
    args = json_object_get(json, "arguments");
    id = json_object_get(json, "invocationId");

    if (target == NULL || !json_is_array(args)
        || (id && !json_is_string(id))
        || (id && json_string_length(id) > ORBIT_SR_INVOCATION_MAX))
    {
        orbit_sr_fail(sr, ORBIT_WS_CLOSE_PROTOCOL,
                      "Connection closed with an error: "
                      "malformed invocation");
        return;
    }

    inv = json_string_value(id);      /* NULL: a send(), never answered */

    if (ngx_strcmp(target, "JoinTenantGroup") == 0) {
        orbit_sr_join_tenant(sr, inv, args);

    } else if (ngx_strcmp(target, "JoinChatSession") == 0) {
        orbit_sr_join_session(sr, inv, args);

    } else if (ngx_strcmp(target, "LeaveChatSession") == 0) {
        orbit_sr_leave_session(sr, inv, args);

    } else if (ngx_strcmp(target, "SendTypingIndicator") == 0) {
        orbit_sr_typing(sr, inv, args);

    } else {
        orbit_sr_completion(sr, inv, "Unknown hub method");
    }
}


/* the caller's own tenant only; our tenants' ids are UUID strings */

static void
orbit_sr_join_tenant(orbit_sr_t *sr, const char *inv, json_t *args)
{
    const char  *tenant;
    ngx_str_t    room;
    u_char       buf[sizeof("tenant:") + ORBIT_SR_ID_LEN];

    tenant = json_string_value(json_array_get(args, 0));

    if (json_array_size(args) != 1 || tenant == NULL
        || ngx_strlen(tenant) != sr->who.tenant_id.len
        || ngx_strncasecmp((u_char *) tenant, sr->who.tenant_id.data,
                           sr->who.tenant_id.len) != 0)
    {
        orbit_sr_completion(sr, inv, "Not your tenant");
        return;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "tenant:%V", &sr->who.tenant_id) - buf;

    if (orbit_sr_join(sr, &room) != NGX_OK) {
        orbit_sr_completion(sr, inv, "The group cannot be joined now");
        return;
    }

    orbit_sr_completion(sr, inv, NULL);
}


static void
orbit_sr_join_session(orbit_sr_t *sr, const char *inv, json_t *args)
{
    char              *copy;
    size_t             len;
    const char        *id;
    orbit_rt_check_t  *chk;

    id = orbit_sr_session_id(args);

    if (id == NULL) {
        orbit_sr_completion(sr, inv, "sessionId must be a conversation UUID");
        return;
    }

    chk = orbit_rt_check_conversation(id, &sr->who.tenant_id,
                                      &sr->who.user_id, sr->who.role,
                                      sizeof(char *),
                                      orbit_sr_join_checked, sr, sr->log);
    if (chk == NULL) {
        orbit_sr_completion(sr, inv, "The session cannot be checked now");
        return;
    }

    /* the invocation's id, answered when the check is done */

    if (inv) {
        len = ngx_strlen(inv) + 1;
        copy = ngx_pnalloc(chk->pool, len);

        if (copy == NULL) {
            ngx_destroy_pool(chk->pool);
            orbit_sr_completion(sr, inv, "The session cannot be checked now");
            return;
        }

        ngx_memcpy(copy, inv, len);
        *(char **) chk->ctx = copy;
    }

    /* in the connection's checks: its closing cancels them */
    ngx_queue_insert_tail(&sr->ops, &chk->queue);
}


static void
orbit_sr_join_checked(orbit_rt_check_t *chk, ngx_int_t rc)
{
    orbit_sr_t  *sr = chk->data;

    char  *inv;

    inv = *(char **) chk->ctx;
    ngx_queue_remove(&chk->queue);

    if (rc == NGX_ERROR) {
        orbit_sr_completion(sr, inv, "The session cannot be checked now");
        return;
    }

    if (rc == NGX_DECLINED) {
        /* another tenant's, unassigned to this agent, or none at all */
        orbit_sr_completion(sr, inv, "Chat session not found");
        return;
    }

    if (orbit_sr_join(sr, &chk->room) != NGX_OK) {
        orbit_sr_completion(sr, inv, "The session cannot be joined now");
        return;
    }

    orbit_sr_completion(sr, inv, NULL);
}


static void
orbit_sr_leave_session(orbit_sr_t *sr, const char *inv, json_t *args)
{
    const char           *id;
    ngx_str_t             room;
    orbit_room_member_t  *m;
    u_char                buf[sizeof("conversation:") + ORBIT_SR_ID_LEN];

    id = orbit_sr_session_id(args);

    if (id == NULL) {
        orbit_sr_completion(sr, inv, "sessionId must be a conversation UUID");
        return;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "conversation:%s", id) - buf;

    m = orbit_room_find(&sr->rooms, &room);

    if (m) {
        ngx_queue_remove(&m->link);
        orbit_room_leave(m);
    }

    orbit_sr_completion(sr, inv, NULL);
}


/* (sessionId, isTyping): TypingIndicator to the others in the session */

static void
orbit_sr_typing(orbit_sr_t *sr, const char *inv, json_t *args)
{
    u_char               *p;
    const char           *id;
    ngx_str_t             room, data;
    u_char                buf[sizeof("conversation:") + ORBIT_SR_ID_LEN];
    u_char                json[256];

    id = orbit_sr_session_id(args);

    if (id == NULL) {
        orbit_sr_completion(sr, inv, "sessionId must be a conversation UUID");
        return;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "conversation:%s", id) - buf;

    if (orbit_room_find(&sr->rooms, &room) == NULL) {
        orbit_sr_completion(sr, inv, "Join the chat session first");
        return;
    }

    p = ngx_snprintf(json, sizeof(json),
                     "{\"sessionId\":\"%s\",\"connectionId\":\"%V\","
                     "\"isTyping\":%s}",
                     id, &sr->who.conn_id,
                     json_is_true(json_array_get(args, 1))
                     ? "true" : "false");

    data.data = json;
    data.len = p - json;

    if (orbit_rt_publish(&sr->who.tenant_id, &room, "TypingIndicator", &data,
                         &sr->who.conn_id, sr->log)
        != NGX_OK)
    {
        orbit_sr_completion(sr, inv, "The indicator cannot be sent now");
        return;
    }

    orbit_sr_completion(sr, inv, NULL);
}


/* the first argument, a conversation's UUID, or NULL */

static const char *
orbit_sr_session_id(json_t *args)
{
    const char  *id;

    id = json_string_value(json_array_get(args, 0));

    if (id == NULL || !orbit_valid_uuid(id, ngx_strlen(id))) {
        return NULL;
    }

    return id;
}


/* NGX_OK when in the room, now or already */

static ngx_int_t
orbit_sr_join(orbit_sr_t *sr, ngx_str_t *room)
{
    orbit_room_member_t  *m;

    if (orbit_room_find(&sr->rooms, room)) {
        return NGX_OK;
    }

    m = orbit_room_join(room, orbit_sr_deliver, sr, sr->log);
    if (m == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&sr->rooms, &m->link);

    return NGX_OK;
}


/* --------------------------------------------------------- outgoing */

static void
orbit_sr_deliver(orbit_room_member_t *m, orbit_rt_event_t *ev)
{
    orbit_sr_t  *sr = m->data;

    u_char            *buf, *p;
    size_t             len;
    orbit_ws_frame_t  *f;

    if (ev->from.len == sr->who.conn_id.len
        && ngx_strncmp(ev->from.data, sr->who.conn_id.data,
                       sr->who.conn_id.len) == 0)
    {
        return;                 /* the sender's own typing */
    }

    if (!orbit_rt_audience(&ev->to, sr->who.role, &sr->who.user_id)
        || orbit_rt_repeat(&sr->last, ev))
    {
        return;
    }

    f = ev->frames[ORBIT_RT_SIGNALR];

    if (f == NULL) {
        /* framed once for all this worker's SignalR connections */

        len = sizeof("{\"type\":1,\"target\":\"\",\"arguments\":[]}") - 1
              + orbit_json_escaped_len((char *) ev->name.data, ev->name.len)
              + ev->data.len + 1;

        buf = ngx_alloc(len, sr->log);
        if (buf == NULL) {
            return;
        }

        p = ngx_cpymem(buf, "{\"type\":1,\"target\":\"",
                       sizeof("{\"type\":1,\"target\":\"") - 1);
        p = (u_char *) orbit_json_escape((char *) p, (char *) ev->name.data,
                                         ev->name.len);
        p = ngx_cpymem(p, "\",\"arguments\":[",
                       sizeof("\",\"arguments\":[") - 1);
        p = ngx_cpymem(p, ev->data.data, ev->data.len);
        *p++ = ']';
        *p++ = '}';
        *p++ = ORBIT_SR_RS;

        f = orbit_ws_frame(ORBIT_WS_OP_TEXT, buf, p - buf, sr->log);
        ngx_free(buf);

        if (f == NULL) {
            return;
        }

        ev->frames[ORBIT_RT_SIGNALR] = f;
    }

    (void) orbit_ws_send_frame(sr->ws, f);
}


/* {"type":3,"invocationId":"..","result":null} or with "error" */

static void
orbit_sr_completion(orbit_sr_t *sr, const char *inv, const char *error)
{
    u_char  *p;
    size_t   len;
    u_char   id[ORBIT_SR_INVOCATION_MAX * 6];

    len = inv ? ngx_strlen(inv) : 0;

    if (inv == NULL || len > ORBIT_SR_INVOCATION_MAX) {
        return;
    }

    p = (u_char *) orbit_json_escape((char *) id, inv, len);

    if (error == NULL) {
        orbit_sr_send(sr, "{\"type\":3,\"invocationId\":\"%*s\","
                      "\"result\":null}", (size_t) (p - id), id);
        return;
    }

    /* the errors are this file's constants: no escaping needed */
    orbit_sr_send(sr, "{\"type\":3,\"invocationId\":\"%*s\",\"error\":\"%s\"}",
                  (size_t) (p - id), id, error);
}


/* a record: fmt's JSON and its 0x1E */

static void
orbit_sr_send(orbit_sr_t *sr, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    buf[1024];

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf) - 1, fmt, args);
    va_end(args);

    *p++ = ORBIT_SR_RS;

    (void) orbit_ws_send(sr->ws, ORBIT_WS_OP_TEXT, buf, p - buf);
}


/* a Close message saying why, then the WebSocket's close */

static void
orbit_sr_fail(orbit_sr_t *sr, ngx_uint_t code, const char *error)
{
    orbit_sr_send(sr, "{\"type\":7,\"error\":\"%s\"}", error);
    orbit_sr_close(sr, code, NULL);
}


static void
orbit_sr_close(orbit_sr_t *sr, ngx_uint_t code, const char *reason)
{
    sr->closing = 1;

    if (sr->ping.timer_set) {
        ngx_del_timer(&sr->ping);
    }

    if (sr->timeout.timer_set) {
        ngx_del_timer(&sr->timeout);
    }

    orbit_ws_close(sr->ws, code, reason);
}


static void
orbit_sr_ping_handler(ngx_event_t *ev)
{
    orbit_sr_t  *sr = ev->data;

    orbit_sr_send(sr, "{\"type\":6}");

    ngx_add_timer(&sr->ping, sr->conf->keepalive);
}


static void
orbit_sr_timeout_handler(ngx_event_t *ev)
{
    orbit_sr_t  *sr = ev->data;

    ngx_log_error(NGX_LOG_INFO, sr->log, 0,
                  "signalr: nothing from the client within %M ms: closing",
                  sr->conf->client_timeout);

    if (!sr->handshaken) {
        orbit_sr_close(sr, ORBIT_WS_CLOSE_POLICY, "handshake timeout");
        return;
    }

    orbit_sr_fail(sr, ORBIT_WS_CLOSE_GOING_AWAY,
                  "Server timeout elapsed without receiving a message "
                  "from the client.");
}


static void
orbit_sr_closed(orbit_ws_t *ws)
{
    orbit_sr_t  *sr = ws->data;

    sr->closing = 1;

    if (sr->ping.timer_set) {
        ngx_del_timer(&sr->ping);
    }

    if (sr->timeout.timer_set) {
        ngx_del_timer(&sr->timeout);
    }

    orbit_sr_leave_all(sr);

    if (sr->rec) {
        ngx_free(sr->rec);
        sr->rec = NULL;
    }
}


/* leaves every room and drops the checks in flight */

static void
orbit_sr_leave_all(orbit_sr_t *sr)
{
    ngx_queue_t          *q;
    orbit_rt_check_t     *chk;
    orbit_room_member_t  *m;

    while (!ngx_queue_empty(&sr->ops)) {
        q = ngx_queue_head(&sr->ops);
        chk = ngx_queue_data(q, orbit_rt_check_t, queue);
        ngx_queue_remove(q);
        ngx_destroy_pool(chk->pool);        /* cancels its query */
    }

    while (!ngx_queue_empty(&sr->rooms)) {
        q = ngx_queue_head(&sr->rooms);
        m = ngx_queue_data(q, orbit_room_member_t, link);
        ngx_queue_remove(q);
        orbit_room_leave(m);
    }
}


static char *
orbit_sr_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, s->data, s->len) = '\0';

    return (char *) p;
}
