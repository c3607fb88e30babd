/*
 * OrbitDesk REST: /api/v1/channels — a tenant's channel connections: its
 * WhatsApp numbers, Telegram bots, pages, inboxes, SMS numbers, live-chat
 * widgets and API channels.
 *
 *   GET    /channels?limit=&cursor=&channel=   ADMIN, MANAGER (newest first)
 *   POST   /channels                           ADMIN -> 201
 *   GET    /channels/:id                       ADMIN, MANAGER
 *   PATCH  /channels/:id                       ADMIN
 *   DELETE /channels/:id                       ADMIN -> 204
 *
 * Credentials, a flat object of secret strings, are sealed here before
 * the statement (src/channels/orbit_channel_creds.h), bound to the row by
 * its tenant and its id (made here for a new row): PostgreSQL never gets
 * them in the clear, so neither do its logs.  It keeps the box and a hint
 * (the same keys, each value masked), and every answer shows the hint
 * only.  An "api" channel without credentials.secret gets a signing
 * secret made here, shown once in the answer that made it, like an API
 * key's; "api" and "livechat" connections without an accountId get one
 * made here too; a "telegram" connection's is its bot's id, the digits
 * of credentials.botToken before ":" when it gives none.
 * (channel, accountId) is unique across tenants: inbound
 * webhooks are routed by it.  API keys may not call these routes.
 */

#include "api/orbit_api.h"
#include "channels/orbit_channel_creds.h"


#define ORBIT_CHANNEL_MAX_NAME        100     /* characters */
#define ORBIT_CHANNEL_MAX_ACCOUNT     200     /* characters */
#define ORBIT_CHANNEL_MAX_CONFIG_KEYS 50
#define ORBIT_CHANNEL_MAX_CONFIG      16384   /* bytes of compact JSON */

#define ORBIT_CHANNEL_ACCOUNT_BYTES   18      /* "api_" + 24 characters */
#define ORBIT_CHANNEL_SECRET_BYTES    32      /* 43 characters */
#define ORBIT_CHANNEL_SECRET_LEN                                             \
    ORBIT_TOKEN_LEN(ORBIT_CHANNEL_SECRET_BYTES)


#define ORBIT_CHANNEL_JSON                                                   \
    "json_build_object('id', c.id, 'channel', c.channel, 'name', c.name,"   \
    " 'accountId', c.account_id, 'config', c.config,"                       \
    " 'credentials', c.credentials_hint, 'status', c.status,"               \
    " 'setup', c.setup, 'createdAt', c.created_at,"                         \
    " 'updatedAt', c.updated_at)"

/* what the audit log keeps of a connection: never a value of credentials */
#define ORBIT_CHANNEL_AUDIT                                                  \
    "jsonb_build_object('channel', c.channel, 'name', c.name,"              \
    " 'accountId', c.account_id, 'status', c.status,"                       \
    " 'credentialKeys', ARRAY(SELECT jsonb_object_keys(c.credentials_hint)" \
    "   ORDER BY 1))"


typedef struct {
    ngx_str_t                    id;           /* the connection's */
    ngx_str_t                    box;          /* bytea text, or empty */
    char                        *hint;         /* JSON */
    ngx_str_t                    gen_box;      /* PATCH: with a secret */
    char                        *gen_hint;
    u_char                       secret[ORBIT_CHANNEL_SECRET_LEN + 1];
} orbit_channel_write_t;


static const char *const  orbit_channel_names[] = {
    "whatsapp", "telegram", "messenger", "instagram", "email", "sms",
    "livechat", "api", NULL
};

static const char *const  orbit_channel_statuses[] = {
    "active", "disabled", NULL
};

/* lengths in characters are checked apart: orbit_channel_check_more() */

