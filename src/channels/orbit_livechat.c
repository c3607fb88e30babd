/*
 * OrbitDesk channels: the live-chat widget.
 *
 *   POST /channels/live-chat/session  {widgetKey, visitorToken?}
 *        -> 201 {token, visitorId, expiresIn}: a visitor's JWT (role
 *        VISITOR, its widget in "account"), the same visitor again when a
 *        still valid visitorToken of that widget comes back
 *   POST /channels/live-chat/message  {text | type + content, id?, name?,
 *        email?}   (the visitor's token)   -> the shared inbound pipeline
 *   GET  /channels/live-chat/messages?limit=&cursor=   the visitor's
 *        conversation as the visitor sees it: no private notes
 *
 * A widget is a "livechat" connection; its account_id is the widget key
 * the page embeds (public: it names the widget, it proves nothing).  The
 * visitor's socket (Socket.IO, /chat, the token in the auth payload) is in
 * the room "visitor:{id}"; an agent's reply is delivered there by its
 * job, and stays fetchable over REST.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_LC_TOKEN_TTL   (30 * 86400)  /* a visitor's token, seconds */
#define ORBIT_LC_TEXT_MAX    4096


static ngx_int_t orbit_lc_verify(orbit_channel_in_t *in);
static ngx_int_t orbit_lc_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_lc_send(orbit_channel_out_t *out);
static void orbit_lc_session_found(orbit_api_req_t *ar, PGresult *res);
static ngx_int_t orbit_lc_bad(orbit_channel_in_t *in, const char *why);


const orbit_channel_t  orbit_channel_livechat = {
    "live-chat",
    "livechat",
    NULL,
    orbit_lc_verify,
    orbit_lc_normalize,
    orbit_lc_send,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    0,
    NULL,
};


/* POST /api/v1/channels/live-chat/session */

