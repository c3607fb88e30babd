/*
 * OrbitDesk channels: sending a message (see orbit_send.h).
 */

#include "ngx_http_orbit_module.h"
#include "core/orbit_validate.h"
#include "api/orbit_api.h"
#include "channels/orbit_send.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_SEND_TEXT_MAX     4096        /* characters: WhatsApp's cap */
#define ORBIT_SEND_CAPTION_MAX  1024


static const char *orbit_send_content(const char *type, json_t *content,
    ngx_uint_t note, char *err, size_t size);
static const char *orbit_send_text(json_t *text, const char *name,
    size_t max, char *err, size_t size);
static const char *orbit_send_only(json_t *obj, const char *const *keys,
    const char *what, char *err, size_t size);


static const char *const  orbit_send_types[] = {
    "text", "image", "video", "audio", "document", "sticker", "template",
    NULL
};


/*
 * $1 tenant, $2 user (NULL: an API key), $3 role, $4 conversation, $5 the
 * body as stored, $6 replyToId.
 */
const char  orbit_send_sql[] =
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
    "), md AS ("
    "  SELECT m.* FROM media m, b"
    "  WHERE m.tenant_id = $1::uuid"
    "    AND m.id = (b.j #>> '{content,media,mediaId}')::uuid"
    "), ok AS ("
    "  SELECT cv.*, COALESCE((b.j->>'private')::boolean, false) AS note"
    "  FROM cv, b"
    "  WHERE ($6::uuid IS NULL OR EXISTS (SELECT 1 FROM rep))"
    "    AND (b.j #> '{content,media,mediaId}' IS NULL"
    "         OR EXISTS (SELECT 1 FROM md))"
    "    AND (COALESCE((b.j->>'private')::boolean, false)"
    "         OR cv.connection_id IS NOT NULL)"
    "), ins AS ("
    "  INSERT INTO messages (tenant_id, conversation_id, direction, type,"
    "    content, status, private, sender_id, reply_to_id, statuses)"
    "  SELECT $1::uuid, ok.id, 'outbound', b.j->>'type',"
    "    COALESCE((SELECT jsonb_set(b.j->'content', '{media}',"
    "       (b.j #> '{content,media}') || jsonb_strip_nulls("
    "         jsonb_build_object('url', '/api/v1/media/' || md.id,"
    "           'mimeType', md.mime_type, 'size', md.size,"
    "           'filename', COALESCE(b.j #>> '{content,media,filename}',"
    "                                md.filename))))"
    "      FROM md), b.j->'content'),"
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
    "  INSERT INTO tenant_counters AS t (tenant_id, shard,"
    "    messages_month, messages_in_month)"
    "  SELECT $1::uuid, orbit_counter_shard(),"
    "    date_trunc('month', now())::date, 1"
    "  FROM ins WHERE NOT ins.private"
    "  ON CONFLICT (tenant_id, shard) DO UPDATE SET"
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
    " UNION ALL SELECT 400, NULL,"
    "   'replyToId is not a message of this conversation', NULL, NULL"
    " FROM cv WHERE $6::uuid IS NOT NULL"
    "   AND NOT EXISTS (SELECT 1 FROM rep)"
    " UNION ALL SELECT 400, NULL,"
    "   'content.media.mediaId is not a media of this tenant', NULL, NULL"
    " FROM cv, b WHERE b.j #> '{content,media,mediaId}' IS NOT NULL"
    "   AND NOT EXISTS (SELECT 1 FROM md)"
    " UNION ALL SELECT 409, NULL, 'This conversation''s channel is not "
    "connected any more: nothing can be sent on it', NULL, NULL"
    " FROM cv WHERE cv.connection_id IS NULL"
    " UNION ALL SELECT 404, NULL, 'Conversation not found', NULL, NULL"
    " LIMIT 1";


