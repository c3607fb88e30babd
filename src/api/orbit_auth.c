/*
 * OrbitDesk REST: authentication (Bearer JWT) and authorisation (roles
 * for users, scopes for API keys) of a routed request.  An API key has
 * been looked up before routing (orbit_apikey_authenticate(): its id
 * counts against the rate limit); here it is only judged.
 */

#include "api/orbit_api.h"
#include "api/orbit_apikey_cache.h"
#include "ngx_http_orbit_module.h"


#define ORBIT_AUTH_MAX_TOKEN  4096


typedef struct {
    const char  *name;
    ngx_uint_t   role;
} orbit_auth_role_t;


static const orbit_auth_role_t  orbit_auth_roles[] = {
    { "SUPERADMIN", ORBIT_ROLE_SUPERADMIN },
    { "ADMIN", ORBIT_ROLE_ADMIN },
    { "MANAGER", ORBIT_ROLE_MANAGER },
    { "AGENT", ORBIT_ROLE_AGENT },
    { "VISITOR", ORBIT_ROLE_VISITOR },
    { NULL, 0 }
};


static ngx_int_t orbit_auth_bearer(orbit_api_req_t *ar, ngx_str_t *token);
static ngx_int_t orbit_auth_key(orbit_api_req_t *ar, ngx_uint_t access);
static ngx_int_t orbit_auth_refuse(orbit_api_req_t *ar, ngx_uint_t status,
    const char *message);
static ngx_int_t orbit_auth_str(ngx_pool_t *pool, ngx_str_t *dst,
    const char *src);


ngx_uint_t
orbit_auth_role(const u_char *name, size_t len)
{
    const orbit_auth_role_t  *r;

    for (r = orbit_auth_roles; r->name; r++) {
        if (ngx_strlen(r->name) == len
            && ngx_strncmp(r->name, name, len) == 0)
        {
            return r->role;
        }
    }

    return 0;
}


const char *
orbit_auth_role_name(ngx_uint_t role)
{
    const orbit_auth_role_t  *r;

    for (r = orbit_auth_roles; r->name; r++) {
        if (r->role == role) {
            return r->name;
        }
    }

    return "";
}


/*
 * NGX_OK: ar->who is set and may call the route.  Otherwise the refusal
 * is answered here (401 or 403, the API's error shape) and the caller
 * returns ar->rc.
 */

ngx_int_t
orbit_auth_check(orbit_api_req_t *ar)
{
    ngx_int_t            rc;
    ngx_str_t            token;
    ngx_uint_t           access;
    orbit_secrets_t     *secrets;
    orbit_jwt_claims_t   claims;
    u_char               buf[ORBIT_AUTH_MAX_TOKEN + 1];

    access = ar->match.route->access;

    if (access & ORBIT_PUBLIC) {
        return NGX_OK;
    }

    rc = orbit_auth_bearer(ar, &token);

    if (rc != NGX_OK && orbit_apikey_presented(ar->r)) {
        /* no Bearer token: the API key, looked up before routing */
        return orbit_auth_key(ar, access);
    }

    if (rc == NGX_DECLINED) {
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Unauthorized");
    }

    if (rc != NGX_OK || token.len > ORBIT_AUTH_MAX_TOKEN) {
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Unauthorized");
    }

    secrets = ngx_http_orbit_secrets();

    if (secrets == NULL) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: a route needs \"orbit_secrets\" to check "
                      "tokens");
        return orbit_auth_refuse(ar, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 NULL);
    }

    ngx_memcpy(buf, token.data, token.len);
    buf[token.len] = '\0';

    switch (orbit_jwt_verify((u_char *) secrets->jwt_secret,
                             secrets->jwt_secret_len, (char *) buf,
                             (long) ngx_time(), &claims))
    {
    case ORBIT_JWT_OK:
        break;

    case ORBIT_JWT_EXPIRED:
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Token expired");

    default:
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Unauthorized");
    }

    ar->who.kind = ORBIT_AUTH_USER;
    ar->who.role = orbit_auth_role((u_char *) claims.role,
                                   ngx_strlen(claims.role));

    if (ar->who.role == 0
        || (ar->who.role != ORBIT_ROLE_SUPERADMIN && claims.tenant_id[0] == 0)
        || orbit_auth_str(ar->r->pool, &ar->who.user_id, claims.user_id)
           != NGX_OK
        || orbit_auth_str(ar->r->pool, &ar->who.tenant_id, claims.tenant_id)
           != NGX_OK
        || orbit_auth_str(ar->r->pool, &ar->who.account, claims.account)
           != NGX_OK
        || ((ar->who.role == ORBIT_ROLE_VISITOR) != (claims.account[0] != 0)))
    {
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Unauthorized");
    }

    if (!(access & ar->who.role)) {
        return orbit_auth_refuse(ar, NGX_HTTP_FORBIDDEN,
                                 "Forbidden resource");
    }

    /* a user's JWT skips scope checks: scopes bind API keys only */

    return NGX_OK;
}


/*
 * A keyed request: orbit_apikey_authenticate() has set ar->who if the key
 * is valid.  A key calls only routes that name a scope, and needs every
 * scope the route names.
 */

static ngx_int_t
orbit_auth_key(orbit_api_req_t *ar, ngx_uint_t access)
{
    u_char      *p;
    ngx_uint_t   need, missing;
    u_char       msg[256];

    if (ar->who.kind != ORBIT_AUTH_KEY) {
        return orbit_auth_refuse(ar, NGX_HTTP_UNAUTHORIZED,
                                 "Invalid API key");
    }

    need = access & ORBIT_SCOPES_MASK;

    if (need == 0) {
        /* users' business: keys, users, tenants, the audit log */
        return orbit_auth_refuse(ar, NGX_HTTP_FORBIDDEN,
                                 "API keys cannot access this resource");
    }

    missing = need & ~ar->who.scopes;

    if (missing) {
        p = ngx_slprintf(msg, msg + sizeof(msg) - 1, "Missing scope: ");
        p = orbit_apikey_scope_names(p, msg + sizeof(msg) - 1, missing,
                                     ", ");
        *p = '\0';

        return orbit_auth_refuse(ar, NGX_HTTP_FORBIDDEN, (char *) msg);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_auth_refuse(orbit_api_req_t *ar, ngx_uint_t status, const char *message)
{
    ar->rc = orbit_api_send_error(ar, status, message);

    return NGX_DECLINED;
}


/* NGX_OK with the token, NGX_DECLINED when there is no Authorization */

static ngx_int_t
orbit_auth_bearer(orbit_api_req_t *ar, ngx_str_t *token)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    h = ar->r->headers_in.authorization;

    if (h == NULL) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

    if (h->value.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer ", sizeof("Bearer ") - 1)
           != 0)
    {
        return NGX_ERROR;
    }

    p += sizeof("Bearer ") - 1;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    if (p == last) {
        return NGX_ERROR;
    }

    token->data = p;
    token->len = last - p;

    return NGX_OK;
}


static ngx_int_t
orbit_auth_str(ngx_pool_t *pool, ngx_str_t *dst, const char *src)
{
    dst->len = ngx_strlen(src);

    dst->data = ngx_pnalloc(pool, dst->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, dst->len + 1);

    return NGX_OK;
}
