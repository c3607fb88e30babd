/*
 * OrbitDesk REST: the inbox.
 *
 *   GET   /conversations?channel=&status=&assigneeId=&tag=&unread=
 *                        &contactId=&limit=&cursor=    newest activity first
 *   GET   /conversations/unread                  {"conversations": N}
 *   GET   /conversations/:id
 *   PATCH /conversations/:id {status?, assigneeId?, tags?}
 *   POST  /conversations/:id/read                unread -> 0, receipts out
 *   GET   /conversations/:id/messages?limit=&cursor=   newest first
 *
 * An AGENT sees the conversations assigned to them, and only those;
 * admins and managers see the tenant's, and alone assign.  Each request is
 * one statement; the shapes come from orbit_conversation_json() and
 * orbit_message_json() (006_inbox.sql), the ones the real-time events
 * carry.
 */

#include "api/orbit_api.h"
#include "realtime/orbit_rooms.h"


/*
 * $1 tenant, $2 user (NULL for an API key), $3 role ("AGENT" sees only
 * what is assigned to it).
 */
#define ORBIT_CONV_VISIBLE                                                   \
    "c.tenant_id = $1::uuid"                                                 \
    " AND ($3::text IS DISTINCT FROM 'AGENT' OR c.assignee_id = $2::uuid)"

#define ORBIT_CONV_PAGE_MAX  "101"

/* a page of "page" (j, at, id), $n rows shown, and the next cursor */
#define ORBIT_CONV_PAGE(n)                                                   \
    "'data', COALESCE((SELECT json_agg(p.j ORDER BY p.at DESC, p.id DESC)"   \
    "  FROM (SELECT * FROM page LIMIT $" n "::int) p), '[]'),"               \
    " 'nextCursor', CASE WHEN EXISTS (SELECT 1 FROM page OFFSET $" n "::int)"\
    "  THEN (SELECT (extract(epoch FROM p.at) * 1000000)::bigint || '.'"     \
    "        || p.id FROM page p OFFSET $" n "::int - 1 LIMIT 1) END"

/* (at, id) before the cursor $us/$id (both NULL on the first page) */
#define ORBIT_CONV_BEFORE(at, id, us, cid)                                   \
    "(" at ", " id ") < ("                                                   \
    "  COALESCE('epoch'::timestamptz + $" us "::bigint"                      \
    "           * interval '1 microsecond', 'infinity'),"                    \
    "  COALESCE($" cid "::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))"


static ngx_int_t orbit_conv_who(orbit_api_req_t *ar, const char **v);
static const char **orbit_conv_params(orbit_api_req_t *ar, ngx_uint_t n);
static ngx_int_t orbit_conv_tags(orbit_api_req_t *ar, json_t *tags);
static void orbit_conv_updated(orbit_api_req_t *ar, PGresult *res);
static ngx_int_t orbit_conv_bool_arg(orbit_api_req_t *ar, const char *name,
    const char **out);


static const char *const  orbit_conv_channels[] = {
    "whatsapp", "telegram", "messenger", "instagram", "email", "sms",
    "livechat", "api", NULL
};

static const char *const  orbit_conv_statuses[] = {
    "open", "assigned", "pending", "resolved", NULL
};


/*
 * GET /api/v1/conversations: {"data": [conversation...], "nextCursor"}.
 * assigneeId is a user's id, "me" or "none"; unread true or false.
 */