const char *
orbit_send_check(json_t *body, char *err, size_t size)
{
    json_t            *content;
    size_t             n;
    ngx_uint_t         note;
    const char        *type;
    orbit_v_errors_t   errs;

    static const orbit_v_field_t  fields[] = {
        { "conversationId", ORBIT_V_STRING, 1, 0, ORBIT_V_UUID, 0, 0, NULL },
        { "type", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0, orbit_send_types },
        { "content", ORBIT_V_OBJECT, 1, 0, ORBIT_V_ANY, 0, 0, NULL },
        { "replyToId", ORBIT_V_STRING, 0, 1, ORBIT_V_UUID, 0, 0, NULL },
        { "private", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
        { NULL, 0, 0, 0, 0, 0, 0, NULL }
    };

    if (!json_is_object(body)) {
        return "the message must be a JSON object";
    }

    content = json_object_get(body, "content");

    /* "content": "Hello!" is a text's */

    if (json_is_string(content)) {
        content = json_pack("{s:O}", "text", content);
        if (content == NULL || json_object_set_new(body, "content", content)) {
            return "out of memory";
        }
    }

    n = orbit_validate(body, fields, &errs);
    if (n) {
        ngx_cpystrn((u_char *) err, (u_char *) errs.messages[0], size);
        return err;
    }

    type = json_string_value(json_object_get(body, "type"));

    if (type == NULL) {
        type = "text";
        json_object_set_new(body, "type", json_string(type));
    }

    note = json_is_true(json_object_get(body, "private"));

    return orbit_send_content(type, content, note, err, size);
}


ngx_int_t
orbit_send_params(ngx_pool_t *pool, json_t *body, ngx_str_t *tenant,
    ngx_str_t *user, const char *role, const char ***values)
{
    char         *text;
    const char   *s, **v;

    v = ngx_pcalloc(pool, ORBIT_SEND_PARAMS * sizeof(char *));
    if (v == NULL) {
        return NGX_ERROR;
    }

    v[0] = orbit_api_strdup_n(pool, tenant->data, tenant->len);

    if (user && user->len) {
        v[1] = orbit_api_strdup_n(pool, user->data, user->len);
        v[2] = role;
    }

    /*
     * Copied: the values are read when the statement is sent, which may
     * be after body is gone (a socket's send_message waits for a free
     * connection, its frame released meanwhile).
     */

    s = json_string_value(json_object_get(body, "conversationId"));

    if (s && (v[3] = orbit_api_strdup(pool, s)) == NULL) {
        return NGX_ERROR;
    }

    s = json_string_value(json_object_get(body, "replyToId"));

    if (s && (v[5] = orbit_api_strdup(pool, s)) == NULL) {
        return NGX_ERROR;
    }

    text = json_dumps(body, JSON_COMPACT);
    if (text == NULL) {
        return NGX_ERROR;
    }

    v[4] = orbit_api_strdup(pool, text);
    free(text);

    if (v[0] == NULL || v[4] == NULL || (user && user->len && v[1] == NULL))
    {
        return NGX_ERROR;
    }

    *values = v;

    return NGX_OK;
}


void
orbit_send_publish(PGresult *res, ngx_str_t *tenant, ngx_log_t *log)
{
    json_t      *m;
    const char  *cid;
    ngx_str_t    to, data, conversation;

    if (PQntuples(res) != 1 || ngx_strcmp(PQgetvalue(res, 0, 0), "201") != 0
        || PQgetisnull(res, 0, 4))
    {
        return;
    }

    m = json_loadb(PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1), 0, NULL);
    cid = json_string_value(json_object_get(m, "conversationId"));

    if (cid) {
        conversation.data = (u_char *) cid;
        conversation.len = ngx_strlen(cid);
        to.data = (u_char *) PQgetvalue(res, 0, 3);
        to.len = PQgetlength(res, 0, 3);
        data.data = (u_char *) PQgetvalue(res, 0, 4);
        data.len = PQgetlength(res, 0, 4);

        (void) orbit_rt_inbox_event(tenant, &conversation, &to,
                                    "new_message", &data, log);
    }

    json_decref(m);
}


/* what a message of type may hold */