ngx_int_t
orbit_livechat_session(orbit_api_req_t *ar)
{
    const char  **v;

    static const orbit_v_field_t  fields[] = {
        { "widgetKey", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 200, NULL },
        { "visitorToken", ORBIT_V_STRING, 0, 1, ORBIT_V_ANY, 0, 4096,
          NULL },
        { NULL, 0, 0, 0, 0, 0, 0, NULL }
    };

    static const char  sql[] =
        "SELECT c.tenant_id, c.name FROM channel_connections c"
        " WHERE c.channel = 'livechat' AND c.account_id = $1"
        "   AND c.status = 'active'";

    if (orbit_api_validate(ar, fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, sizeof(const char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = json_string_value(json_object_get(ar->body, "widgetKey"));

    return orbit_api_query(ar, sql, 1, v, orbit_lc_session_found);
}


static void
orbit_lc_session_found(orbit_api_req_t *ar, PGresult *res)
{
    char                *token;
    u_char              *buf, *p;
    size_t               len;
    const char          *key, *old;
    orbit_secrets_t     *secrets;
    orbit_jwt_claims_t   claims, prev;

    key = json_string_value(json_object_get(ar->body, "widgetKey"));
    secrets = ngx_http_orbit_secrets();

    if (PQntuples(res) != 1) {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                                  "There is no such "
                                                  "live-chat widget"));
        return;
    }

    if (secrets == NULL || ngx_strlen(key) >= sizeof(claims.account)) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memzero(&claims, sizeof(orbit_jwt_claims_t));
    ngx_cpystrn((u_char *) claims.tenant_id, (u_char *) PQgetvalue(res, 0, 0),
                sizeof(claims.tenant_id));
    ngx_cpystrn((u_char *) claims.role, (u_char *) "VISITOR",
                sizeof(claims.role));
    ngx_cpystrn((u_char *) claims.account, (u_char *) key,
                sizeof(claims.account));

    /* the same visitor, if its token is this widget's and still valid */

    old = json_string_value(json_object_get(ar->body, "visitorToken"));

    if (old
        && orbit_jwt_verify((u_char *) secrets->jwt_secret,
                            secrets->jwt_secret_len, old, ngx_time(), &prev)
           == ORBIT_JWT_OK
        && ngx_strcmp(prev.role, "VISITOR") == 0
        && ngx_strcmp(prev.account, claims.account) == 0
        && ngx_strcmp(prev.tenant_id, claims.tenant_id) == 0)
    {
        ngx_memcpy(claims.user_id, prev.user_id, sizeof(claims.user_id));

    } else {
        claims.user_id[0] = 'v';
        claims.user_id[1] = '_';

        if (orbit_random_token(claims.user_id + 2, 16) != 0) {
            orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    claims.iat = (long) ngx_time();
    claims.exp = claims.iat + ORBIT_LC_TOKEN_TTL;

    token = orbit_jwt_sign((u_char *) secrets->jwt_secret,
                           secrets->jwt_secret_len, &claims);
    if (token == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = sizeof("{\"token\":\"\",\"visitorId\":\"\",\"expiresIn\":,"
                 "\"widget\":{\"name\":\"\"}}")
          + ngx_strlen(token) + ngx_strlen(claims.user_id) + NGX_INT_T_LEN
          + orbit_json_escaped_len(PQgetvalue(res, 0, 1),
                                   PQgetlength(res, 0, 1));

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        orbit_jwt_free(token);
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(buf, "{\"token\":\"%s\",\"visitorId\":\"%s\","
                    "\"expiresIn\":%d,\"widget\":{\"name\":\"",
                    token, claims.user_id, ORBIT_LC_TOKEN_TTL);
    p = (u_char *) orbit_json_escape((char *) p, PQgetvalue(res, 0, 1),
                                     PQgetlength(res, 0, 1));
    p = ngx_cpymem(p, "\"}}", 3);

    orbit_jwt_free(token);

    orbit_api_finish(ar, orbit_api_send_json(ar, NGX_HTTP_CREATED, buf,
                                             p - buf));
}


/* POST /api/v1/channels/live-chat/message: the visitor's, through the
 * pipeline like any provider's webhook */

ngx_int_t
orbit_livechat_message(orbit_api_req_t *ar)
{
    return orbit_pipeline_start(ar, &orbit_channel_livechat);
}


/* the route let only a visitor's token in; its widget is the account */

static ngx_int_t
orbit_lc_verify(orbit_channel_in_t *in)
{
    if (in->ar->who.role != ORBIT_ROLE_VISITOR
        || in->ar->who.account.len == 0)
    {
        in->error = "a visitor's token is required";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * {"text": "..."} or {"type": "image", "content": {"media": {"url"},
 * "caption"?}}; "id" (the widget's own, to send again safely), "name" and
 * "email" optional.
 */

static ngx_int_t
orbit_lc_normalize(orbit_channel_in_t *in)
{
    json_t        *body, *item, *content, *contact, *v;
    const char    *type, *text, *id, *url;
    json_error_t   err;
    orbit_api_req_t *ar;
    char           account[64], visitor[48], gen[ORBIT_TOKEN_LEN(16) + 1];

    ar = in->ar;

    body = json_loadb((char *) in->body.data, in->body.len,
                      JSON_REJECT_DUPLICATES, &err);

    if (!json_is_object(body)) {
        json_decref(body);
        return orbit_lc_bad(in, "the body must be a JSON object");
    }

    type = json_string_value(json_object_get(body, "type"));
    text = json_string_value(json_object_get(body, "text"));
    id = json_string_value(json_object_get(body, "id"));
    content = json_object_get(body, "content");

    if (type == NULL || ngx_strcmp(type, "text") == 0) {
        if (text == NULL) {
            text = json_string_value(json_object_get(content, "text"));
        }

        if (text == NULL || text[0] == '\0'
            || orbit_utf8_chars(text, ngx_strlen(text)) > ORBIT_LC_TEXT_MAX)
        {
            json_decref(body);
            return orbit_lc_bad(in, "text must be a string of 1 to 4096 "
                                    "characters");
        }

        content = json_pack("{s:s}", "text", text);
        type = "text";

    } else if (ngx_strcmp(type, "image") == 0
               || ngx_strcmp(type, "document") == 0)
    {
        url = json_string_value(json_object_get(json_object_get(content,
                                                                "media"),
                                                "url"));

        if (url == NULL || ngx_strlen(url) > 2048
            || (ngx_strncmp(url, "https://", 8) != 0
                && ngx_strncmp(url, "http://", 7) != 0))
        {
            json_decref(body);
            return orbit_lc_bad(in, "content.media.url must be an http(s) "
                                    "URL");
        }

        content = json_pack("{s:{s:s}}", "media", "url", url);

        v = json_object_get(json_object_get(body, "content"), "caption");
        if (content && json_is_string(v)) {
            json_object_set(content, "caption", v);
        }

    } else {
        json_decref(body);
        return orbit_lc_bad(in, "type must be text, image or document");
    }

    if (id && (id[0] == '\0' || ngx_strlen(id) > 100)) {
        json_decref(body);
        json_decref(content);
        return orbit_lc_bad(in, "id must be a string of 1 to 100 "
                                "characters");
    }

    if (id == NULL) {
        if (orbit_random_token(gen, 16) != 0) {
            json_decref(body);
            json_decref(content);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        id = gen;
    }

    ngx_cpystrn((u_char *) account, ar->who.account.data,
                ngx_min(ar->who.account.len + 1, sizeof(account)));
    ngx_cpystrn((u_char *) visitor, ar->who.user_id.data,
                ngx_min(ar->who.user_id.len + 1, sizeof(visitor)));

    item = orbit_channel_item(in, "message", "livechat", account);
    contact = json_pack("{s:s}", "externalId", visitor);

    if (item == NULL || contact == NULL || content == NULL) {
        json_decref(body);
        json_decref(content);
        json_decref(contact);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = json_object_get(body, "name");
    if (json_is_string(v) && json_string_length(v) > 0
        && json_string_length(v) <= 200)
    {
        json_object_set(contact, "name", v);
    }

    json_object_set_new(item, "contact", contact);
    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "content", content);
    json_object_set_new(item, "timestamp", json_integer(ngx_time()));

    json_decref(body);

    return NGX_OK;
}


static ngx_int_t
orbit_lc_bad(orbit_channel_in_t *in, const char *why)
{
    in->error = why;
    return NGX_HTTP_BAD_REQUEST;
}


/*
 * GET /api/v1/channels/live-chat/messages: the visitor's conversation,
 * newest first, without what only agents see (notes, their ids, the
 * statuses' details).
 */

ngx_int_t
orbit_livechat_messages(orbit_api_req_t *ar)
{
    const char  **v, *cursor;

    static const char  sql[] =
        "WITH cv AS ("
        "  SELECT c.id FROM conversations c"
        "  JOIN channel_connections cn ON cn.id = c.connection_id"
        "  JOIN contact_identities ci ON ci.contact_id = c.contact_id"
        "  WHERE cn.channel = 'livechat' AND cn.account_id = $2"
        "    AND cn.tenant_id = $1::uuid AND ci.tenant_id = $1::uuid"
        "    AND ci.channel = 'livechat' AND ci.external_id = $3"
        "), page AS ("
        "  SELECT json_build_object('id', m.id, 'direction', m.direction,"
        "    'type', m.type, 'content', m.content, 'status', m.status,"
        "    'createdAt', m.created_at) AS j, m.created_at AS at, m.id"
        "  FROM messages m"
        "  WHERE m.conversation_id IN (SELECT id FROM cv) AND NOT m.private"
        "    AND (m.created_at, m.id) < ("
        "      COALESCE('epoch'::timestamptz + $4::bigint"
        "               * interval '1 microsecond', 'infinity'),"
        "      COALESCE($5::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))"
        "  ORDER BY m.created_at DESC, m.id DESC"
        "  LIMIT 101"
        ")"
        " SELECT 200, json_build_object("
        "  'data', COALESCE((SELECT json_agg(p.j ORDER BY p.at DESC, p.id DESC)"
        "    FROM (SELECT * FROM page LIMIT $6::int) p), '[]'),"
        "  'nextCursor', CASE WHEN EXISTS (SELECT 1 FROM page OFFSET $6::int)"
        "    THEN (SELECT (extract(epoch FROM p.at) * 1000000)::bigint"
        "          || '.' || p.id FROM page p OFFSET $6::int - 1 LIMIT 1)"
        "    END), NULL";

    v = ngx_pcalloc(ar->r->pool, 6 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    v[1] = orbit_api_strdup_n(ar->r->pool, ar->who.account.data,
                              ar->who.account.len);
    v[2] = orbit_api_strdup_n(ar->r->pool, ar->who.user_id.data,
                              ar->who.user_id.len);

    if (v[0] == NULL) {
        return ar->rc;
    }

    if (v[1] == NULL || v[2] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_page_args(ar, &v[5], &cursor, 100) != NGX_OK) {
        return ar->rc;
    }

    if (cursor && orbit_api_cursor(ar, cursor, &v[3], &v[4]) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 6, v, orbit_api_respond_row);
}


/*
 * An agent's reply: pushed to the visitor's room as new_message, in the
 * shape the widget reads; a visitor who is away reads it over REST.
 */

static ngx_int_t
orbit_lc_send(orbit_channel_out_t *out)
{
    char       *text;
    json_t     *m, *v;
    u_char      buf[sizeof("visitor:") + 48];
    ngx_str_t   room, data;

    if (out->to == NULL || ngx_strlen(out->to) > 48) {
        orbit_channel_error(out, 400, "The visitor is not known");
        return NGX_DECLINED;
    }

    m = json_object();
    if (m == NULL) {
        return NGX_ERROR;
    }

    v = out->message;

    json_object_set(m, "id", json_object_get(v, "id"));
    json_object_set(m, "direction", json_object_get(v, "direction"));
    json_object_set(m, "type", json_object_get(v, "type"));
    json_object_set(m, "content", json_object_get(v, "content"));
    json_object_set(m, "createdAt", json_object_get(v, "createdAt"));

    text = json_dumps(m, JSON_COMPACT);
    json_decref(m);

    if (text == NULL) {
        return NGX_ERROR;
    }

    room.data = buf;
    room.len = ngx_sprintf(buf, "visitor:%s", out->to) - buf;
    data.data = (u_char *) text;
    data.len = ngx_strlen(text);

    if (orbit_rt_broadcast(&out->tenant, &room, 1, NULL, "new_message",
                           &data, NULL, out->log)
        != NGX_OK)
    {
        free(text);
        orbit_channel_error(out, 503, "The real-time gateway is down");
        return NGX_ERROR;
    }

    free(text);

    /* our own id stands for the provider's */
    v = json_object_get(out->message, "id");

    if (!json_is_string(v)
        || orbit_channel_provider_id(out, json_string_value(v)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_DONE;
}