ngx_int_t
orbit_api_conversations_list(orbit_api_req_t *ar)
{
    char         *assignee, *tag, *contact;
    const char  **v, *cursor;

    static const char  sql[] =
        "WITH page AS ("
        "  SELECT orbit_conversation_json(c, k) AS j, c.last_message_at AS at,"
        "    c.id"
        "  FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        "  WHERE " ORBIT_CONV_VISIBLE
        "    AND ($4::text IS NULL OR c.channel = $4::text)"
        "    AND ($5::text IS NULL OR c.status = $5::text)"
        "    AND ($6::uuid IS NULL OR c.assignee_id = $6::uuid)"
        "    AND ($7::boolean IS NULL OR c.assignee_id IS NULL)"
        "    AND ($8::text IS NULL OR c.tags @> ARRAY[$8::text])"
        "    AND ($9::boolean IS NULL OR (c.unread_count > 0) = $9::boolean)"
        "    AND ($10::uuid IS NULL OR c.contact_id = $10::uuid)"
        "    AND " ORBIT_CONV_BEFORE("c.last_message_at", "c.id", "11", "12")
        "  ORDER BY c.last_message_at DESC, c.id DESC"
        "  LIMIT " ORBIT_CONV_PAGE_MAX
        ")"
        " SELECT 200, json_build_object(" ORBIT_CONV_PAGE("13") "), NULL";

    v = ngx_pcalloc(ar->r->pool, 13 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_conv_who(ar, v) != NGX_OK
        || orbit_api_arg_enum(ar, "channel", orbit_conv_channels, &v[3])
           != NGX_OK
        || orbit_api_arg_enum(ar, "status", orbit_conv_statuses, &v[4])
           != NGX_OK
        || orbit_conv_bool_arg(ar, "unread", &v[8]) != NGX_OK
        || orbit_api_page_args(ar, &v[12], &cursor, 100) != NGX_OK)
    {
        return ar->rc;
    }

    if (cursor && orbit_api_cursor(ar, cursor, &v[10], &v[11]) != NGX_OK) {
        return ar->rc;
    }

    assignee = orbit_api_arg(ar, "assigneeId");

    if (assignee && ngx_strcmp(assignee, "none") == 0) {
        v[6] = "true";

    } else if (assignee && ngx_strcmp(assignee, "me") == 0) {
        if (v[1] == NULL) {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "assigneeId=me needs a user's "
                                        "token, not an API key");
        }

        v[5] = v[1];

    } else if (assignee) {
        if (!orbit_valid_uuid(assignee, ngx_strlen(assignee))) {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "assigneeId must be a UUID, me or "
                                        "none");
        }

        v[5] = assignee;
    }

    tag = orbit_api_arg(ar, "tag");

    if (tag) {
        if (tag[0] == '\0' || !orbit_valid_utf8(tag, ngx_strlen(tag))
            || orbit_utf8_chars(tag, ngx_strlen(tag)) > 50)
        {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "tag must be UTF-8 text of at most "
                                        "50 characters");
        }

        v[7] = tag;
    }

    contact = orbit_api_arg(ar, "contactId");

    if (contact) {
        if (!orbit_valid_uuid(contact, ngx_strlen(contact))) {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "contactId must be a UUID");
        }

        v[9] = contact;
    }

    return orbit_api_query(ar, sql, 13, v, orbit_api_respond_row);
}


/*
 * GET /api/v1/conversations/unread: the conversations with unread
 * messages — the tenant's counter for staff, an agent's own (bounded by
 * their assignments) for an agent.
 */

