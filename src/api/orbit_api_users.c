/*
 * OrbitDesk REST: /api/v1/users — a tenant's team.
 *
 * ADMINs manage everyone of their tenant; MANAGERs manage AGENTs.  Nobody
 * gives a role above their own, nobody changes their own role or switches
 * themselves off (a tenant keeps its admin), and a deactivated user's
 * sessions end with it.  A user invited without a password gets a
 * temporary one, shown once.
 */

#include "api/orbit_api.h"


static const char *const  orbit_user_roles[] = {
    "ADMIN", "MANAGER", "AGENT", NULL
};

static const orbit_v_field_t  orbit_user_create_fields[] = {
    { "email", ORBIT_V_STRING, 1, 0, ORBIT_V_EMAIL, 3, 254, NULL },
    { "name", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 100, NULL },
    { "role", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 0, 0, orbit_user_roles },
    { "password", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 8, 128, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_user_update_fields[] = {
    { "name", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 1, 100, NULL },
    { "role", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0, orbit_user_roles },
    { "isActive", ORBIT_V_BOOL, 0, 0, ORBIT_V_ANY, 0, 0, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const char *const  orbit_user_filters[] = {
    "ADMIN", "MANAGER", "AGENT", NULL
};


/* a role's rank: who may manage whom */
#define ORBIT_RANK_SQL(col)                                                  \
    "CASE " col " WHEN 'ADMIN' THEN 3 WHEN 'MANAGER' THEN 2 ELSE 1 END"

#define ORBIT_USER_JSON                                                      \
    "json_build_object('id', u.id, 'email', u.email, 'name', u.name,"       \
    " 'role', u.role, 'tenantId', u.tenant_id, 'isActive', u.is_active,"    \
    " 'createdAt', u.created_at, 'updatedAt', u.updated_at)"


typedef struct {
    char                         password[160];
    char                         hash[ORBIT_PASSWORD_ENCODED_LEN];
    int                          ok;
    unsigned                     generated:1;
} orbit_invite_t;


static ngx_uint_t orbit_user_rank(ngx_uint_t role);
static void orbit_user_hash_work(void *ctx);
static void orbit_user_hashed(orbit_api_req_t *ar, void *ctx);
static void orbit_user_created(orbit_api_req_t *ar, PGresult *res);


/* GET /api/v1/users?role=&limit=&cursor= (oldest first: a team roster) */

ngx_int_t
orbit_api_users_list(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH page AS ("
        "  SELECT u.* FROM users u"
        "  WHERE u.tenant_id = $1::uuid"
        "    AND ($2::text IS NULL OR u.role = $2)"
        "    AND ($4::uuid IS NULL OR (u.created_at, u.id) >"
        "      (SELECT created_at, id FROM users"
        "       WHERE id = $4::uuid AND tenant_id = $1::uuid))"
        "  ORDER BY u.created_at, u.id"
        "  LIMIT $3::int + 1"
        "), shown AS ("
        "  SELECT * FROM page ORDER BY created_at, id LIMIT $3::int"
        ")"
        " SELECT 200, json_build_object("
        "  'data', COALESCE((SELECT json_agg(" ORBIT_USER_JSON
        "    ORDER BY u.created_at, u.id) FROM shown u), '[]'),"
        "  'nextCursor', CASE WHEN (SELECT count(*) FROM page) > $3::int"
        "    THEN (SELECT id FROM shown ORDER BY created_at DESC, id DESC"
        "          LIMIT 1) END)";

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = (char *) ar->who.tenant_id.data;

    if (orbit_api_arg_enum(ar, "role", orbit_user_filters, &v[1]) != NGX_OK
        || orbit_api_page_args(ar, &v[2], &v[3], 100) != NGX_OK)
    {
        return ar->rc;
    }

    if (v[3] && !orbit_valid_uuid(v[3], ngx_strlen(v[3]))) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "cursor must be a user id");
    }

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/* GET /api/v1/users/:id */

ngx_int_t
orbit_api_users_get(orbit_api_req_t *ar)
{
    static const char  sql[] =
        "SELECT 200, " ORBIT_USER_JSON ", NULL FROM users u"
        " WHERE u.id = $1::uuid AND u.tenant_id = $2::uuid"
        " UNION ALL SELECT 404, NULL, 'User not found'"
        " LIMIT 1";

    return orbit_api_query_id(ar, sql, 2, orbit_api_respond_row);
}


/* POST /api/v1/users {email, name, role, password?} */

ngx_int_t
orbit_api_users_create(orbit_api_req_t *ar)
{
    u_char          *role, *password;
    orbit_invite_t   job;

    if (orbit_api_validate(ar, orbit_user_create_fields) != NGX_OK) {
        return ar->rc;
    }

    role = orbit_api_body_str(ar, "role");

    if (role == NULL
        || orbit_user_rank(orbit_auth_role(role, ngx_strlen(role)))
           > orbit_user_rank(ar->who.role)
        || (ar->who.role != ORBIT_ROLE_ADMIN
            && ngx_strcmp(role, "AGENT") != 0))
    {
        return orbit_api_send_error(ar, NGX_HTTP_FORBIDDEN,
                                    "You may not give this role");
    }

    ngx_memzero(&job, sizeof(orbit_invite_t));

    password = orbit_api_body_str(ar, "password");

    if (password) {
        ngx_cpystrn((u_char *) job.password, password, sizeof(job.password));

    } else {
        /* 18 random bytes: 24 characters, shown once */
        if (orbit_random_token(job.password, 18) != 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        job.generated = 1;
    }

    return orbit_api_offload(ar, orbit_user_hash_work, orbit_user_hashed,
                             &job, sizeof(orbit_invite_t));
}


static void
orbit_user_hash_work(void *ctx)
{
    orbit_invite_t  *job = ctx;

    job->ok = orbit_password_hash(job->password, strlen(job->password),
                                  job->hash, sizeof(job->hash)) == 0;

    if (!job->generated) {
        ngx_explicit_memzero(job->password, sizeof(job->password));
    }
}


static void
orbit_user_hashed(orbit_api_req_t *ar, void *ctx)
{
    ngx_int_t        rc;
    const char     **v;
    orbit_invite_t  *job = ctx;

    static const char  sql[] =
        "WITH u AS ("
        "  INSERT INTO users (tenant_id, email, name, password_hash, role)"
        "  VALUES ($1::uuid, $2, $3, $4, $5)"
        "  RETURNING *"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT $1::uuid, $6::uuid, 'user.invited', u.id::text, $7::inet,"
        "    jsonb_build_object('email', u.email, 'role', u.role)"
        "  FROM u"
        ")"
        " SELECT 201, " ORBIT_USER_JSON " FROM u";

    if (!job->ok) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    v = ngx_palloc(ar->r->pool, 7 * sizeof(char *));
    if (v == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    v[0] = (char *) ar->who.tenant_id.data;
    v[1] = (char *) orbit_api_body_str(ar, "email");
    v[2] = (char *) orbit_api_body_str(ar, "name");
    v[3] = orbit_api_strdup(ar->r->pool, job->hash);
    v[4] = (char *) orbit_api_body_str(ar, "role");
    v[5] = (char *) ar->who.user_id.data;
    v[6] = orbit_api_client_ip(ar);

    /* the temporary password goes back to the caller, once */
    ar->data = job->generated ? orbit_api_strdup(ar->r->pool, job->password)
                              : NULL;

    ngx_explicit_memzero(job->password, sizeof(job->password));

    rc = orbit_api_query(ar, sql, 7, v, orbit_user_created);

    orbit_api_finish(ar, rc);
}


static void
orbit_user_created(orbit_api_req_t *ar, PGresult *res)
{
    u_char  *buf, *p;
    size_t   len;
    char    *temporary;

    temporary = ar->data;

    if (temporary == NULL || PQntuples(res) != 1) {
        orbit_api_respond_row(ar, res);
        return;
    }

    /* {...user...} -> {...user...,"temporaryPassword":"..."} */

    len = PQgetlength(res, 0, 1);

    buf = ngx_pnalloc(ar->r->pool, len + sizeof(",\"temporaryPassword\":\"\"")
                                   + ngx_strlen(temporary));
    if (buf == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(buf, PQgetvalue(res, 0, 1), len - 1);
    p = ngx_sprintf(p, ",\"temporaryPassword\":\"%s\"}", temporary);

    orbit_api_finish(ar, orbit_api_send_json(ar, NGX_HTTP_CREATED, buf,
                                             p - buf));
}


/* PATCH /api/v1/users/:id {name?, role?, isActive?} */

ngx_int_t
orbit_api_users_update(orbit_api_req_t *ar)
{
    json_t       *active;
    u_char       *role;
    const char  **v;

    /*
     * One statement decides: the target must be in the caller's tenant
     * and of a rank the caller manages; the new role too.  Deactivating
     * revokes the target's sessions in the same transaction.
     */

    static const char  sql[] =
        "WITH t AS ("
        "  SELECT u.* FROM users u"
        "  WHERE u.id = $1::uuid AND u.tenant_id = $2::uuid FOR UPDATE"
        "), ok AS ("
        "  SELECT t.* FROM t"
        "  WHERE t.id <> $6::uuid"
        "    AND (" ORBIT_RANK_SQL("t.role") " < " ORBIT_RANK_SQL("$7")
        "         OR $7 = 'ADMIN')"
        "    AND ($4::text IS NULL"
        "         OR " ORBIT_RANK_SQL("$4") " < " ORBIT_RANK_SQL("$7")
        "         OR $7 = 'ADMIN')"
        "), u AS ("
        "  UPDATE users x SET name = COALESCE($3, x.name),"
        "    role = COALESCE($4, x.role),"
        "    is_active = COALESCE($5::boolean, x.is_active),"
        "    updated_at = now()"
        "  FROM ok WHERE x.id = ok.id"
        "  RETURNING x.*, ok.role AS was_role, ok.is_active AS was_active"
        "), ended AS ("
        "  UPDATE refresh_tokens r SET revoked_at = now() FROM u"
        "  WHERE r.user_id = u.id AND NOT u.is_active"
        "    AND r.revoked_at IS NULL"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, target, ip,"
        "    details)"
        "  SELECT $2::uuid, $6::uuid,"
        "    CASE WHEN u.role <> u.was_role THEN 'user.role_changed'"
        "      WHEN u.is_active <> u.was_active THEN"
        "        CASE WHEN u.is_active THEN 'user.activated'"
        "          ELSE 'user.deactivated' END"
        "      ELSE 'user.updated' END,"
        "    u.id::text, $8::inet,"
        "    jsonb_build_object('from', u.was_role, 'to', u.role,"
        "      'isActive', u.is_active)"
        "  FROM u"
        ")"
        " SELECT 200, " ORBIT_USER_JSON ", NULL FROM u"
        " UNION ALL SELECT 403, NULL, 'You may not change this user'"
        "   FROM t WHERE NOT EXISTS (SELECT 1 FROM ok)"
        " UNION ALL SELECT 404, NULL, 'User not found'"
        " LIMIT 1";

    if (orbit_api_validate(ar, orbit_user_update_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 8 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    role = orbit_api_body_str(ar, "role");
    active = json_object_get(ar->body, "isActive");

    v[1] = (char *) ar->who.tenant_id.data;
    v[2] = (char *) orbit_api_body_str(ar, "name");
    v[3] = (char *) role;
    v[4] = active ? (json_is_true(active) ? "true" : "false") : NULL;
    v[5] = (char *) ar->who.user_id.data;
    v[6] = orbit_auth_role_name(ar->who.role);
    v[7] = orbit_api_client_ip(ar);

    return orbit_api_query(ar, sql, 8, v, orbit_api_respond_row);
}


static ngx_uint_t
orbit_user_rank(ngx_uint_t role)
{
    switch (role) {

    case ORBIT_ROLE_ADMIN:
        return 3;

    case ORBIT_ROLE_MANAGER:
        return 2;

    case ORBIT_ROLE_AGENT:
        return 1;

    default:
        return 0;
    }
}