static const orbit_v_field_t  orbit_channel_create_fields[] = {
    { "channel", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 0, 0,
      orbit_channel_names },
    { "name", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 0, NULL },
    { "accountId", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 1, 0, NULL },
    { "config", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CHANNEL_MAX_CONFIG_KEYS, NULL },
    { "credentials", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CREDS_MAX_KEYS, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_channel_update_fields[] = {
    { "name", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 1, 0, NULL },
    { "config", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CHANNEL_MAX_CONFIG_KEYS, NULL },
    { "credentials", ORBIT_V_OBJECT, 0, 0, ORBIT_V_ANY, 0,
      ORBIT_CREDS_MAX_KEYS, NULL },
    { "status", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0,
      orbit_channel_statuses },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


static ngx_int_t orbit_channel_check(orbit_api_req_t *ar,
    const orbit_v_field_t *fields, ngx_uint_t create);
static void orbit_channel_check_more(json_t *body, ngx_uint_t create,
    orbit_v_errors_t *errs);
static ngx_int_t orbit_channel_account_generated(const char *channel);
static void orbit_channel_check_bot(json_t *body, orbit_v_errors_t *errs);
static size_t orbit_channel_bot_id(const char *token);
static ngx_int_t orbit_channel_seal(orbit_api_req_t *ar, json_t *creds,
    ngx_str_t *id, ngx_str_t *box, char **hint);
static ngx_int_t orbit_channel_secret(orbit_api_req_t *ar,
    orbit_channel_write_t *w);
static char *orbit_channel_dump(ngx_pool_t *pool, json_t *v);
static void orbit_channel_written(orbit_api_req_t *ar, PGresult *res);


/* GET /api/v1/channels?limit=&cursor=&channel= (newest first) */

ngx_int_t
orbit_api_channels_list(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH page AS ("
        "  SELECT c.* FROM channel_connections c"
        "  WHERE c.tenant_id = $1::uuid"
        "    AND ($4::text IS NULL OR c.channel = $4)"
        "    AND ($3::uuid IS NULL OR (c.created_at, c.id) <"
        "      (SELECT created_at, id FROM channel_connections"
        "       WHERE id = $3::uuid AND tenant_id = $1::uuid))"
        "  ORDER BY c.created_at DESC, c.id DESC"
        "  LIMIT $2::int + 1"
        "), shown AS ("
        "  SELECT * FROM page ORDER BY created_at DESC, id DESC"
        "  LIMIT $2::int"
        ")"
        " SELECT 200, json_build_object("
        "  'data', COALESCE((SELECT json_agg(" ORBIT_CHANNEL_JSON
        "    ORDER BY c.created_at DESC, c.id DESC) FROM shown c), '[]'),"
        "  'nextCursor', CASE WHEN (SELECT count(*) FROM page) > $2::int"
        "    THEN (SELECT id FROM shown ORDER BY created_at, id LIMIT 1)"
        "    END)";

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_page_args(ar, &v[1], &v[2], 100) != NGX_OK
        || orbit_api_arg_enum(ar, "channel", orbit_channel_names, &v[3])
           != NGX_OK)
    {
        return ar->rc;
    }

    if (v[2] && !orbit_valid_uuid(v[2], ngx_strlen(v[2]))) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "cursor must be a channel connection "
                                    "id");
    }

    /* the caller's own tenant, never one from the request */
    v[0] = (char *) ar->who.tenant_id.data;

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/* GET /api/v1/channels/:id */

ngx_int_t
orbit_api_channels_get(orbit_api_req_t *ar)
{
    static const char  sql[] =
        "SELECT 200, " ORBIT_CHANNEL_JSON ", NULL"
        " FROM channel_connections c"
        " WHERE c.id = $1::uuid AND c.tenant_id = $2::uuid"
        " UNION ALL SELECT 404, NULL, 'Channel connection not found'"
        " LIMIT 1";

    return orbit_api_query_id(ar, sql, 2, orbit_api_respond_row);
}


/*
 * POST /api/v1/channels {"channel", "name", "accountId"?, "config"?,
 * "credentials"?} -> 201 the connection (and "secret", once, for an "api"
 * channel whose secret was made here); 409 when (channel, accountId) is
 * taken, by any tenant.
 */

ngx_int_t
orbit_api_channels_create(orbit_api_req_t *ar)
{
    u_char                 *p;
    json_t                 *creds;
    const char             *channel, **v;
    orbit_channel_write_t  *w;
    char                    uuid[ORBIT_UUID_LEN + 1];

    static const char  sql[] =
        "WITH c AS ("
        "  INSERT INTO channel_connections (id, tenant_id, channel, name,"
        "    account_id, config, credentials, credentials_hint)"
        "  VALUES ($1::uuid, $2::uuid, $3, $4, $5,"
        "    COALESCE($6::jsonb, '{}'), $7::bytea,"
        "    COALESCE($8::jsonb, '{}'))"
        "  RETURNING *"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT c.tenant_id, $9::uuid, 'channel.created', c.id::text,"
        "    $10::inet, " ORBIT_CHANNEL_AUDIT
        "  FROM c"
        ")"
        " SELECT 201, " ORBIT_CHANNEL_JSON " FROM c";

    if (orbit_channel_check(ar, orbit_channel_create_fields, 1) != NGX_OK) {
        return ar->rc;
    }

    w = ngx_pcalloc(ar->r->pool, sizeof(orbit_channel_write_t));
    v = ngx_pcalloc(ar->r->pool, 10 * sizeof(char *));

    if (w == NULL || v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the id is made here: the box is bound to it before the row exists */

    if (orbit_random_uuid(uuid) != 0) {
        ngx_log_error(NGX_LOG_ALERT, ar->r->connection->log, 0,
                      "orbit: no random bytes for a channel connection");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->id.len = ORBIT_UUID_LEN;
    w->id.data = (u_char *) orbit_api_strdup(ar->r->pool, uuid);

    channel = json_string_value(json_object_get(ar->body, "channel"));

    v[4] = (char *) orbit_api_body_str(ar, "accountId");

    if (v[4] == NULL && ngx_strcmp(channel, "telegram") == 0) {
        /* the bot's id, checked by orbit_channel_check_bot() */
        v[4] = json_string_value(json_object_get(
                   json_object_get(ar->body, "credentials"), "botToken"));
        v[4] = orbit_api_strdup_n(ar->r->pool, (u_char *) v[4],
                                  orbit_channel_bot_id(v[4]));
        if (v[4] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (v[4] == NULL) {
        /* only a channel of ours may lack one: orbit_channel_check() */

        p = ngx_pnalloc(ar->r->pool, sizeof("api_")
                        + ORBIT_TOKEN_LEN(ORBIT_CHANNEL_ACCOUNT_BYTES));
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v[4] = (char *) p;
        p = ngx_cpymem(p, ngx_strcmp(channel, "api") == 0 ? "api_" : "lc_",
                       ngx_strcmp(channel, "api") == 0 ? 4 : 3);

        if (orbit_random_token((char *) p, ORBIT_CHANNEL_ACCOUNT_BYTES) != 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    creds = json_object_get(ar->body, "credentials");

    if (ngx_strcmp(channel, "api") == 0
        && json_object_get(creds, "secret") == NULL)
    {
        if (creds == NULL) {
            creds = json_object();

            /* the body owns it: freed with the request */
            if (creds == NULL
                || json_object_set_new(ar->body, "credentials", creds) != 0)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        if (orbit_channel_secret(ar, w) != NGX_OK
            || json_object_set_new(creds, "secret",
                                   json_string((char *) w->secret)) != 0)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (creds
        && orbit_channel_seal(ar, creds, &w->id, &w->box, &w->hint) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = (char *) w->id.data;
    v[1] = (char *) ar->who.tenant_id.data;
    v[2] = channel;
    v[3] = (char *) orbit_api_body_str(ar, "name");
    v[5] = orbit_channel_dump(ar->r->pool,
                              json_object_get(ar->body, "config"));
    v[6] = creds ? (char *) w->box.data : NULL;
    v[7] = creds ? w->hint : NULL;
    v[8] = (char *) ar->who.user_id.data;
    v[9] = orbit_api_client_ip(ar);

    if (w->id.data == NULL || v[3] == NULL
        || (v[5] == NULL && json_object_get(ar->body, "config")))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->data = w;

    return orbit_api_query(ar, sql, 10, v, orbit_channel_written);
}


/*
 * PATCH /api/v1/channels/:id {"name"?, "config"?, "credentials"?,
 * "status"?}: config and credentials are replaced whole.  New credentials
 * of an "api" channel without a secret get a new one, shown once: the
 * row's channel is known only to the statement, so it is given both
 * boxes, with and without, and keeps the one that fits.
 */

ngx_int_t
orbit_api_channels_update(orbit_api_req_t *ar)
{
    json_t                 *creds, *with;
    ngx_int_t               rc;
    const char            **v;
    orbit_channel_write_t  *w;

    static const char  sql[] =
        "WITH old AS ("
        "  SELECT c.id, c.status FROM channel_connections c"
        "  WHERE c.id = $1::uuid AND c.tenant_id = $2::uuid FOR UPDATE"
        "), u AS ("
        "  UPDATE channel_connections c SET"
        "    name = COALESCE($3, c.name),"
        "    config = COALESCE($4::jsonb, c.config),"
        "    status = COALESCE($5, c.status),"
        "    credentials = CASE WHEN $6::bytea IS NULL THEN c.credentials"
        "      WHEN c.channel = 'api' AND $8::bytea IS NOT NULL THEN $8"
        "      ELSE $6 END,"
        "    credentials_hint = CASE WHEN $6::bytea IS NULL"
        "      THEN c.credentials_hint"
        "      WHEN c.channel = 'api' AND $8::bytea IS NOT NULL"
        "      THEN $9::jsonb ELSE $7::jsonb END,"
        "    updated_at = now()"
        "  FROM old WHERE c.id = old.id"
        "  RETURNING c.*, old.status AS was_status,"
        "    (c.channel = 'api' AND $8::bytea IS NOT NULL) AS generated"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT c.tenant_id, $10::uuid,"
        "    CASE WHEN c.status = c.was_status THEN 'channel.updated'"
        "      WHEN c.status = 'disabled' THEN 'channel.disabled'"
        "      ELSE 'channel.enabled' END,"
        "    c.id::text, $11::inet, " ORBIT_CHANNEL_AUDIT
        "      || jsonb_build_object('credentialsReplaced',"
        "           $6::bytea IS NOT NULL,"
        "         'configReplaced', $4::jsonb IS NOT NULL)"
        "  FROM u c"
        ")"
        " SELECT 200, " ORBIT_CHANNEL_JSON ", NULL, c.generated FROM u c"
        " UNION ALL SELECT 404, NULL, 'Channel connection not found', false"
        " LIMIT 1";

    if (orbit_channel_check(ar, orbit_channel_update_fields, 0) != NGX_OK) {
        return ar->rc;
    }

    w = ngx_pcalloc(ar->r->pool, sizeof(orbit_channel_write_t));
    v = ngx_pcalloc(ar->r->pool, 11 * sizeof(char *));

    if (w == NULL || v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    w->id.data = (u_char *) v[0];
    w->id.len = ngx_strlen(v[0]);

    creds = json_object_get(ar->body, "credentials");

    if (creds) {
        if (orbit_channel_seal(ar, creds, &w->id, &w->box, &w->hint)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v[5] = (char *) w->box.data;
        v[6] = w->hint;
    }

    if (creds && json_object_get(creds, "secret") == NULL) {
        with = json_copy(creds);

        rc = (with == NULL
              || orbit_channel_secret(ar, w) != NGX_OK
              || json_object_set_new(with, "secret",
                                     json_string((char *) w->secret)) != 0
              || orbit_channel_seal(ar, with, &w->id, &w->gen_box,
                                    &w->gen_hint) != NGX_OK)
             ? NGX_ERROR : NGX_OK;

        json_decref(with);

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        v[7] = (char *) w->gen_box.data;
        v[8] = w->gen_hint;
    }

    v[1] = (char *) ar->who.tenant_id.data;
    v[2] = (char *) orbit_api_body_str(ar, "name");
    v[3] = orbit_channel_dump(ar->r->pool,
                              json_object_get(ar->body, "config"));
    v[4] = (char *) orbit_api_body_str(ar, "status");
    v[9] = (char *) ar->who.user_id.data;
    v[10] = orbit_api_client_ip(ar);

    if (v[3] == NULL && json_object_get(ar->body, "config")) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->data = w;

    return orbit_api_query(ar, sql, 11, v, orbit_channel_written);
}


/* DELETE /api/v1/channels/:id -> 204 */

ngx_int_t
orbit_api_channels_delete(orbit_api_req_t *ar)
{
    static const char  sql[] =
        "WITH d AS ("
        "  DELETE FROM channel_connections c"
        "  WHERE c.id = $1::uuid AND c.tenant_id = $2::uuid"
        "  RETURNING c.*"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT c.tenant_id, $3::uuid, 'channel.deleted', c.id::text,"
        "    $4::inet, " ORBIT_CHANNEL_AUDIT
        "  FROM d c"
        ")"
        " SELECT 204, '{}'::json, NULL FROM d"
        " UNION ALL SELECT 404, NULL, 'Channel connection not found'"
        " LIMIT 1";

    return orbit_api_query_id(ar, sql, 4, orbit_api_respond_row);
}


/*
 * orbit_api_validate() plus what its table cannot say: lengths in
 * characters, an accountId where the provider names the account, the
 * size of config, the contents of credentials.  Every message in one 400.
 */

static ngx_int_t
orbit_channel_check(orbit_api_req_t *ar, const orbit_v_field_t *fields,
    ngx_uint_t create)
{
    orbit_v_errors_t  errs;

    orbit_validate(ar->body, fields, &errs);

    if (json_is_object(ar->body)) {
        orbit_channel_check_more(ar->body, create, &errs);
    }

    if (errs.n == 0) {
        return NGX_OK;
    }

    return orbit_api_refuse(ar, &errs);
}


static void
orbit_channel_check_more(json_t *body, ngx_uint_t create,
    orbit_v_errors_t *errs)
{
    size_t       i, len;
    json_t      *v, *channel;
    const char  *s;

    v = json_object_get(body, "name");

    if (json_is_string(v)
        && orbit_utf8_chars(json_string_value(v), json_string_length(v))
           > ORBIT_CHANNEL_MAX_NAME)
    {
        orbit_validate_add(errs, "name must be shorter than or equal to 100 "
                           "characters");
    }

    v = json_object_get(body, "accountId");
    channel = json_object_get(body, "channel");

    if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);

        for (i = 0; i < len; i++) {
            if ((u_char) s[i] < 0x20 || s[i] == 0x7f) {
                break;
            }
        }

        if (i < len
            || orbit_utf8_chars(s, len) > ORBIT_CHANNEL_MAX_ACCOUNT)
        {
            orbit_validate_add(errs, "accountId must be 1 to 200 "
                               "characters, without control characters");
        }

    } else if (create && v == NULL && json_is_string(channel)
               && !orbit_channel_account_generated(
                       json_string_value(channel))
               && ngx_strcmp(json_string_value(channel), "telegram") != 0)
    {
        /* the provider's name of the account: inbound is routed by it */
        orbit_validate_add(errs, "accountId should not be empty");
    }

    if (create && v == NULL && json_is_string(channel)
        && ngx_strcmp(json_string_value(channel), "telegram") == 0)
    {
        orbit_channel_check_bot(body, errs);
    }

    v = json_object_get(body, "config");

    if (json_is_object(v)
        && json_object_size(v) <= ORBIT_CHANNEL_MAX_CONFIG_KEYS
        && json_dumpb(v, NULL, 0, JSON_COMPACT) > ORBIT_CHANNEL_MAX_CONFIG)
    {
        orbit_validate_add(errs, "config must be at most 16384 bytes of "
                           "JSON");
    }

    v = json_object_get(body, "credentials");

    if (json_is_object(v) && json_object_size(v) <= ORBIT_CREDS_MAX_KEYS) {
        orbit_creds_validate(v, errs);
    }
}


/*
 * A Telegram bot without an accountId: its id is taken from
 * credentials.botToken, "<bot id>:<secret>".  (A given accountId is
 * checked against the token by the channel.setup job, which fails the
 * connection's setup with the reason.)
 */

static void
orbit_channel_check_bot(json_t *body, orbit_v_errors_t *errs)
{
    const char  *token;

    token = json_string_value(json_object_get(
                json_object_get(body, "credentials"), "botToken"));

    if (token == NULL || orbit_channel_bot_id(token) == 0) {
        orbit_validate_add(errs, "credentials.botToken must be a Telegram "
                           "bot token (<bot id>:<secret>) when accountId "
                           "is not given");
    }
}


/* the length of the bot id that starts a Telegram token, or 0 */

static size_t
orbit_channel_bot_id(const char *token)
{
    size_t  n;

    for (n = 0; token[n] >= '0' && token[n] <= '9'; n++) {
        /* void */
    }

    return (n && n <= 20 && token[n] == ':' && token[n + 1]) ? n : 0;
}


/* our own channels: their accounts are named here when not given */

static ngx_int_t
orbit_channel_account_generated(const char *channel)
{
    return ngx_strcmp(channel, "api") == 0
           || ngx_strcmp(channel, "livechat") == 0;
}


/* creds sealed for row id of the caller's tenant, and its hint */

static ngx_int_t
orbit_channel_seal(orbit_api_req_t *ar, json_t *creds, ngx_str_t *id,
    ngx_str_t *box, char **hint)
{
    json_t  *h;

    h = orbit_creds_hint(creds);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *hint = orbit_channel_dump(ar->r->pool, h);

    json_decref(h);

    if (*hint == NULL) {
        return NGX_ERROR;
    }

    return orbit_channel_creds_seal(ar->r->pool, ar->r->connection->log,
                                    creds, &ar->who.tenant_id, id, box);
}


/* an "api" channel's signing secret, made once per request */

static ngx_int_t
orbit_channel_secret(orbit_api_req_t *ar, orbit_channel_write_t *w)
{
    if (w->secret[0]) {
        return NGX_OK;
    }

    if (orbit_random_token((char *) w->secret, ORBIT_CHANNEL_SECRET_BYTES)
        != 0)
    {
        ngx_log_error(NGX_LOG_ALERT, ar->r->connection->log, 0,
                      "orbit: no random bytes for a channel secret");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* v as compact JSON, nul-terminated in pool; NULL for no v */

static char *
orbit_channel_dump(ngx_pool_t *pool, json_t *v)
{
    char    *p;
    size_t   len;

    if (v == NULL) {
        return NULL;
    }

    len = json_dumpb(v, NULL, 0, JSON_COMPACT);

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    if (json_dumpb(v, p, len, JSON_COMPACT) != len) {
        return NULL;
    }

    p[len] = '\0';

    return p;
}


/*
 * Written: row 0 is (status, connection, message[, generated]).  A secret
 * made here goes back once, when the row took it: spliced into the
 * answer, never through PostgreSQL.
 */

static void
orbit_channel_written(orbit_api_req_t *ar, PGresult *res)
{
    orbit_channel_write_t  *w;

    w = ar->data;

    if (w->secret[0] && PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)
        && (PQnfields(res) < 4 || PQgetvalue(res, 0, 3)[0] == 't'))
    {
        orbit_api_finish(ar, orbit_api_send_json_with(ar,
                             (ngx_uint_t) ngx_atoi((u_char *)
                                                   PQgetvalue(res, 0, 0),
                                                   PQgetlength(res, 0, 0)),
                             (u_char *) PQgetvalue(res, 0, 1),
                             PQgetlength(res, 0, 1), "secret",
                             (char *) w->secret));

    } else {
        orbit_api_respond_row(ar, res);
    }

    /* shown once: the request pool keeps no copy longer than needed */
    ngx_explicit_memzero(w->secret, sizeof(w->secret));
}
