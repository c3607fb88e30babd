/*
 * OrbitDesk REST: /api/v1/api-keys — a tenant's keys for integrations,
 * managed by its admins: create (the key shown once), list, revoke,
 * delete.
 *
 * The key is made here ("wcrm_" and 32 random bytes, base64url) and never
 * reaches the database, nor any log: PostgreSQL gets its SHA-256 and its
 * first characters (the prefix lists show); the answer to the creation is
 * spliced together in C around the key.  At most 20 active keys per
 * tenant: a counter row kept by a trigger of migration 004, race-free.
 * Revoking or deleting a key takes effect at once on every node: see
 * orbit_apikey_revoke().
 */

#include "api/orbit_api.h"
#include "api/orbit_apikey_cache.h"


static const orbit_v_field_t  orbit_key_create_fields[] = {
    { "name", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 100, NULL },
    { "scopes", ORBIT_V_STRINGS, 1, 0, ORBIT_V_ANY, 1, 0, NULL },
    { "expiresAt", ORBIT_V_DATETIME, 0, 1, ORBIT_V_ANY, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

/* revoking takes no body; anything sent is refused */
static const orbit_v_field_t  orbit_key_revoke_fields[] = {
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


#define ORBIT_KEY_JSON                                                       \
    "json_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix,"     \
    " 'scopes', k.scopes, 'expiresAt', k.expires_at,"                       \
    " 'lastUsedAt', k.last_used_at, 'isActive', k.is_active,"               \
    " 'revokedAt', k.revoked_at, 'createdBy', k.created_by,"                \
    " 'createdAt', k.created_at)"


typedef struct {
    u_char                       key[ORBIT_APIKEY_LEN + 1];
} orbit_key_new_t;


typedef struct {
    u_char                      *body;
    size_t                       len;
} orbit_key_answer_t;


static ngx_int_t orbit_key_scopes(orbit_api_req_t *ar, ngx_uint_t *bits);
static void orbit_key_created(orbit_api_req_t *ar, PGresult *res);
static void orbit_key_changed(orbit_api_req_t *ar, PGresult *res);
static void orbit_key_published(orbit_api_req_t *ar);


/* GET /api/v1/api-keys?limit=&cursor= (newest first; never the key) */

ngx_int_t
orbit_api_keys_list(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH page AS ("
        "  SELECT k.* FROM api_keys k"
        "  WHERE k.tenant_id = $1::uuid"
        "    AND ($3::uuid IS NULL OR (k.created_at, k.id) <"
        "      (SELECT created_at, id FROM api_keys"
        "       WHERE id = $3::uuid AND tenant_id = $1::uuid))"
        "  ORDER BY k.created_at DESC, k.id DESC"
        "  LIMIT $2::int + 1"
        "), shown AS ("
        "  SELECT * FROM page ORDER BY created_at DESC, id DESC"
        "  LIMIT $2::int"
        ")"
        " SELECT 200, json_build_object("
        "  'data', COALESCE((SELECT json_agg(" ORBIT_KEY_JSON
        "    ORDER BY k.created_at DESC, k.id DESC) FROM shown k), '[]'),"
        "  'nextCursor', CASE WHEN (SELECT count(*) FROM page) > $2::int"
        "    THEN (SELECT id FROM shown ORDER BY created_at, id LIMIT 1)"
        "    END)";

    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_page_args(ar, &v[1], &v[2], 100) != NGX_OK) {
        return ar->rc;
    }

    if (v[2] && !orbit_valid_uuid(v[2], ngx_strlen(v[2]))) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "cursor must be an API key id");
    }

    /* the caller's own tenant, never one from the request */
    v[0] = (char *) ar->who.tenant_id.data;

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/*
 * POST /api/v1/api-keys {"name", "scopes": [...], "expiresAt": ISO|null}
 * -> 201 {id, name, key, scopes, expiresAt, createdAt, isActive}
 */

ngx_int_t
orbit_api_keys_create(orbit_api_req_t *ar)
{
    u_char           *p;
    ngx_uint_t        bits;
    const char      **v;
    orbit_key_new_t  *nk;
    char              hash[ORBIT_SHA256_HEX_LEN + 1];

    static const char  sql[] =
        "WITH k AS ("
        "  INSERT INTO api_keys (tenant_id, name, key_hash, prefix, scopes,"
        "    expires_at, created_by)"
        "  SELECT $1::uuid, $2, $3, $4, $5::text[], $6::timestamptz,"
        "    $7::uuid"
        "  WHERE $6::timestamptz IS NULL OR $6::timestamptz > now()"
        "  RETURNING *"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT k.tenant_id, $7::uuid, 'api_key.created', k.id::text,"
        "    $8::inet, jsonb_build_object('name', k.name,"
        "      'prefix', k.prefix, 'scopes', k.scopes,"
        "      'expiresAt', k.expires_at)"
        "  FROM k"
        ")"
        " SELECT 201, json_build_object('id', k.id, 'name', k.name),"
        "  json_build_object('prefix', k.prefix, 'scopes', k.scopes,"
        "    'expiresAt', k.expires_at, 'createdAt', k.created_at,"
        "    'isActive', k.is_active), NULL"
        " FROM k"
        " UNION ALL SELECT 400, NULL, NULL,"
        "  'expiresAt must be a date in the future'"
        " LIMIT 1";

    if (orbit_api_validate(ar, orbit_key_create_fields) != NGX_OK) {
        return ar->rc;
    }

    if (orbit_key_scopes(ar, &bits) != NGX_OK) {
        return ar->rc;
    }

    nk = ngx_palloc(ar->r->pool, sizeof(orbit_key_new_t));
    v = ngx_palloc(ar->r->pool, 8 * sizeof(char *));

    if (nk == NULL || v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(nk->key, ORBIT_APIKEY_PREFIX,
                   sizeof(ORBIT_APIKEY_PREFIX) - 1);

    if (orbit_random_token((char *) p, ORBIT_APIKEY_BYTES) != 0) {
        ngx_log_error(NGX_LOG_ALERT, ar->r->connection->log, 0,
                      "orbit: no random bytes for an api key");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    orbit_sha256_hex(hash, nk->key, ORBIT_APIKEY_LEN);

    ar->data = nk;

    v[0] = (char *) ar->who.tenant_id.data;
    v[1] = (char *) orbit_api_body_str(ar, "name");
    v[2] = orbit_api_strdup(ar->r->pool, hash);
    v[3] = orbit_api_strdup_n(ar->r->pool, nk->key, ORBIT_APIKEY_SHOWN_LEN);
    v[4] = (char *) orbit_apikey_scope_array(ar->r->pool, bits);
    v[5] = (char *) orbit_api_body_str(ar, "expiresAt");  /* or null */
    v[6] = (char *) ar->who.user_id.data;
    v[7] = orbit_api_client_ip(ar);

    if (v[1] == NULL || v[2] == NULL || v[3] == NULL || v[4] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 8, v, orbit_key_created);
}


/* every name known (each once in the result: a bit set, in spec order) */

static ngx_int_t
orbit_key_scopes(orbit_api_req_t *ar, ngx_uint_t *bits)
{
    u_char      *p;
    size_t       i;
    json_t      *scopes, *s;
    ngx_uint_t   bit;
    u_char       msg[256];

    scopes = json_object_get(ar->body, "scopes");
    *bits = 0;

    json_array_foreach(scopes, i, s) {
        bit = orbit_apikey_scope((u_char *) json_string_value(s),
                                 json_string_length(s));

        if (bit == 0) {
            p = ngx_slprintf(msg, msg + sizeof(msg) - 1,
                             "scopes must contain only known scopes: ");
            p = orbit_apikey_scope_names(p, msg + sizeof(msg) - 1,
                                         ORBIT_SCOPES_MASK, ", ");
            *p = '\0';

            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          (char *) msg);
            return NGX_DECLINED;
        }

        *bits |= bit;
    }

    return NGX_OK;
}


/*
 * Row 0: (201, {"id","name"}, {"prefix",...}, NULL), or (400, NULL, NULL,
 * why).  The answer: the first object, the key, the second.
 */

static void
orbit_key_created(orbit_api_req_t *ar, PGresult *res)
{
    u_char           *body, *p;
    size_t            len, len1, len2;
    const char       *head, *tail;
    orbit_key_new_t  *nk;

    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 1)
        || PQgetisnull(res, 0, 2))
    {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                             PQntuples(res) && !PQgetisnull(res, 0, 3)
                             ? PQgetvalue(res, 0, 3) : NULL));
        return;
    }

    nk = ar->data;

    head = PQgetvalue(res, 0, 1);
    tail = PQgetvalue(res, 0, 2);
    len1 = PQgetlength(res, 0, 1);
    len2 = PQgetlength(res, 0, 2);

    if (len1 < 2 || head[len1 - 1] != '}' || len2 < 2 || tail[0] != '{') {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = (len1 - 1) + sizeof(", \"key\" : \"\", ") - 1 + ORBIT_APIKEY_LEN
          + (len2 - 1);

    body = ngx_pnalloc(ar->r->pool, len);
    if (body == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(body, head, len1 - 1);
    p = ngx_cpymem(p, ", \"key\" : \"", sizeof(", \"key\" : \"") - 1);
    p = ngx_cpymem(p, nk->key, ORBIT_APIKEY_LEN);
    p = ngx_cpymem(p, "\", ", sizeof("\", ") - 1);
    p = ngx_cpymem(p, tail + 1, len2 - 1);

    /* shown once: the request pool keeps no copy longer than needed */
    ngx_explicit_memzero(nk->key, sizeof(nk->key));

    orbit_api_finish(ar, orbit_api_send_json(ar, NGX_HTTP_CREATED, body,
                                             p - body));
}


/* PATCH /api/v1/api-keys/:id/revoke -> 200 the key (isActive false) */

ngx_int_t
orbit_api_keys_revoke(orbit_api_req_t *ar)
{
    static const char  sql[] =
        "WITH old AS ("
        "  SELECT id, is_active FROM api_keys"
        "  WHERE id = $1::uuid AND tenant_id = $2::uuid FOR UPDATE"
        "), k AS ("
        "  UPDATE api_keys k SET is_active = false,"
        "    revoked_at = COALESCE(k.revoked_at, now())"
        "  FROM old WHERE k.id = old.id"
        "  RETURNING k.*, old.is_active AS was"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT k.tenant_id, $3::uuid, 'api_key.revoked', k.id::text,"
        "    $4::inet, jsonb_build_object('name', k.name,"
        "      'prefix', k.prefix)"
        "  FROM k WHERE k.was"
        ")"
        " SELECT 200, " ORBIT_KEY_JSON ", NULL, k.key_hash FROM k"
        " UNION ALL SELECT 404, NULL, 'API key not found', NULL"
        " LIMIT 1";

    if (orbit_api_validate(ar, orbit_key_revoke_fields) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query_id(ar, sql, 4, orbit_key_changed);
}


/* DELETE /api/v1/api-keys/:id -> 200 {"success": true} */

ngx_int_t
orbit_api_keys_delete(orbit_api_req_t *ar)
{
    static const char  sql[] =
        "WITH k AS ("
        "  DELETE FROM api_keys"
        "  WHERE id = $1::uuid AND tenant_id = $2::uuid"
        "  RETURNING *"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT k.tenant_id, $3::uuid, 'api_key.deleted', k.id::text,"
        "    $4::inet, jsonb_build_object('name', k.name,"
        "      'prefix', k.prefix, 'wasActive', k.is_active)"
        "  FROM k"
        ")"
        " SELECT 200, json_build_object('success', true), NULL, k.key_hash"
        " FROM k"
        " UNION ALL SELECT 404, NULL, 'API key not found', NULL"
        " LIMIT 1";

    return orbit_api_query_id(ar, sql, 4, orbit_key_changed);
}


/*
 * Revoked or deleted, committed: row 0 is (200, body, NULL, key_hash).
 * The key leaves the caches before the answer goes out.
 */

static void
orbit_key_changed(orbit_api_req_t *ar, PGresult *res)
{
    ngx_int_t            rc;
    orbit_key_answer_t  *a;

    if (PQntuples(res) == 0 || PQnfields(res) < 4 || PQgetisnull(res, 0, 1)
        || PQgetisnull(res, 0, 3))
    {
        orbit_api_respond_row(ar, res);
        return;
    }

    a = ngx_palloc(ar->r->pool, sizeof(orbit_key_answer_t));
    if (a == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    a->len = PQgetlength(res, 0, 1);

    a->body = ngx_pnalloc(ar->r->pool, a->len);
    if (a->body == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(a->body, PQgetvalue(res, 0, 1), a->len);
    ar->data = a;

    rc = orbit_apikey_revoke(ar, (u_char *) PQgetvalue(res, 0, 3),
                             orbit_key_published);

    if (rc == NGX_DONE) {
        /* the publication holds the request itself: drop the query's */
        orbit_api_finish(ar, NGX_DONE);
        return;
    }

    orbit_key_published(ar);
}


static void
orbit_key_published(orbit_api_req_t *ar)
{
    orbit_key_answer_t  *a = ar->data;

    orbit_api_finish(ar, orbit_api_send_json(ar, NGX_HTTP_OK, a->body,
                                             a->len));
}
