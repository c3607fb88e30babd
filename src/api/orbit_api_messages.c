/*
 * OrbitDesk REST: sending a message.
 *
 *   POST /messages {conversationId, type?, content, replyToId?, private?}
 *
 * The message is stored as "queued" together with its delivery job
 * (message.send, run by src/jobs through the channel's adapter) in one
 * statement: once the 201 is out the message will be delivered, retried,
 * or failed with the provider's reason.  A private note is stored "sent"
 * and never leaves the inbox.  The tenant's staff and the conversation's
 * assignee hear new_message at once.
 *
 * content, by type (the shapes inbound messages have too):
 *   text       "Hello!" or {"text"}
 *   image, video, audio, document, sticker
 *              {"media": {"url", "mimeType"?, "filename"?}, "caption"?}
 *   template   {"template": {"name", "language", "components"?}}
 */

#include "api/orbit_api.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_MSG_TEXT_MAX     4096         /* characters: WhatsApp's cap */
#define ORBIT_MSG_CAPTION_MAX  1024


static ngx_int_t orbit_msg_content(orbit_api_req_t *ar, const char *type,
    json_t *content, ngx_uint_t note);
static ngx_int_t orbit_msg_text(orbit_api_req_t *ar, json_t *text,
    const char *name, size_t max);
static ngx_int_t orbit_msg_only(orbit_api_req_t *ar, json_t *obj,
    const char *const *keys, const char *what);
static void orbit_msg_stored(orbit_api_req_t *ar, PGresult *res);


static const char *const  orbit_msg_types[] = {
    "text", "image", "video", "audio", "document", "sticker", "template",
    NULL
};