ngx_int_t
orbit_api_conversations_unread(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, json_build_object('conversations', CASE"
        "  WHEN $3::text IS DISTINCT FROM 'AGENT' THEN"
        "    (SELECT GREATEST(COALESCE(sum(t.unread_conversations), 0), 0)"
        "     FROM tenant_counters t WHERE t.tenant_id = $1::uuid)"
        "  ELSE (SELECT count(*) FROM conversations c"
        "        WHERE c.assignee_id = $2::uuid AND c.tenant_id = $1::uuid"
        "          AND c.unread_count > 0) END), NULL";

    v = ngx_pcalloc(ar->r->pool, 3 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_conv_who(ar, v) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/* GET /api/v1/conversations/:id */

ngx_int_t
orbit_api_conversations_get(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, orbit_conversation_json(c, k), NULL"
        " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        " WHERE " ORBIT_CONV_VISIBLE " AND c.id = $4::uuid"
        " UNION ALL SELECT 404, NULL, 'Conversation not found'"
        " LIMIT 1";

    v = orbit_conv_params(ar, 4);
    if (v == NULL) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/*
 * PATCH /api/v1/conversations/:id {status?, assigneeId? (a user of the
 * tenant, or null), tags? (replaced)}.  Assigning an open conversation
 * makes it "assigned", unassigning an assigned one "open", unless the
 * body names a status.  The staff, the new and the former assignee hear
 * a "notification" {type: "conversation_updated", conversation}.
 */

ngx_int_t
orbit_api_conversations_update(orbit_api_req_t *ar)
{
    char         *body;
    json_t       *j, *assignee, *tags;
    const char  **v, *status;

    static const orbit_v_field_t  fields[] = {
        { "status", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0,
          orbit_conv_statuses },
        { "assigneeId", ORBIT_V_STRING, 0, 1, ORBIT_V_UUID, 0, 0, NULL },
        { "tags", ORBIT_V_STRINGS, 0, 0, ORBIT_V_ANY, 0, 50, NULL },
        { NULL, 0, 0, 0, 0, 0, 0, NULL }
    };

    static const char  sql[] =
        "WITH b AS (SELECT $5::jsonb AS j"
        "), cur AS ("
        "  SELECT c.id, c.status, c.assignee_id FROM conversations c"
        "  WHERE " ORBIT_CONV_VISIBLE " AND c.id = $4::uuid"
        "  FOR UPDATE"
        "), who AS ("
        "  SELECT u.id FROM users u, b"
        "  WHERE jsonb_typeof(b.j->'assigneeId') = 'string'"
        "    AND u.id = (b.j->>'assigneeId')::uuid"
        "    AND u.tenant_id = $1::uuid AND u.is_active"
        "), bad AS ("
        "  SELECT 1 FROM b"
        "  WHERE jsonb_typeof(b.j->'assigneeId') = 'string'"
        "    AND NOT EXISTS (SELECT 1 FROM who)"
        "), upd AS ("
        "  UPDATE conversations c SET"
        "    assignee_id = CASE WHEN b.j ? 'assigneeId'"
        "                       THEN (SELECT id FROM who)"
        "                       ELSE c.assignee_id END,"
        "    status = COALESCE(b.j->>'status', CASE"
        "      WHEN NOT b.j ? 'assigneeId' THEN c.status"
        "      WHEN (SELECT id FROM who) IS NULL AND c.status = 'assigned'"
        "        THEN 'open'"
        "      WHEN (SELECT id FROM who) IS NOT NULL AND c.status = 'open'"
        "        THEN 'assigned'"
        "      ELSE c.status END),"
        "    tags = CASE WHEN b.j ? 'tags'"
        "                THEN ARRAY(SELECT DISTINCT t FROM"
        "                  jsonb_array_elements_text(b.j->'tags') t)"
        "                ELSE c.tags END,"
        "    updated_at = now()"
        "  FROM b, cur"
        "  WHERE c.id = cur.id AND NOT EXISTS (SELECT 1 FROM bad)"
        "  RETURNING c AS row, c.assignee_id, c.contact_id"
        ")"
        " SELECT 200, orbit_conversation_json(u.row, k), NULL,"
        "   trim('staff ' || COALESCE(u.assignee_id::text, '') || ' '"
        "        || COALESCE(NULLIF(cur.assignee_id, u.assignee_id)::text,"
        "                    ''))"
        " FROM upd u JOIN contacts k ON k.id = u.contact_id, cur"
        " UNION ALL SELECT 400, NULL,"
        "   'assigneeId must be an active user of this tenant', NULL"
        " FROM bad, cur"
        " UNION ALL SELECT 404, NULL, 'Conversation not found', NULL"
        " LIMIT 1";

    if (orbit_api_validate(ar, fields) != NGX_OK) {
        return ar->rc;
    }

    j = ar->body;
    assignee = json_object_get(j, "assigneeId");
    tags = json_object_get(j, "tags");
    status = json_string_value(json_object_get(j, "status"));

    if (json_object_size(j) == 0) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "Give status, assigneeId or tags");
    }

    if (assignee) {
        if (!(ar->who.role & (ORBIT_ROLE_ADMIN|ORBIT_ROLE_MANAGER))) {
            return orbit_api_send_error(ar, NGX_HTTP_FORBIDDEN,
                                        "Only admins and managers assign "
                                        "conversations");
        }
    }

    if (status && ngx_strcmp(status, "assigned") == 0 && json_is_null(assignee))
    {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "status assigned needs an assignee");
    }

    if (tags && orbit_conv_tags(ar, tags) != NGX_OK) {
        return ar->rc;
    }

    v = orbit_conv_params(ar, 5);
    if (v == NULL) {
        return ar->rc;
    }

    body = json_dumps(j, JSON_COMPACT);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[4] = orbit_api_strdup(ar->r->pool, body);
    free(body);

    if (v[4] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 5, v, orbit_conv_updated);
}


/*
 * POST /api/v1/conversations/:id/read: no unread messages left; where the
 * channel has read receipts, a job sends one for the newest inbound
 * message (message.read).
 */

ngx_int_t
orbit_api_conversations_read(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH cur AS ("
        "  SELECT c.id, c.unread_count, c.connection_id FROM conversations c"
        "  WHERE " ORBIT_CONV_VISIBLE " AND c.id = $4::uuid"
        "  FOR UPDATE"
        "), upd AS ("
        "  UPDATE conversations c SET unread_count = 0, updated_at = now()"
        "  FROM cur WHERE c.id = cur.id AND cur.unread_count > 0"
        "  RETURNING c.*"
        "), cnt AS ("
        "  INSERT INTO tenant_counters AS t (tenant_id, shard,"
        "    unread_conversations)"
        "  SELECT $1::uuid, orbit_counter_shard(), -1 FROM upd"
        "  ON CONFLICT (tenant_id, shard) DO UPDATE"
        "    SET unread_conversations = t.unread_conversations - 1,"
        "      updated_at = now()"
        "), last AS ("
        "  SELECT m.id, m.created_at, m.provider_message_id"
        "  FROM messages m, upd"
        "  WHERE m.conversation_id = upd.id AND m.direction = 'inbound'"
        "    AND m.provider_message_id IS NOT NULL"
        "  ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
        "), job AS ("
        "  INSERT INTO jobs (tenant_id, kind, payload)"
        "  SELECT $1::uuid, 'message.read', jsonb_build_object("
        "    'conversationId', upd.id, 'connectionId', upd.connection_id,"
        "    'messageId', last.id, 'providerMessageId',"
        "    last.provider_message_id)"
        "  FROM upd, last WHERE upd.connection_id IS NOT NULL"
        ")"
        " SELECT 200, orbit_conversation_json(c, k), NULL"
        " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        " WHERE c.id = (SELECT id FROM cur) AND NOT EXISTS (SELECT 1 FROM upd)"
        " UNION ALL SELECT 200, orbit_conversation_json(u, k), NULL"
        " FROM upd u JOIN contacts k ON k.id = u.contact_id"
        " UNION ALL SELECT 404, NULL, 'Conversation not found'"
        " LIMIT 1";

    v = orbit_conv_params(ar, 4);
    if (v == NULL) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/*
 * GET /api/v1/conversations/:id/messages?limit=&cursor=: newest first,
 * private notes included (they never leave the inbox, but agents see
 * them).
 */

ngx_int_t
orbit_api_conversations_messages(orbit_api_req_t *ar)
{
    const char  **v, *cursor;

    static const char  sql[] =
        "WITH cv AS ("
        "  SELECT c.id FROM conversations c"
        "  WHERE " ORBIT_CONV_VISIBLE " AND c.id = $4::uuid"
        "), page AS ("
        "  SELECT orbit_message_json(m) AS j, m.created_at AS at, m.id"
        "  FROM messages m"
        "  WHERE m.conversation_id = (SELECT id FROM cv)"
        "    AND " ORBIT_CONV_BEFORE("m.created_at", "m.id", "5", "6")
        "  ORDER BY m.created_at DESC, m.id DESC"
        "  LIMIT " ORBIT_CONV_PAGE_MAX
        ")"
        " SELECT 200, json_build_object(" ORBIT_CONV_PAGE("7") "), NULL"
        " FROM cv"
        " UNION ALL SELECT 404, NULL, 'Conversation not found'"
        " LIMIT 1";

    v = orbit_conv_params(ar, 7);
    if (v == NULL || orbit_api_page_args(ar, &v[6], &cursor, 100) != NGX_OK) {
        return ar->rc;
    }

    if (cursor && orbit_api_cursor(ar, cursor, &v[4], &v[5]) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 7, v, orbit_api_respond_row);
}


/* the update's answer, and its notification to whom it concerns */

static void
orbit_conv_updated(orbit_api_req_t *ar, PGresult *res)
{
    ngx_str_t   tenant, room, to, data;
    u_char      buf[sizeof("tenant:") + 40];
    u_char     *p;

    if (PQntuples(res) == 1 && ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                                        PQgetlength(res, 0, 0)) == 200)
    {
        tenant = ar->who.tenant_id;

        room.data = buf;
        room.len = ngx_snprintf(buf, sizeof(buf), "tenant:%V", &tenant)
                   - buf;

        to.data = (u_char *) PQgetvalue(res, 0, 3);
        to.len = PQgetlength(res, 0, 3);

        /* {"type":"conversation_updated","conversation":...} */

        data.len = sizeof("{\"type\":\"conversation_updated\","
                          "\"conversation\":}") - 1
                   + PQgetlength(res, 0, 1);

        data.data = ngx_pnalloc(ar->r->pool, data.len);

        if (data.data) {
            p = ngx_cpymem(data.data, "{\"type\":\"conversation_updated\","
                           "\"conversation\":",
                           sizeof("{\"type\":\"conversation_updated\","
                                  "\"conversation\":") - 1);
            p = ngx_cpymem(p, PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1));
            *p = '}';

            (void) orbit_rt_broadcast(&tenant, &room, 1, &to, "notification",
                                      &data, NULL, ar->r->connection->log);
        }
    }

    orbit_api_respond_row(ar, res);
}


/* $1 tenant, $2 user or NULL, $3 role name */

static ngx_int_t
orbit_conv_who(orbit_api_req_t *ar, const char **v)
{
    v[0] = orbit_api_tenant(ar);
    if (v[0] == NULL) {
        return NGX_ERROR;
    }

    if (ar->who.kind == ORBIT_AUTH_USER) {
        v[1] = orbit_api_strdup_n(ar->r->pool, ar->who.user_id.data,
                                  ar->who.user_id.len);
        v[2] = orbit_auth_role_name(ar->who.role);

        if (v[1] == NULL) {
            ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* n parameters: $1-$3 the caller's (orbit_conv_who), $4 the route's :id */

static const char **
orbit_conv_params(orbit_api_req_t *ar, ngx_uint_t n)
{
    const char  **v;

    v = ngx_pcalloc(ar->r->pool, n * sizeof(char *));
    if (v == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    if (orbit_conv_who(ar, v) != NGX_OK
        || orbit_api_uuid_param(ar, 0, &v[3]) != NGX_OK)
    {
        return NULL;
    }

    return v;
}


/* tags (strings, the validator says): of 1 to 50 characters */

static ngx_int_t
orbit_conv_tags(orbit_api_req_t *ar, json_t *tags)
{
    size_t   i;
    json_t  *t;

    json_array_foreach(tags, i, t) {
        if (json_string_length(t) == 0
            || orbit_utf8_chars(json_string_value(t), json_string_length(t))
               > 50)
        {
            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          "each tag must be a string of 1 "
                                          "to 50 characters");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* ?name=true|false, or absent */

static ngx_int_t
orbit_conv_bool_arg(orbit_api_req_t *ar, const char *name, const char **out)
{
    static const char *const  bools[] = { "true", "false", NULL };

    return orbit_api_arg_enum(ar, name, bools, out);
}