static const char *
orbit_send_content(const char *type, json_t *content, ngx_uint_t note,
    char *err, size_t size)
{
    json_t      *media, *tpl, *lang, *url, *id;
    const char  *s, *why;

    static const char *const  text_keys[] = { "text", "previewUrl", NULL };
    static const char *const  media_keys[] = { "media", "caption", NULL };
    static const char *const  media_obj_keys[] = {
        "url", "mediaId", "mimeType", "filename", NULL
    };
    static const char *const  tpl_keys[] = { "template", NULL };
    static const char *const  tpl_obj_keys[] = {
        "name", "language", "components", NULL
    };

    if (note && ngx_strcmp(type, "text") != 0) {
        return "a private note is text";
    }

    if (ngx_strcmp(type, "text") == 0) {
        why = orbit_send_only(content, text_keys, "content", err, size);
        if (why == NULL) {
            why = orbit_send_text(json_object_get(content, "text"),
                                  "content.text", ORBIT_SEND_TEXT_MAX, err,
                                  size);
        }

        if (why == NULL && json_object_get(content, "previewUrl")
            && !json_is_boolean(json_object_get(content, "previewUrl")))
        {
            why = "content.previewUrl must be a boolean value";
        }

        return why;
    }

    if (ngx_strcmp(type, "template") == 0) {
        tpl = json_object_get(content, "template");
        lang = json_object_get(tpl, "language");

        why = orbit_send_only(content, tpl_keys, "content", err, size);
        if (why == NULL) {
            why = orbit_send_only(tpl, tpl_obj_keys, "content.template", err,
                                  size);
        }

        if (why == NULL) {
            why = orbit_send_text(json_object_get(tpl, "name"),
                                  "content.template.name", 512, err, size);
        }

        if (why) {
            return why;
        }

        s = json_is_object(lang) ? json_string_value(json_object_get(lang,
                                                                     "code"))
                                 : json_string_value(lang);

        if (s == NULL || s[0] == '\0' || ngx_strlen(s) > 16) {
            return "content.template.language must be a language code "
                   "(en_US) or {code}";
        }

        if (json_object_get(tpl, "components")
            && !json_is_array(json_object_get(tpl, "components")))
        {
            return "content.template.components must be an array";
        }

        return NULL;
    }

    /* media */

    media = json_object_get(content, "media");
    url = json_object_get(media, "url");
    s = json_string_value(url);

    why = orbit_send_only(content, media_keys, "content", err, size);
    if (why == NULL) {
        why = orbit_send_only(media, media_obj_keys, "content.media", err,
                              size);
    }

    if (why) {
        return why;
    }

    id = json_object_get(media, "mediaId");

    if (id) {
        /* an upload (POST /api/v1/media): the statement finds it */

        if (url) {
            return "content.media takes a url or a mediaId, not both";
        }

        if (!json_is_string(id)
            || !orbit_valid_uuid(json_string_value(id),
                                json_string_length(id)))
        {
            return "content.media.mediaId must be a UUID";
        }

    } else if (s == NULL || json_string_length(url) > 2048
               || (ngx_strncmp(s, "https://", 8) != 0
                   && ngx_strncmp(s, "http://", 7) != 0))
    {
        return "content.media.url must be an http(s) URL, or "
               "content.media.mediaId an upload's id";
    }

    if (json_object_get(media, "mimeType")) {
        why = orbit_send_text(json_object_get(media, "mimeType"),
                              "content.media.mimeType", 255, err, size);
    }

    if (why == NULL && json_object_get(media, "filename")) {
        why = orbit_send_text(json_object_get(media, "filename"),
                              "content.media.filename", 255, err, size);
    }

    if (why == NULL && json_object_get(content, "caption")) {
        why = orbit_send_text(json_object_get(content, "caption"),
                              "content.caption", ORBIT_SEND_CAPTION_MAX, err,
                              size);
    }

    return why;
}


/* a non-empty string of at most max characters */

static const char *
orbit_send_text(json_t *text, const char *name, size_t max, char *err,
    size_t size)
{
    if (json_is_string(text) && json_string_length(text) > 0
        && orbit_utf8_chars(json_string_value(text), json_string_length(text))
           <= max)
    {
        return NULL;
    }

    ngx_snprintf((u_char *) err, size, "%s must be a string of 1 to %uz "
                 "characters%Z", name, max);

    return err;
}


/* obj is an object of those keys only (the whitelist rule) */

static const char *
orbit_send_only(json_t *obj, const char *const *keys, const char *what,
    char *err, size_t size)
{
    void               *it;
    const char         *key;
    const char *const  *k;

    if (!json_is_object(obj)) {
        ngx_snprintf((u_char *) err, size, "%s must be an object%Z", what);
        return err;
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
            ngx_snprintf((u_char *) err, size, "%s.%s should not exist%Z",
                         what, key);
            return err;
        }
    }

    return NULL;
}