ngx_int_t
orbit_api_messages_send(orbit_api_req_t *ar)
{
    char         *body;
    json_t       *j, *content;
    ngx_uint_t    note;
    const char  **v, *type;

    static const orbit_v_field_t  fields[] = {
        { "conversationId", ORBIT_V_STRING, 1, 0, ORBIT_V_UUID, 0, 0, NULL },
        { "type", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0, orbit_msg_types },
        { "content", ORBIT_V_OBJECT, 1, 0, ORBIT_V_ANY, 0, 0, NULL },
        { "replyToId", ORBIT_V_STRING, 0, 1, ORBIT_V_UUID, 0, 0, NULL },
        { "private", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
        { NULL, 0, 0, 0, 0, 0, 0, NULL }
    };

    /*
     * $1 tenant, $2 user (NULL: an API key), $3 role, $4 conversation,
     * $5 the body as stored, $6 replyToId.  Columns: status, the message
     * (the answer), a message, the audience, the event's data.
     */

    static const char  sql[] =
        "WITH b AS (SELECT $5::jsonb AS j"
        "), cv AS ("
        "  SELECT c.* FROM conversations c"
        "  WHERE c.tenant_id = $1::uuid AND c.id = $4::uuid"
        "    AND ($3::text IS DISTINCT FROM 'AGENT'"
        "         OR c.assignee_id = $2::uuid)"
        "  FOR UPDATE"
        "), rep AS ("
        "  SELECT m.id FROM messages m, cv"
        "  WHERE m.conversation_id = cv.id AND m.id = $6::uuid"
        "), ok AS ("
        "  SELECT cv.*, COALESCE((b.j->>'private')::boolean, false) AS note"
        "  FROM cv, b"
        "  WHERE ($6::uuid IS NULL OR EXISTS (SELECT 1 FROM rep))"
        "    AND (COALESCE((b.j->>'private')::boolean, false)"
        "         OR cv.connection_id IS NOT NULL)"
        "), ins AS ("
        "  INSERT INTO messages (tenant_id, conversation_id, direction, type,"
        "    content, status, private, sender_id, reply_to_id, statuses)"
        "  SELECT $1::uuid, ok.id, 'outbound', b.j->>'type', b.j->'content',"
        "    CASE WHEN ok.note THEN 'sent' ELSE 'queued' END, ok.note,"
        "    $2::uuid, (SELECT id FROM rep),"
        "    CASE WHEN ok.note"
        "         THEN jsonb_build_object('sent', extract(epoch FROM now())"
        "                                         ::bigint)"
        "         ELSE '{}' END"
        "  FROM ok, b"
        "  RETURNING *"
        "), upd AS ("
        "  UPDATE conversations c SET"
        "    last_message = CASE WHEN i.private THEN c.last_message"
        "                        ELSE orbit_message_preview(i) END,"
        "    last_message_at = CASE WHEN i.private THEN c.last_message_at"
        "                           ELSE i.created_at END,"
        "    updated_at = now()"
        "  FROM ins i WHERE c.id = i.conversation_id"
        "  RETURNING c AS row, c.assignee_id, c.contact_id"
        "), cnt AS ("
        "  INSERT INTO tenant_counters AS t (tenant_id, messages_month,"
        "    messages_in_month)"
        "  SELECT $1::uuid, date_trunc('month', now())::date, 1"
        "  FROM ins WHERE NOT ins.private"
        "  ON CONFLICT (tenant_id) DO UPDATE SET"
        "    messages_in_month = CASE"
        "      WHEN t.messages_month = excluded.messages_month"
        "      THEN t.messages_in_month + 1 ELSE 1 END,"
        "    messages_month = excluded.messages_month,"
        "    updated_at = now()"
        "), job AS ("
        "  INSERT INTO jobs (tenant_id, kind, payload)"
        "  SELECT $1::uuid, 'message.send', jsonb_build_object("
        "    'messageId', i.id, 'messageCreatedAt', i.created_at,"
        "    'conversationId', i.conversation_id,"
        "    'connectionId', ok.connection_id, 'channel', ok.channel)"
        "  FROM ins i, ok WHERE NOT i.private"
        ")"
        " SELECT 201, orbit_message_json(i), NULL,"
        "   trim('staff ' || COALESCE(u.assignee_id::text, '')),"
        "   orbit_message_json(i) || jsonb_build_object('conversation',"
        "     orbit_conversation_json(u.row, k))"
        " FROM ins i, upd u JOIN contacts k ON k.id = u.contact_id"
        " UNION ALL SELECT 400, NULL, 'replyToId is not a message of this"
        "   conversation', NULL, NULL"
        " FROM cv WHERE $6::uuid IS NOT NULL"
        "   AND NOT EXISTS (SELECT 1 FROM rep)"
        " UNION ALL SELECT 409, NULL, 'This conversation''s channel is not"
        "   connected any more: nothing can be sent on it', NULL, NULL"
        " FROM cv WHERE cv.connection_id IS NULL"
        " UNION ALL SELECT 404, NULL, 'Conversation not found', NULL, NULL"
        " LIMIT 1";

    j = ar->body;
    content = json_object_get(j, "content");

    /* "content": "Hello!" is a text's */

    if (json_is_string(content)) {
        content = json_pack("{s:O}", "text", content);
        if (content == NULL || json_object_set_new(j, "content", content)) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (orbit_api_validate(ar, fields) != NGX_OK) {
        return ar->rc;
    }

    type = json_string_value(json_object_get(j, "type"));

    if (type == NULL) {
        type = "text";
        json_object_set_new(j, "type", json_string(type));
    }

    note = json_is_true(json_object_get(j, "private"));

    if (orbit_msg_content(ar, type, content, note) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_pcalloc(ar->r->pool, 6 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return ar->rc;
    }

    if (ar->who.kind == ORBIT_AUTH_USER) {
        v[1] = orbit_api_strdup_n(ar->r->pool, ar->who.user_id.data,
                                  ar->who.user_id.len);
        v[2] = orbit_auth_role_name(ar->who.role);
    }

    v[3] = json_string_value(json_object_get(j, "conversationId"));
    v[5] = json_string_value(json_object_get(j, "replyToId"));

    body = json_dumps(j, JSON_COMPACT);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[4] = orbit_api_strdup(ar->r->pool, body);
    free(body);

    if (v[4] == NULL || (ar->who.kind == ORBIT_AUTH_USER && v[1] == NULL)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 6, v, orbit_msg_stored);
}


/* stored: new_message to the conversation's and the tenant's rooms */

static void
orbit_msg_stored(orbit_api_req_t *ar, PGresult *res)
{
    u_char      buf[2][sizeof("conversation:") + 40];
    const char  *cid;
    ngx_str_t    to, data, rooms[2];
    json_t      *m;

    if (PQntuples(res) == 1 && ngx_strcmp(PQgetvalue(res, 0, 0), "201") == 0
        && !PQgetisnull(res, 0, 4))
    {
        m = json_loadb(PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1), 0,
                       NULL);
        cid = json_string_value(json_object_get(m, "conversationId"));

        if (cid && ngx_strlen(cid) <= 40) {
            rooms[0].data = buf[0];
            rooms[0].len = ngx_sprintf(buf[0], "conversation:%s", cid)
                           - buf[0];
            rooms[1].data = buf[1];
            rooms[1].len = ngx_sprintf(buf[1], "tenant:%V",
                                       &ar->who.tenant_id)
                           - buf[1];

            to.data = (u_char *) PQgetvalue(res, 0, 3);
            to.len = PQgetlength(res, 0, 3);
            data.data = (u_char *) PQgetvalue(res, 0, 4);
            data.len = PQgetlength(res, 0, 4);

            (void) orbit_rt_broadcast(&ar->who.tenant_id, rooms, 2, &to,
                                      "new_message", &data, NULL,
                                      ar->r->connection->log);
        }

        json_decref(m);
    }

    orbit_api_respond_row(ar, res);
}


/* what a message of type may hold; every problem answered with a 400 */

static ngx_int_t
orbit_msg_content(orbit_api_req_t *ar, const char *type, json_t *content,
    ngx_uint_t note)
{
    json_t      *media, *tpl, *lang, *url;
    const char  *s;

    static const char *const  text_keys[] = { "text", "previewUrl", NULL };
    static const char *const  media_keys[] = { "media", "caption", NULL };
    static const char *const  media_obj_keys[] = {
        "url", "mimeType", "filename", NULL
    };
    static const char *const  tpl_keys[] = { "template", NULL };
    static const char *const  tpl_obj_keys[] = {
        "name", "language", "components", NULL
    };

    if (note && ngx_strcmp(type, "text") != 0) {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                      "a private note is text");
        return NGX_ERROR;
    }

    if (ngx_strcmp(type, "text") == 0) {
        if (orbit_msg_only(ar, content, text_keys, "content") != NGX_OK
            || orbit_msg_text(ar, json_object_get(content, "text"),
                              "content.text", ORBIT_MSG_TEXT_MAX)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (json_object_get(content, "previewUrl")
            && !json_is_boolean(json_object_get(content, "previewUrl")))
        {
            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          "content.previewUrl must be a "
                                          "boolean value");
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_strcmp(type, "template") == 0) {
        tpl = json_object_get(content, "template");
        lang = json_object_get(tpl, "language");

        if (orbit_msg_only(ar, content, tpl_keys, "content") != NGX_OK
            || orbit_msg_only(ar, tpl, tpl_obj_keys, "content.template")
               != NGX_OK
            || orbit_msg_text(ar, json_object_get(tpl, "name"),
                              "content.template.name", 512)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        s = json_is_object(lang) ? json_string_value(json_object_get(lang,
                                                                     "code"))
                                 : json_string_value(lang);

        if (s == NULL || s[0] == '\0' || ngx_strlen(s) > 16) {
            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          "content.template.language must "
                                          "be a language code (en_US) or "
                                          "{code}");
            return NGX_ERROR;
        }

        if (json_object_get(tpl, "components")
            && !json_is_array(json_object_get(tpl, "components")))
        {
            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          "content.template.components "
                                          "must be an array");
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /* media */

    media = json_object_get(content, "media");
    url = json_object_get(media, "url");
    s = json_string_value(url);

    if (orbit_msg_only(ar, content, media_keys, "content") != NGX_OK
        || orbit_msg_only(ar, media, media_obj_keys, "content.media")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (s == NULL || json_string_length(url) > 2048
        || (ngx_strncmp(s, "https://", 8) != 0
            && ngx_strncmp(s, "http://", 7) != 0))
    {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                      "content.media.url must be an http(s) "
                                      "URL");
        return NGX_ERROR;
    }

    if ((json_object_get(media, "mimeType")
         && orbit_msg_text(ar, json_object_get(media, "mimeType"),
                           "content.media.mimeType", 255) != NGX_OK)
        || (json_object_get(media, "filename")
            && orbit_msg_text(ar, json_object_get(media, "filename"),
                              "content.media.filename", 255) != NGX_OK)
        || (json_object_get(content, "caption")
            && orbit_msg_text(ar, json_object_get(content, "caption"),
                              "content.caption", ORBIT_MSG_CAPTION_MAX)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a non-empty string of at most max characters */

static ngx_int_t
orbit_msg_text(orbit_api_req_t *ar, json_t *text, const char *name,
    size_t max)
{
    u_char  msg[128];

    if (json_is_string(text) && json_string_length(text) > 0
        && orbit_utf8_chars(json_string_value(text), json_string_length(text))
           <= max)
    {
        return NGX_OK;
    }

    ngx_snprintf(msg, sizeof(msg), "%s must be a string of 1 to %uz "
                 "characters%Z", name, max);

    ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST, (char *) msg);

    return NGX_ERROR;
}


/* obj is an object of those keys only (the whitelist rule) */

static ngx_int_t
orbit_msg_only(orbit_api_req_t *ar, json_t *obj, const char *const *keys,
    const char *what)
{
    void               *it;
    const char         *key;
    const char *const  *k;
    u_char              msg[160];

    if (!json_is_object(obj)) {
        ngx_snprintf(msg, sizeof(msg), "%s must be an object%Z", what);
        goto bad;
    }

    for (it = json_object_iter(obj); it; it = json_object_iter_next(obj, it))
    {
        key = json_object_iter_key(it);

        for (k = keys; *k; k++) {
            if (ngx_strcmp(*k, key) == 0) {
                break;
            }
        }

        if (*k == NULL) {
            ngx_snprintf(msg, sizeof(msg), "%s.%s should not exist%Z", what,
                         key);
            goto bad;
        }
    }

    return NGX_OK;

bad:

    ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST, (char *) msg);

    return NGX_ERROR;
}
