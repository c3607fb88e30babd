/*
 * OrbitDesk REST: /api/v1/auth — register, login, refresh, logout, me.
 *
 * Passwords are argon2id, hashed and checked in nginx's thread pool (tens
 * of milliseconds of CPU each: never on the event loop).  Access tokens
 * are 15-minute HS256 JWTs; refresh tokens are random, stored as SHA-256,
 * used once each: a used one presented again revokes its whole family.
 * Raw tokens never go to the database.
 */

#include "api/orbit_api.h"
#include "ngx_http_orbit_module.h"


#define ORBIT_ACCESS_TTL      900                  /* 15 minutes */
#define ORBIT_REFRESH_BYTES   32


typedef struct {
    char                         password[160];
    char                         hash[ORBIT_PASSWORD_ENCODED_LEN];
    int                          ok;
} orbit_pw_job_t;


typedef struct {
    char                         refresh[ORBIT_TOKEN_LEN(ORBIT_REFRESH_BYTES)
                                         + 1];
    char                         refresh_hash[ORBIT_SHA256_HEX_LEN + 1];
    char                         user_id[48];
    char                         tenant_id[48];
    char                         role[16];
    u_char                      *user_json;
    size_t                       user_json_len;
} orbit_session_t;


static const orbit_v_field_t  orbit_register_fields[] = {
    { "tenantName", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 2, 100, NULL },
    { "slug", ORBIT_V_STRING, 0, 0, ORBIT_V_SLUG, 1, 63, NULL },
    { "name", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 100, NULL },
    { "email", ORBIT_V_STRING, 1, 0, ORBIT_V_EMAIL, 3, 254, NULL },
    { "password", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 8, 128, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_login_fields[] = {
    { "email", ORBIT_V_STRING, 1, 0, ORBIT_V_EMAIL, 3, 254, NULL },
    { "password", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 128, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_refresh_fields[] = {
    { "refreshToken", ORBIT_V_STRING, 1, 0, ORBIT_V_ANY, 1, 200, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};

static const orbit_v_field_t  orbit_logout_fields[] = {
    { "refreshToken", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 1, 200, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


/*
 * When the address is unknown, a password is still checked, against this
 * hash of a random string, so that the answer takes as long either way.
 */
static const char  orbit_dummy_hash[] =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
    "Ykf0Gn8zNwzU3Rn0zD6Ir6h0F0P3Y2lW5qJwL0Qx6oE";


static void orbit_register_hashed(orbit_api_req_t *ar, void *ctx);
static void orbit_register_done(orbit_api_req_t *ar, PGresult *res);
static void orbit_login_found(orbit_api_req_t *ar, PGresult *res);
static void orbit_login_checked(orbit_api_req_t *ar, void *ctx);
static void orbit_login_failed(orbit_api_req_t *ar, const char *why,
    ngx_uint_t status);
static void orbit_login_failed_done(orbit_api_req_t *ar, PGresult *res);
static void orbit_login_done(orbit_api_req_t *ar, PGresult *res);
static void orbit_refresh_done(orbit_api_req_t *ar, PGresult *res);
static void orbit_pw_hash_work(void *ctx);
static void orbit_pw_verify_work(void *ctx);
static ngx_int_t orbit_session_new(orbit_api_req_t *ar, orbit_session_t *s);
static ngx_int_t orbit_session_send(orbit_api_req_t *ar, orbit_session_t *s);
static u_char *orbit_slugify(ngx_pool_t *pool, const u_char *name);
static const char *orbit_copy_value(ngx_pool_t *pool, PGresult *res,
    int col);


/* POST /api/v1/auth/register: a tenant (pending approval) and its admin */

ngx_int_t
orbit_api_auth_register(orbit_api_req_t *ar)
{
    orbit_pw_job_t   job;
    u_char          *password;

    if (orbit_api_validate(ar, orbit_register_fields) != NGX_OK) {
        return ar->rc;
    }

    password = orbit_api_body_str(ar, "password");
    if (password == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&job, sizeof(orbit_pw_job_t));
    ngx_cpystrn((u_char *) job.password, password, sizeof(job.password));

    return orbit_api_offload(ar, orbit_pw_hash_work, orbit_register_hashed,
                             &job, sizeof(orbit_pw_job_t));
}


static void
orbit_register_hashed(orbit_api_req_t *ar, void *ctx)
{
    ngx_int_t        rc;
    u_char          *slug;
    const char     **v;
    orbit_pw_job_t  *job = ctx;

    static const char  sql[] =
        "WITH t AS ("
        "  INSERT INTO tenants (name, slug) VALUES ($1, $2)"
        "  RETURNING id, name, slug, status, created_at"
        "), u AS ("
        "  INSERT INTO users (tenant_id, email, name, password_hash, role)"
        "  SELECT t.id, $3, $4, $5, 'ADMIN' FROM t"
        "  RETURNING id, email, name, role"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, ip)"
        "  SELECT t.id, u.id, 'tenant.registered', $6::inet FROM t, u"
        ")"
        " SELECT 201, json_build_object("
        "  'message', 'Registration received: it awaits approval',"
        "  'tenant', json_build_object('id', t.id, 'name', t.name,"
        "    'slug', t.slug, 'status', t.status,"
        "    'createdAt', t.created_at),"
        "  'user', json_build_object('id', u.id, 'email', u.email,"
        "    'name', u.name, 'role', u.role))"
        " FROM t, u";

    if (!job->ok) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    slug = orbit_api_body_str(ar, "slug");
    if (slug == NULL) {
        slug = orbit_slugify(ar->r->pool,
                             orbit_api_body_str(ar, "tenantName"));
    }

    v = ngx_palloc(ar->r->pool, 6 * sizeof(char *));
    if (v == NULL || slug == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    v[0] = (char *) orbit_api_body_str(ar, "tenantName");
    v[1] = (char *) slug;
    v[2] = (char *) orbit_api_body_str(ar, "email");
    v[3] = (char *) orbit_api_body_str(ar, "name");
    v[4] = orbit_api_strdup(ar->r->pool, job->hash);
    v[5] = orbit_api_client_ip(ar);

    if (v[4] == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = orbit_api_query(ar, sql, 6, v, orbit_register_done);

    /* the query holds the request itself: drop the offload's hold */
    orbit_api_finish(ar, rc);
}


static void
orbit_register_done(orbit_api_req_t *ar, PGresult *res)
{
    orbit_api_respond_row(ar, res);
}


/* POST /api/v1/auth/login */

ngx_int_t
orbit_api_auth_login(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT u.id, u.tenant_id, u.role, u.password_hash, u.is_active,"
        "  t.status,"
        "  json_build_object('id', u.id, 'email', u.email, 'name', u.name,"
        "    'role', u.role, 'tenantId', u.tenant_id)"
        " FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id"
        " WHERE lower(u.email) = lower($1)";

    if (orbit_api_validate(ar, orbit_login_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = (char *) orbit_api_body_str(ar, "email");

    return orbit_api_query(ar, sql, 1, v, orbit_login_found);
}


typedef struct {
    orbit_pw_job_t               pw;
    const char                  *user_id;      /* request pool */
    const char                  *tenant_id;
    const char                  *role;
    const char                  *is_active;
    const char                  *tenant_status;
    const char                  *user_json;
} orbit_login_job_t;


static void
orbit_login_found(orbit_api_req_t *ar, PGresult *res)
{
    ngx_int_t           rc;
    ngx_pool_t         *pool;
    orbit_login_job_t   job;
    u_char             *password;

    pool = ar->r->pool;
    ngx_memzero(&job, sizeof(orbit_login_job_t));

    if (PQntuples(res) == 1) {
        job.user_id = orbit_copy_value(pool, res, 0);
        job.tenant_id = orbit_copy_value(pool, res, 1);
        job.role = orbit_copy_value(pool, res, 2);
        ngx_cpystrn((u_char *) job.pw.hash, (u_char *) PQgetvalue(res, 0, 3),
                    sizeof(job.pw.hash));
        job.is_active = orbit_copy_value(pool, res, 4);
        job.tenant_status = orbit_copy_value(pool, res, 5);
        job.user_json = orbit_copy_value(pool, res, 6);

        if (job.user_id == NULL || job.user_json == NULL) {
            orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

    } else {
        ngx_cpystrn((u_char *) job.pw.hash, (u_char *) orbit_dummy_hash,
                    sizeof(job.pw.hash));
    }

    password = orbit_api_body_str(ar, "password");
    if (password == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_cpystrn((u_char *) job.pw.password, password,
                sizeof(job.pw.password));

    rc = orbit_api_offload(ar, orbit_pw_verify_work, orbit_login_checked,
                           &job, sizeof(orbit_login_job_t));

    /* the offload holds the request itself: drop the query's hold */
    orbit_api_finish(ar, rc);
}


static void
orbit_login_checked(orbit_api_req_t *ar, void *ctx)
{
    ngx_int_t           rc;
    const char        **v;
    orbit_session_t    *s;
    orbit_login_job_t  *job = ctx;

    static const char  sql[] =
        "WITH rt AS ("
        "  INSERT INTO refresh_tokens (family_id, user_id, token_hash,"
        "    expires_at)"
        "  VALUES (gen_random_uuid(), $1, $2, now() + interval '7 days')"
        ")"
        " INSERT INTO audit_logs (tenant_id, user_id, action, ip)"
        " VALUES ($3::uuid, $1, 'auth.login', $4::inet)";

    if (job->user_id == NULL || !job->pw.ok) {
        orbit_login_failed(ar, "Invalid credentials",
                           NGX_HTTP_UNAUTHORIZED);
        return;
    }

    if (job->is_active == NULL || job->is_active[0] != 't') {
        orbit_login_failed(ar, "Account is deactivated",
                           NGX_HTTP_FORBIDDEN);
        return;
    }

    if (job->tenant_status && ngx_strcmp(job->tenant_status, "active") != 0)
    {
        orbit_login_failed(ar,
            ngx_strcmp(job->tenant_status, "pending") == 0
            ? "Tenant is pending approval"
            : ngx_strcmp(job->tenant_status, "suspended") == 0
              ? "Tenant is suspended" : "Tenant registration was rejected",
            NGX_HTTP_FORBIDDEN);
        return;
    }

    s = ngx_pcalloc(ar->r->pool, sizeof(orbit_session_t));
    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));

    if (s == NULL || v == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_cpystrn((u_char *) s->user_id, (u_char *) job->user_id,
                sizeof(s->user_id));
    ngx_cpystrn((u_char *) s->tenant_id,
                (u_char *) (job->tenant_id ? job->tenant_id : ""),
                sizeof(s->tenant_id));
    ngx_cpystrn((u_char *) s->role, (u_char *) job->role, sizeof(s->role));
    s->user_json = (u_char *) job->user_json;
    s->user_json_len = ngx_strlen(job->user_json);

    if (orbit_session_new(ar, s) != NGX_OK) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ar->data = s;

    v[0] = s->user_id;
    v[1] = s->refresh_hash;
    v[2] = job->tenant_id;
    v[3] = orbit_api_client_ip(ar);

    rc = orbit_api_query(ar, sql, 4, v, orbit_login_done);

    orbit_api_finish(ar, rc);
}


static void
orbit_login_done(orbit_api_req_t *ar, PGresult *res)
{
    orbit_api_finish(ar, orbit_session_send(ar, ar->data));
}


typedef struct {
    const char                  *why;
    ngx_uint_t                   status;
} orbit_login_failure_t;


/* a failed login is recorded (audit log), then answered */

static void
orbit_login_failed(orbit_api_req_t *ar, const char *why, ngx_uint_t status)
{
    ngx_int_t               rc;
    const char            **v;
    orbit_login_failure_t  *f;

    static const char  sql[] =
        "INSERT INTO audit_logs (tenant_id, user_id, action, ip, details)"
        " SELECT u.tenant_id, u.id, 'auth.login_failed', $2::inet,"
        "   jsonb_build_object('email', $1::text, 'reason', $3::text)"
        " FROM (SELECT 1) one"
        " LEFT JOIN users u ON lower(u.email) = lower($1)";

    f = ngx_palloc(ar->r->pool, sizeof(orbit_login_failure_t));
    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));

    if (f == NULL || v == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    f->why = why;
    f->status = status;
    ar->data = f;

    v[0] = (char *) orbit_api_body_str(ar, "email");
    v[1] = orbit_api_client_ip(ar);
    v[2] = why;

    rc = orbit_api_query(ar, sql, 3, v, orbit_login_failed_done);

    orbit_api_finish(ar, rc);
}


static void
orbit_login_failed_done(orbit_api_req_t *ar, PGresult *res)
{
    orbit_login_failure_t  *f = ar->data;

    orbit_api_finish(ar, orbit_api_send_error(ar, f->status, f->why));
}


/* POST /api/v1/auth/refresh: rotate, or detect reuse */

ngx_int_t
orbit_api_auth_refresh(orbit_api_req_t *ar)
{
    u_char           *token;
    const char      **v;
    orbit_session_t  *s;
    char              presented[ORBIT_SHA256_HEX_LEN + 1];

    static const char  sql[] =
        "WITH cur AS ("
        "  SELECT rt.id, rt.family_id, rt.user_id,"
        "    (rt.used_at IS NOT NULL OR rt.revoked_at IS NOT NULL) AS spent,"
        "    rt.expires_at > now() AS live"
        "  FROM refresh_tokens rt WHERE rt.token_hash = $1 FOR UPDATE"
        "), revoked AS ("
        "  UPDATE refresh_tokens r SET revoked_at = now() FROM cur"
        "  WHERE cur.spent AND r.family_id = cur.family_id"
        "    AND r.revoked_at IS NULL"
        "  RETURNING r.id"
        "), usr AS ("
        "  SELECT u.id, u.tenant_id, u.role, u.email, u.name"
        "  FROM cur JOIN users u ON u.id = cur.user_id"
        "  LEFT JOIN tenants t ON t.id = u.tenant_id"
        "  WHERE NOT cur.spent AND cur.live AND u.is_active"
        "    AND (u.tenant_id IS NULL OR t.status = 'active')"
        "), used AS ("
        "  UPDATE refresh_tokens r SET used_at = now() FROM cur, usr"
        "  WHERE r.id = cur.id RETURNING r.id"
        "), next AS ("
        "  INSERT INTO refresh_tokens (family_id, user_id, token_hash,"
        "    expires_at)"
        "  SELECT cur.family_id, cur.user_id, $2, now() + interval '7 days'"
        "  FROM cur, usr RETURNING id"
        "), audit AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, ip)"
        "  SELECT u.tenant_id, u.id, 'auth.refresh_reuse', $3::inet"
        "  FROM cur JOIN users u ON u.id = cur.user_id WHERE cur.spent"
        ")"
        " SELECT CASE WHEN EXISTS (SELECT 1 FROM usr) THEN 'ok'"
        "   WHEN EXISTS (SELECT 1 FROM cur WHERE spent) THEN 'reuse'"
        "   ELSE 'invalid' END,"
        "  usr.id, usr.tenant_id, usr.role,"
        "  json_build_object('id', usr.id, 'email', usr.email,"
        "    'name', usr.name, 'role', usr.role, 'tenantId', usr.tenant_id)"
        " FROM (SELECT 1) one LEFT JOIN usr ON true";

    if (orbit_api_validate(ar, orbit_refresh_fields) != NGX_OK) {
        return ar->rc;
    }

    token = orbit_api_body_str(ar, "refreshToken");
    s = ngx_pcalloc(ar->r->pool, sizeof(orbit_session_t));
    v = ngx_palloc(ar->r->pool, 3 * sizeof(char *));

    if (token == NULL || s == NULL || v == NULL
        || orbit_random_token(s->refresh, ORBIT_REFRESH_BYTES) != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    orbit_sha256_hex(s->refresh_hash, s->refresh, ngx_strlen(s->refresh));
    orbit_sha256_hex(presented, token, ngx_strlen(token));

    ar->data = s;

    v[0] = orbit_api_strdup(ar->r->pool, presented);
    v[1] = s->refresh_hash;
    v[2] = orbit_api_client_ip(ar);

    if (v[0] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, sql, 3, v, orbit_refresh_done);
}


static void
orbit_refresh_done(orbit_api_req_t *ar, PGresult *res)
{
    char             *outcome;
    orbit_session_t  *s;

    s = ar->data;
    outcome = PQgetvalue(res, 0, 0);

    if (ngx_strcmp(outcome, "reuse") == 0) {
        ngx_log_error(NGX_LOG_WARN, ar->r->connection->log, 0,
                      "orbit: a used refresh token was presented again: "
                      "its session family is revoked");
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_UNAUTHORIZED,
                             "Refresh token reuse detected: session "
                             "revoked"));
        return;
    }

    if (ngx_strcmp(outcome, "ok") != 0) {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_UNAUTHORIZED,
                             "Invalid refresh token"));
        return;
    }

    ngx_cpystrn((u_char *) s->user_id, (u_char *) PQgetvalue(res, 0, 1),
                sizeof(s->user_id));
    ngx_cpystrn((u_char *) s->tenant_id, (u_char *) PQgetvalue(res, 0, 2),
                sizeof(s->tenant_id));
    ngx_cpystrn((u_char *) s->role, (u_char *) PQgetvalue(res, 0, 3),
                sizeof(s->role));

    s->user_json = (u_char *) orbit_copy_value(ar->r->pool, res, 4);
    if (s->user_json == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    s->user_json_len = ngx_strlen(s->user_json);

    orbit_api_finish(ar, orbit_session_send(ar, s));
}


/* POST /api/v1/auth/logout: one session (its token given), or all */

ngx_int_t
orbit_api_auth_logout(orbit_api_req_t *ar)
{
    u_char       *token;
    const char  **v;
    char          hash[ORBIT_SHA256_HEX_LEN + 1];

    static const char  sql[] =
        "WITH fam AS ("
        "  SELECT family_id FROM refresh_tokens"
        "  WHERE token_hash = $2 AND user_id = $1"
        "), rev AS ("
        "  UPDATE refresh_tokens SET revoked_at = now()"
        "  WHERE user_id = $1 AND revoked_at IS NULL"
        "    AND ($2::text IS NULL OR family_id IN (SELECT family_id FROM fam))"
        "  RETURNING 1"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, ip, details)"
        "  SELECT $3::uuid, $1, 'auth.logout', $4::inet,"
        "    jsonb_build_object('sessions', count(*)) FROM rev"
        ")"
        " SELECT 200, json_build_object('success', true)";

    if (orbit_api_validate(ar, orbit_logout_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    token = orbit_api_body_str(ar, "refreshToken");

    v[0] = (char *) ar->who.user_id.data;
    v[1] = NULL;
    v[2] = ar->who.tenant_id.len ? (char *) ar->who.tenant_id.data : NULL;
    v[3] = orbit_api_client_ip(ar);

    if (token) {
        orbit_sha256_hex(hash, token, ngx_strlen(token));
        v[1] = orbit_api_strdup(ar->r->pool, hash);
    }

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}


/* GET /api/v1/auth/me */

ngx_int_t
orbit_api_auth_me(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, json_build_object('id', u.id, 'email', u.email,"
        "  'name', u.name, 'role', u.role, 'tenantId', u.tenant_id,"
        "  'isActive', u.is_active, 'createdAt', u.created_at,"
        "  'tenant', CASE WHEN t.id IS NULL THEN NULL"
        "    ELSE json_build_object('id', t.id, 'name', t.name,"
        "      'slug', t.slug, 'status', t.status) END), NULL"
        " FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id"
        " WHERE u.id = $1 AND u.tenant_id IS NOT DISTINCT FROM $2::uuid"
        "   AND u.is_active"
        " UNION ALL SELECT 401, NULL, 'Unauthorized'"
        " LIMIT 1";

    v = ngx_palloc(ar->r->pool, 2 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = (char *) ar->who.user_id.data;
    v[1] = ar->who.tenant_id.len ? (char *) ar->who.tenant_id.data : NULL;

    return orbit_api_query(ar, sql, 2, v, orbit_api_respond_row);
}


/* the threads' work: no nginx calls here */

static void
orbit_pw_hash_work(void *ctx)
{
    orbit_pw_job_t  *job = ctx;

    job->ok = orbit_password_hash(job->password, strlen(job->password),
                                  job->hash, sizeof(job->hash)) == 0;

    ngx_explicit_memzero(job->password, sizeof(job->password));
}


static void
orbit_pw_verify_work(void *ctx)
{
    orbit_pw_job_t  *job = ctx;

    job->ok = orbit_password_verify(job->hash, job->password,
                                    strlen(job->password));

    ngx_explicit_memzero(job->password, sizeof(job->password));
}


/* a refresh token for s (its hash for the database) */

static ngx_int_t
orbit_session_new(orbit_api_req_t *ar, orbit_session_t *s)
{
    if (orbit_random_token(s->refresh, ORBIT_REFRESH_BYTES) != 0) {
        return NGX_ERROR;
    }

    orbit_sha256_hex(s->refresh_hash, s->refresh, ngx_strlen(s->refresh));

    return NGX_OK;
}


/* {"accessToken":..,"refreshToken":..,"expiresIn":900,"user":{..}} */

static ngx_int_t
orbit_session_send(orbit_api_req_t *ar, orbit_session_t *s)
{
    char                *jwt;
    u_char              *buf, *p;
    size_t               len;
    orbit_secrets_t     *secrets;
    orbit_jwt_claims_t   claims;

    secrets = ngx_http_orbit_secrets();
    if (secrets == NULL) {
        return orbit_api_send_error(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    NULL);
    }

    ngx_memzero(&claims, sizeof(orbit_jwt_claims_t));
    ngx_cpystrn((u_char *) claims.user_id, (u_char *) s->user_id,
                sizeof(claims.user_id));
    ngx_cpystrn((u_char *) claims.tenant_id, (u_char *) s->tenant_id,
                sizeof(claims.tenant_id));
    ngx_cpystrn((u_char *) claims.role, (u_char *) s->role,
                sizeof(claims.role));
    claims.iat = (long) ngx_time();
    claims.exp = claims.iat + ORBIT_ACCESS_TTL;

    jwt = orbit_jwt_sign((u_char *) secrets->jwt_secret,
                         secrets->jwt_secret_len, &claims);
    if (jwt == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"accessToken\":\"\",\"refreshToken\":\"\","
                 "\"expiresIn\":,\"user\":}") + ngx_strlen(jwt)
          + ngx_strlen(s->refresh) + NGX_INT_T_LEN + s->user_json_len;

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        orbit_jwt_free(jwt);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* base64url tokens need no JSON escaping; user is PostgreSQL's JSON */

    p = ngx_sprintf(buf, "{\"accessToken\":\"%s\",\"refreshToken\":\"%s\","
                    "\"expiresIn\":%d,\"user\":", jwt, s->refresh,
                    ORBIT_ACCESS_TTL);
    p = ngx_cpymem(p, s->user_json, s->user_json_len);
    *p++ = '}';

    orbit_jwt_free(jwt);

    return orbit_api_send_json(ar, NGX_HTTP_OK, buf, p - buf);
}


/* "Acme & Sons, Ltd." -> "acme-sons-ltd" */

static u_char *
orbit_slugify(ngx_pool_t *pool, const u_char *name)
{
    u_char  *slug, *p, c;

    if (name == NULL) {
        return NULL;
    }

    slug = ngx_pnalloc(pool, 41);
    if (slug == NULL) {
        return NULL;
    }

    p = slug;

    for ( /* void */ ; *name && p < slug + 40; name++) {
        c = ngx_tolower(*name);

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            *p++ = c;

        } else if (p > slug && p[-1] != '-') {
            *p++ = '-';
        }
    }

    while (p > slug && p[-1] == '-') {
        p--;
    }

    if (p == slug) {
        p = ngx_cpymem(p, "tenant", 6);
    }

    *p = '\0';

    return slug;
}


/* column col of row 0, nul-terminated in pool; NULL for SQL NULL */

static const char *
orbit_copy_value(ngx_pool_t *pool, PGresult *res, int col)
{
    u_char  *p;
    size_t   len;

    if (PQgetisnull(res, 0, col)) {
        return NULL;
    }

    len = PQgetlength(res, 0, col);

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, PQgetvalue(res, 0, col), len);
    p[len] = '\0';

    return (char *) p;
}
