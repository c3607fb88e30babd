/*
 * OrbitDesk REST: route, authenticate, read the body, parse JSON,
 * dispatch; and the helpers every handler ends with.
 */

#include <ngx_thread_pool.h>

#include "api/orbit_api.h"
#include "api/orbit_apikey_cache.h"
#include "channels/orbit_channel.h"
#include "ngx_http_orbit_module.h"


#define ORBIT_ANY_USER        ORBIT_ROLES_ALL
#define ORBIT_TENANT_ADMINS   (ORBIT_ROLE_ADMIN)
#define ORBIT_TENANT_STAFF    (ORBIT_ROLE_ADMIN|ORBIT_ROLE_MANAGER)
#define ORBIT_PLATFORM        (ORBIT_ROLE_SUPERADMIN)


static const orbit_route_t  orbit_api_routes[] = {
    { "GET",   "/api/v1/health",              (void *) orbit_api_health,
      ORBIT_PUBLIC },

    { "POST",  "/api/v1/auth/register",       (void *) orbit_api_auth_register,
      ORBIT_PUBLIC },
    { "POST",  "/api/v1/auth/login",          (void *) orbit_api_auth_login,
      ORBIT_PUBLIC },
    { "POST",  "/api/v1/auth/refresh",        (void *) orbit_api_auth_refresh,
      ORBIT_PUBLIC },
    { "POST",  "/api/v1/auth/logout",         (void *) orbit_api_auth_logout,
      ORBIT_ANY_USER },
    { "GET",   "/api/v1/auth/me",             (void *) orbit_api_auth_me,
      ORBIT_ANY_USER },

    { "GET",   "/api/v1/tenants",             (void *) orbit_api_tenants_list,
      ORBIT_PLATFORM },
    { "GET",   "/api/v1/tenants/:id",         (void *) orbit_api_tenants_get,
      ORBIT_PLATFORM },
    { "PATCH", "/api/v1/tenants/:id",        (void *) orbit_api_tenants_update,
      ORBIT_PLATFORM },

    { "GET",   "/api/v1/audit-logs",          (void *) orbit_api_audit_list,
      ORBIT_TENANT_ADMINS|ORBIT_PLATFORM },

    { "GET",   "/api/v1/users",               (void *) orbit_api_users_list,
      ORBIT_TENANT_STAFF },
    { "POST",  "/api/v1/users",               (void *) orbit_api_users_create,
      ORBIT_TENANT_STAFF },
    { "GET",   "/api/v1/users/:id",           (void *) orbit_api_users_get,
      ORBIT_TENANT_STAFF },
    { "PATCH", "/api/v1/users/:id",           (void *) orbit_api_users_update,
      ORBIT_TENANT_STAFF },

    { "GET",   "/api/v1/api-keys",            (void *) orbit_api_keys_list,
      ORBIT_TENANT_ADMINS },
    { "POST",  "/api/v1/api-keys",            (void *) orbit_api_keys_create,
      ORBIT_TENANT_ADMINS },
    { "PATCH", "/api/v1/api-keys/:id/revoke", (void *) orbit_api_keys_revoke,
      ORBIT_TENANT_ADMINS },
    { "DELETE", "/api/v1/api-keys/:id",       (void *) orbit_api_keys_delete,
      ORBIT_TENANT_ADMINS },

    { "GET",   "/api/v1/contacts",            (void *) orbit_api_contacts_list,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_READ },
    { "POST",  "/api/v1/contacts",           (void *) orbit_api_contacts_create,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE },
    { "POST",  "/api/v1/contacts/import",    (void *) orbit_api_contacts_import,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE|ORBIT_RAW_BODY },
    { "GET",   "/api/v1/contacts/export",    (void *) orbit_api_contacts_export,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_READ },
    { "GET",   "/api/v1/contacts/:id",        (void *) orbit_api_contacts_get,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_READ },
    { "PATCH", "/api/v1/contacts/:id",       (void *) orbit_api_contacts_update,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE },
    { "DELETE", "/api/v1/contacts/:id",      (void *) orbit_api_contacts_delete,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE },
    { "POST",  "/api/v1/contacts/:id/tags",  (void *) orbit_api_contacts_tag,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE },
    { "DELETE", "/api/v1/contacts/:id/tags/:tag",
      (void *) orbit_api_contacts_untag,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONTACTS_WRITE },

    { "GET",   "/api/v1/conversations",
      (void *) orbit_api_conversations_list,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONVERSATIONS_READ },
    { "GET",   "/api/v1/conversations/unread",
      (void *) orbit_api_conversations_unread,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONVERSATIONS_READ },
    { "GET",   "/api/v1/conversations/:id",
      (void *) orbit_api_conversations_get,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_CONVERSATIONS_READ },
    { "PATCH", "/api/v1/conversations/:id",
      (void *) orbit_api_conversations_update, ORBIT_ROLES_TENANT },
    { "POST",  "/api/v1/conversations/:id/read",
      (void *) orbit_api_conversations_read, ORBIT_ROLES_TENANT },
    { "GET",   "/api/v1/conversations/:id/messages",
      (void *) orbit_api_conversations_messages,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_MESSAGES_READ },

    { "POST",  "/api/v1/messages",           (void *) orbit_api_messages_send,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_MESSAGES_SEND },

    /* media: uploads, and the bytes for users or a signed link's holder */

    { "POST",  "/api/v1/media",              (void *) orbit_api_media_upload,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_MESSAGES_SEND|ORBIT_RAW_BODY },
    { "GET",   "/api/v1/media/:id",           (void *) orbit_api_media_get,
      ORBIT_ROLES_TENANT|ORBIT_SCOPE_MESSAGES_READ },
    { "GET",   "/api/v1/media/:id/content",
      (void *) orbit_api_media_content, ORBIT_WEBHOOK },

    /* the live-chat widget's: a session, then the visitor's token */
    { "POST",  "/api/v1/channels/live-chat/session",
      (void *) orbit_livechat_session, ORBIT_PUBLIC },
    { "POST",  "/api/v1/channels/live-chat/message",
      (void *) orbit_livechat_message, ORBIT_ROLE_VISITOR|ORBIT_RAW_BODY },
    { "GET",   "/api/v1/channels/live-chat/messages",
      (void *) orbit_livechat_messages, ORBIT_ROLE_VISITOR },

    /* providers' webhooks: signed, not authenticated */
    { "GET",   "/api/v1/whatsapp/webhook",
      (void *) orbit_channel_whatsapp_webhook, ORBIT_WEBHOOK },
    { "POST",  "/api/v1/whatsapp/webhook",
      (void *) orbit_channel_whatsapp_webhook, ORBIT_WEBHOOK|ORBIT_RAW_BODY },
    { "GET",   "/api/v1/channels/:channel/webhook",
      (void *) orbit_channel_webhook, ORBIT_WEBHOOK },
    { "POST",  "/api/v1/channels/:channel/webhook",
      (void *) orbit_channel_webhook, ORBIT_WEBHOOK|ORBIT_RAW_BODY },
    { "POST",  "/api/v1/channels/:channel/:account/webhook",
      (void *) orbit_channel_webhook, ORBIT_WEBHOOK|ORBIT_RAW_BODY },
    /* no scope names them: an admin's JWT, never an API key */
    { "GET",   "/api/v1/channels",            (void *) orbit_api_channels_list,
      ORBIT_TENANT_STAFF },
    { "POST",  "/api/v1/channels",           (void *) orbit_api_channels_create,
      ORBIT_TENANT_ADMINS },
    { "GET",   "/api/v1/channels/:id",        (void *) orbit_api_channels_get,
      ORBIT_TENANT_STAFF },
    { "PATCH", "/api/v1/channels/:id",       (void *) orbit_api_channels_update,
      ORBIT_TENANT_ADMINS },
    { "DELETE", "/api/v1/channels/:id",      (void *) orbit_api_channels_delete,
      ORBIT_TENANT_ADMINS },
};

#define ORBIT_API_NROUTES                                                    \
    (sizeof(orbit_api_routes) / sizeof(orbit_api_routes[0]))


typedef struct {
    orbit_api_req_t             *ar;
    orbit_api_work_pt            work;
    orbit_api_work_done_pt       done;
    void                        *ctx;
    ngx_pool_cleanup_t          *cln;          /* in the request's pool */
    unsigned                     orphan:1;
} orbit_api_task_t;


static void orbit_api_keyed(orbit_api_req_t *ar, ngx_int_t rc);
static ngx_int_t orbit_api_run(orbit_api_req_t *ar);
static ngx_int_t orbit_api_limit(orbit_api_req_t *ar);
static void orbit_api_body_read(ngx_http_request_t *r);
static ngx_int_t orbit_api_parse_body(orbit_api_req_t *ar);
static ngx_int_t orbit_api_not_found(orbit_api_req_t *ar);
static ngx_int_t orbit_api_bad_method(orbit_api_req_t *ar);
static void orbit_api_query_done(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_api_query_error(orbit_api_req_t *ar,
    PGresult *res);
static void orbit_api_task_orphan(void *data);
static void orbit_api_task_run(void *data, ngx_log_t *log);
static void orbit_api_task_done(ngx_event_t *ev);
static void orbit_api_cleanup(void *data);


ngx_int_t
orbit_api_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    orbit_api_req_t      *ar;
    ngx_pool_cleanup_t   *cln;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(orbit_api_req_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar = cln->data;
    ngx_memzero(ar, sizeof(orbit_api_req_t));
    ar->r = r;

    cln->handler = orbit_api_cleanup;

    ngx_http_set_ctx(r, ar, ngx_http_orbit_module);

    /*
     * An API key is resolved first: a keyed request counts against its
     * key's limit, not its address's.  The shm cache answers at once; a
     * miss asks PostgreSQL and the request resumes in orbit_api_keyed().
     */

    rc = orbit_apikey_authenticate(ar, orbit_api_keyed);

    if (rc == NGX_DONE) {
        return NGX_DONE;
    }

    if (rc != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ar->rc;
    }

    return orbit_api_run(ar);
}


/* the key's lookup is back: on with the request, or it was answered */

static void
orbit_api_keyed(orbit_api_req_t *ar, ngx_int_t rc)
{
    if (rc == NGX_OK) {
        rc = orbit_api_run(ar);

    } else {
        if (ngx_http_discard_request_body(ar->r) != NGX_OK) {
            ar->r->keepalive = 0;
        }

        rc = ar->rc;
    }

    /* the lookup's hold: what run started holds the request itself */

    orbit_api_finish(ar, rc);
}


/*
 * Limit, route, authorise, read the body, call the handler.  Returns what
 * the content handler returns: NGX_DONE while a body is read or a handler
 * waits, else the answer's rc.
 */

static ngx_int_t
orbit_api_run(orbit_api_req_t *ar)
{
    ngx_int_t            rc;
    ngx_str_t            method;
    orbit_route_rc_e     found;
    ngx_http_request_t  *r;

    r = ar->r;

    /* HEAD is GET without the body: nginx drops the body for us */

    if (r->method == NGX_HTTP_HEAD) {
        ngx_str_set(&method, "GET");

    } else {
        method = r->method_name;
    }

    found = orbit_route_find(orbit_api_routes, ORBIT_API_NROUTES,
                             (char *) method.data, method.len,
                             (char *) r->uri.data, r->uri.len, &ar->match);

    /*
     * Every request counts, whatever it asks for and whoever asks; but a
     * provider's webhook, whose few addresses send every tenant's events,
     * is held to its signature instead.
     */

    if (!(found == ORBIT_ROUTE_FOUND
          && (ar->match.route->access & ORBIT_NO_LIMIT))
        && orbit_api_limit(ar) != NGX_OK)
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ar->rc;
    }

    if (found == ORBIT_ROUTE_NOT_FOUND) {
        return orbit_api_not_found(ar);
    }

    if (found == ORBIT_ROUTE_BAD_METHOD) {
        return orbit_api_bad_method(ar);
    }

    /* who is calling is known before any body is read */

    if (orbit_auth_check(ar) != NGX_OK) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ar->rc;
    }

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ((orbit_api_handler_pt) ar->match.route->handler)(ar);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, orbit_api_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The spec's limits: per API key for keyed requests, per client address
 * otherwise (JWT users, the unauthenticated, bad keys).  The counters live
 * in the orbit_limit_zone of this location (shared by the workers); every
 * answer carries X-RateLimit-*.
 */

static ngx_int_t
orbit_api_limit(orbit_api_req_t *ar)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_str_t                   key, *id;
    const char                 *kind;
    orbit_limit_result_t        res;
    ngx_http_orbit_loc_conf_t  *olcf;

    olcf = ngx_http_get_module_loc_conf(ar->r, ngx_http_orbit_module);

    if (olcf->limit.shm_zone == NULL) {
        return NGX_OK;
    }

    if (ar->who.kind == ORBIT_AUTH_KEY) {
        kind = "k:";
        id = &ar->who.key_id;

    } else {
        kind = "ip:";
        id = &ar->r->connection->addr_text;
    }

    key.data = ngx_pnalloc(ar->r->pool, ngx_strlen(kind) + id->len);
    if (key.data == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    p = ngx_cpymem(key.data, kind, ngx_strlen(kind));
    p = ngx_cpymem(p, id->data, id->len);
    key.len = p - key.data;

    rc = orbit_limit_check(ar->r, &olcf->limit, &key, &res);

    if (rc == NGX_DECLINED) {
        return NGX_OK;
    }

    if (orbit_limit_headers(ar->r, &res) != NGX_OK) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    if (rc == NGX_BUSY) {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_TOO_MANY_REQUESTS,
                                      "ThrottlerException: Too Many "
                                      "Requests");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


orbit_api_req_t *
orbit_api_get(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r, ngx_http_orbit_module);
}


void
orbit_api_hold(orbit_api_req_t *ar)
{
    ar->r->main->count++;
}


void
orbit_api_finish(orbit_api_req_t *ar, ngx_int_t rc)
{
    ngx_connection_t  *c;

    c = ar->r->connection;

    ngx_http_finalize_request(ar->r, rc);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
orbit_api_send_json(orbit_api_req_t *ar, ngx_uint_t status, u_char *data,
    size_t len)
{
    static ngx_str_t  json = ngx_string("application/json");

    return orbit_api_send(ar, status, &json, data, len);
}


ngx_int_t
orbit_api_send(orbit_api_req_t *ar, ngx_uint_t status, ngx_str_t *type,
    u_char *data, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = ar->r;
    ar->json_sent = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
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

    b->pos = data;
    b->last = data + len;
    b->memory = len ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * json, a JSON object, answered with "name": "value" added (a value made
 * in C that must not go through PostgreSQL: a key, a secret, shown once).
 */

ngx_int_t
orbit_api_send_json_with(orbit_api_req_t *ar, ngx_uint_t status,
    u_char *json, size_t len, const char *name, const char *value)
{
    u_char  *buf, *p;
    size_t   nlen, vlen;

    while (len && json[len - 1] != '}') {
        len--;
    }

    if (len < 2 || json[0] != '{') {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nlen = ngx_strlen(name);
    vlen = ngx_strlen(value);

    buf = ngx_pnalloc(ar->r->pool,
                      len + sizeof(", \"\" : \"\"}")
                      + orbit_json_escaped_len(name, nlen)
                      + orbit_json_escaped_len(value, vlen));
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(buf, json, len - 1);

    while (p[-1] == ' ' || p[-1] == '\n') {
        p--;                                     /* buf[0] is '{' */
    }

    if (p[-1] != '{') {
        p = ngx_cpymem(p, ", ", 2);
    }

    *p++ = '"';
    p = (u_char *) orbit_json_escape((char *) p, name, nlen);
    p = ngx_cpymem(p, "\" : \"", 5);
    p = (u_char *) orbit_json_escape((char *) p, value, vlen);
    p = ngx_cpymem(p, "\"}", 2);

    return orbit_api_send_json(ar, status, buf, p - buf);
}


ngx_int_t
orbit_api_send_error(orbit_api_req_t *ar, ngx_uint_t status,
    const char *message)
{
    u_char       *buf;
    size_t        len;
    const char   *msgs[1];

    msgs[0] = message;

    len = orbit_error_json(NULL, 0, (int) status, msgs, message ? 1 : 0, 0);

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    len = orbit_error_json((char *) buf, len, (int) status, msgs,
                           message ? 1 : 0, 0);

    return orbit_api_send_json(ar, status, buf, len);
}


ngx_int_t
orbit_api_validate(orbit_api_req_t *ar, const orbit_v_field_t *fields)
{
    orbit_v_errors_t  errs;

    if (orbit_validate(ar->body, fields, &errs) == 0) {
        return NGX_OK;
    }

    return orbit_api_refuse(ar, &errs);
}


ngx_int_t
orbit_api_refuse(orbit_api_req_t *ar, const orbit_v_errors_t *errs)
{
    u_char      *buf;
    size_t       len, i;
    const char  *msgs[ORBIT_V_MAX_MESSAGES];

    for (i = 0; i < errs->n; i++) {
        msgs[i] = errs->messages[i];
    }

    /* a validation failure always lists its messages, even just one */

    len = orbit_error_json(NULL, 0, NGX_HTTP_BAD_REQUEST, msgs, errs->n, 1);

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    len = orbit_error_json((char *) buf, len, NGX_HTTP_BAD_REQUEST, msgs,
                           errs->n, 1);

    ar->rc = orbit_api_send_json(ar, NGX_HTTP_BAD_REQUEST, buf, len);

    return NGX_DECLINED;
}


u_char *
orbit_api_body_str(orbit_api_req_t *ar, const char *name)
{
    u_char      *p;
    size_t       len;
    json_t      *v;

    v = ar->body ? json_object_get(ar->body, name) : NULL;

    if (v == NULL || !json_is_string(v)) {
        return NULL;
    }

    len = json_string_length(v);

    p = ngx_pnalloc(ar->r->pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, json_string_value(v), len);
    p[len] = '\0';

    return p;
}


char *
orbit_api_arg(orbit_api_req_t *ar, const char *name)
{
    u_char     *dst, *src, *p;
    ngx_str_t   value;

    if (ngx_http_arg(ar->r, (u_char *) name, ngx_strlen(name), &value)
        != NGX_OK)
    {
        return NULL;
    }

    p = ngx_pnalloc(ar->r->pool, value.len + 1);
    if (p == NULL) {
        return NULL;
    }

    dst = p;
    src = value.data;

    ngx_unescape_uri(&dst, &src, value.len, NGX_UNESCAPE_URI);
    *dst = '\0';

    return (char *) p;
}


ngx_int_t
orbit_api_arg_enum(orbit_api_req_t *ar, const char *name,
    const char *const *values, const char **out)
{
    char               *v;
    const char *const  *o;
    u_char              msg[128];

    v = orbit_api_arg(ar, name);
    *out = v;

    if (v == NULL) {
        return NGX_OK;
    }

    for (o = values; *o; o++) {
        if (ngx_strcmp(*o, v) == 0) {
            return NGX_OK;
        }
    }

    ngx_snprintf(msg, sizeof(msg), "%s must be one of the allowed values%Z",
                 name);

    ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST, (char *) msg);

    return NGX_DECLINED;
}


ngx_int_t
orbit_api_page_args(orbit_api_req_t *ar, const char **limit,
    const char **cursor, ngx_uint_t max)
{
    char       *v;
    ngx_int_t   n;
    u_char      msg[64];

    v = orbit_api_arg(ar, "limit");

    if (v == NULL) {
        *limit = "50";

    } else {
        n = ngx_atoi((u_char *) v, ngx_strlen(v));

        if (n < 1 || (ngx_uint_t) n > max) {
            ngx_snprintf(msg, sizeof(msg),
                         "limit must be between 1 and %ui%Z", max);
            ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                          (char *) msg);
            return NGX_DECLINED;
        }

        *limit = v;
    }

    v = orbit_api_arg(ar, "cursor");
    *cursor = (v && v[0]) ? v : NULL;

    return NGX_OK;
}


ngx_int_t
orbit_api_uuid_param(orbit_api_req_t *ar, ngx_uint_t n, const char **out)
{
    u_char  *p;

    p = orbit_api_param(ar, n);

    if (p == NULL || !orbit_valid_uuid((char *) p, ngx_strlen(p))) {
        /* NestJS's ParseUUIDPipe words it so */
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                      "Validation failed (uuid is "
                                      "expected)");
        return NGX_DECLINED;
    }

    *out = (char *) p;

    return NGX_OK;
}


const char *
orbit_api_client_ip(orbit_api_req_t *ar)
{
    ngx_str_t  *addr;

    addr = &ar->r->connection->addr_text;

    if (addr->len == 0 || addr->data[0] == 'u') {
        return NULL;                             /* unix: no address */
    }

    return orbit_api_strdup_n(ar->r->pool, addr->data, addr->len);
}


char *
orbit_api_strdup_n(ngx_pool_t *pool, const u_char *s, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);
    p[len] = '\0';

    return (char *) p;
}


char *
orbit_api_strdup(ngx_pool_t *pool, const char *s)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(s);

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len + 1);

    return (char *) p;
}


u_char *
orbit_api_param(orbit_api_req_t *ar, ngx_uint_t n)
{
    u_char         *p;
    orbit_slice_t  *s;

    if (n >= ar->match.nparams) {
        return NULL;
    }

    s = &ar->match.params[n];

    p = ngx_pnalloc(ar->r->pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return p;
}


ngx_int_t
orbit_api_query(orbit_api_req_t *ar, const char *sql, int nparams,
    const char **values, orbit_api_result_pt done)
{
    orbit_pg_pool_t   *pool;
    orbit_pg_query_t  *q;

    pool = ngx_http_orbit_pg();

    if (pool == NULL) {
        return orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "orbit_postgres is not configured");
    }

    q = orbit_pg_query_create(ar->r->pool);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->sql = sql;
    q->nparams = nparams;
    q->values = values;
    q->prepare = 1;             /* handlers' statements are constants */
    q->handler = orbit_api_query_done;
    q->data = ar;

    ar->result = done;

    if (orbit_pg_query_send(pool, q) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: %V", &q->error);
        return orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "Service Unavailable");
    }

    orbit_api_hold(ar);

    return NGX_DONE;
}


/*
 * The usual statement about one row of the caller's tenant, the route's
 * first parameter: $1 that id (a UUID, else 400), $2 the tenant, then,
 * when nparams is 4, $3 the user and $4 the client's address (for the
 * audit log).
 */

ngx_int_t
orbit_api_query_id(orbit_api_req_t *ar, const char *sql, int nparams,
    orbit_api_result_pt done)
{
    const char  **v;

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    v[1] = (char *) ar->who.tenant_id.data;
    v[2] = (char *) ar->who.user_id.data;
    v[3] = orbit_api_client_ip(ar);

    return orbit_api_query(ar, sql, nparams, v, done);
}


static void
orbit_api_query_done(orbit_pg_query_t *q, PGresult *res)
{
    orbit_api_req_t  *ar;

    ar = q->data;

    if (res != NULL && (PQresultStatus(res) == PGRES_TUPLES_OK
                        || PQresultStatus(res) == PGRES_COMMAND_OK))
    {
        ar->result(ar, res);
        return;
    }

    orbit_api_finish(ar, orbit_api_query_failed(ar, q, res));
}


ngx_int_t
orbit_api_query_failed(orbit_api_req_t *ar, orbit_pg_query_t *q,
    PGresult *res)
{
    if (res == NULL) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "orbit: %V", &q->error);

        return orbit_api_send_error(ar, q->timedout
                                        ? NGX_HTTP_GATEWAY_TIME_OUT
                                        : NGX_HTTP_SERVICE_UNAVAILABLE,
                                    q->timedout ? "Gateway Timeout"
                                                : "Service Unavailable");
    }

    return orbit_api_query_error(ar, res);
}


/*
 * The database refused: bad input that passed validation (a duplicate, a
 * broken constraint, a value out of range) is the client's 4xx; anything
 * else is ours, logged, and a bare 500.
 */

typedef struct {
    const char  *constraint;
    const char  *message;
} orbit_api_conflict_t;


/* a duplicate, in the words of the field the client sent */
static const orbit_api_conflict_t  orbit_api_conflicts[] = {
    { "tenants_slug_key", "slug is already taken" },
    { "users_email_key", "email is already registered" },
    { "channel_connections_account_key",
      "accountId is already connected on this channel" },
    { NULL, NULL }
};


static ngx_int_t
orbit_api_query_error(orbit_api_req_t *ar, PGresult *res)
{
    char                        *state, *detail, *constraint;
    const orbit_api_conflict_t  *c;

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    detail = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

    if (state == NULL) {
        state = "";
    }

    if (ngx_strcmp(state, "23505") == 0) {
        for (c = orbit_api_conflicts; constraint && c->constraint; c++) {
            if (ngx_strcmp(c->constraint, constraint) == 0) {
                return orbit_api_send_error(ar, NGX_HTTP_CONFLICT,
                                            c->message);
            }
        }

        return orbit_api_send_error(ar, NGX_HTTP_CONFLICT,
                                    "Resource already exists");
    }

    if (ngx_strcmp(state, "57014") == 0) {
        return orbit_api_send_error(ar, NGX_HTTP_GATEWAY_TIME_OUT,
                                    "Gateway Timeout");
    }

    if (ngx_strncmp(state, "22", 2) == 0 || ngx_strcmp(state, "23514") == 0
        || ngx_strcmp(state, "23502") == 0)
    {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    detail ? detail : "Bad Request");
    }

    ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                  "orbit: query failed: %s %s", state,
                  PQresultErrorMessage(res));

    return orbit_api_send_error(ar, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL);
}


void
orbit_api_respond_row(orbit_api_req_t *ar, PGresult *res)
{
    u_char     *body;
    size_t      len;
    ngx_int_t   status;

    if (PQntuples(res) == 0 || PQnfields(res) < 2) {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                                  "Not Found"));
        return;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status < 200 || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (PQgetisnull(res, 0, 1)) {
        orbit_api_finish(ar, orbit_api_send_error(ar, status,
                             PQnfields(res) > 2 && !PQgetisnull(res, 0, 2)
                             ? PQgetvalue(res, 0, 2) : NULL));
        return;
    }

    /* res is freed when we return: the body moves to the request */

    len = PQgetlength(res, 0, 1);

    body = ngx_pnalloc(ar->r->pool, len);
    if (body == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(body, PQgetvalue(res, 0, 1), len);

    orbit_api_finish(ar, orbit_api_send_json(ar, status, body, len));
}


/*
 * The task outlives the request if the client goes away while a thread
 * works on it: it is allocated apart and freed by its completion.
 */

ngx_int_t
orbit_api_offload(orbit_api_req_t *ar, orbit_api_work_pt work,
    orbit_api_work_done_pt done, void *ctx, size_t ctx_size)
{
    ngx_thread_task_t   *task;
    ngx_thread_pool_t   *tp;
    orbit_api_task_t    *t;
    ngx_pool_cleanup_t  *cln;

    tp = ngx_http_orbit_thread_pool();
    if (tp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task = ngx_calloc(sizeof(ngx_thread_task_t) + sizeof(orbit_api_task_t)
                      + ctx_size, ar->r->connection->log);
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = (orbit_api_task_t *) (task + 1);
    t->ar = ar;
    t->work = work;
    t->done = done;
    t->ctx = t + 1;

    ngx_memcpy(t->ctx, ctx, ctx_size);

    task->ctx = t;
    task->handler = orbit_api_task_run;
    task->event.handler = orbit_api_task_done;
    task->event.data = task;
    task->event.log = ar->r->connection->log;

    cln = ngx_pool_cleanup_add(ar->r->pool, 0);
    if (cln == NULL) {
        ngx_free(task);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_thread_task_post(tp, task) != NGX_OK) {
        ngx_free(task);
        return orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "Service Unavailable");
    }

    /* if the request goes first, the completion only frees the task */
    cln->handler = orbit_api_task_orphan;
    cln->data = t;
    t->cln = cln;

    orbit_api_hold(ar);

    return NGX_DONE;
}


static void
orbit_api_task_orphan(void *data)
{
    orbit_api_task_t  *t = data;

    t->orphan = 1;
}


static void
orbit_api_task_run(void *data, ngx_log_t *log)
{
    orbit_api_task_t  *t = data;

    t->work(t->ctx);
}


static void
orbit_api_task_done(ngx_event_t *ev)
{
    ngx_thread_task_t  *task;
    orbit_api_task_t   *t;

    task = ev->data;
    t = task->ctx;

    if (!t->orphan) {
        /* the task is freed below: its cleanup must not touch it later */
        t->cln->handler = NULL;
        t->done(t->ar, t->ctx);
    }

    ngx_free(task);
}


static void
orbit_api_body_read(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    orbit_api_req_t  *ar;

    ar = orbit_api_get(r);

    rc = orbit_api_parse_body(ar);

    if (rc == NGX_OK) {
        rc = ((orbit_api_handler_pt) ar->match.route->handler)(ar);

    } else if (rc == NGX_DECLINED) {
        rc = ar->rc;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
orbit_api_parse_body(orbit_api_req_t *ar)
{
    ngx_str_t            body;
    json_error_t         err;
    ngx_http_request_t  *r;
    u_char               msg[JSON_ERROR_TEXT_LENGTH + 64];

    r = ar->r;

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || (ar->match.route->access & ORBIT_RAW_BODY))
    {
        return NGX_OK;
    }

    if (orbit_api_raw_body(ar, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.len == 0) {
        return NGX_OK;
    }

    ar->body = json_loadb((char *) body.data, body.len,
                          JSON_REJECT_DUPLICATES, &err);

    if (ar->body == NULL) {
        ngx_snprintf(msg, sizeof(msg), "Invalid JSON at position %d: %s%Z",
                     err.position, err.text);
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                      (char *) msg);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The request body as it came, nul-terminated, in the request pool (a
 * body nginx spilled to a file is read back, as the JSON parser does).
 */

ngx_int_t
orbit_api_raw_body(orbit_api_req_t *ar, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (ar->r->request_body == NULL || ar->r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = ar->r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(ar->r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = ar->r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *p = '\0';
    body->len = p - body->data;

    return NGX_OK;
}


/* the caller's tenant, nul-terminated; a superadmin has none here */

const char *
orbit_api_tenant(orbit_api_req_t *ar)
{
    char  *tenant;

    if (ar->who.tenant_id.len == 0) {
        ar->rc = orbit_api_send_error(ar, NGX_HTTP_FORBIDDEN,
                                      "Forbidden resource");
        return NULL;
    }

    tenant = orbit_api_strdup_n(ar->r->pool, ar->who.tenant_id.data,
                                ar->who.tenant_id.len);
    if (tenant == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return tenant;
}


/* "<a timestamp in microseconds>.<id>", as nextCursor gives it */

ngx_int_t
orbit_api_cursor(orbit_api_req_t *ar, const char *cursor,
    const char **us, const char **id)
{
    char    *dot;
    size_t   n, i;

    dot = ngx_strchr(cursor, '.');

    if (dot == NULL) {
        goto invalid;
    }

    n = dot - cursor;

    if (n == 0 || n > 18 || !orbit_valid_uuid(dot + 1, ngx_strlen(dot + 1)))
    {
        goto invalid;
    }

    for (i = 0; i < n; i++) {
        if (cursor[i] < '0' || cursor[i] > '9') {
            goto invalid;
        }
    }

    *us = orbit_api_strdup_n(ar->r->pool, (u_char *) cursor, n);
    *id = dot + 1;

    if (*us == NULL) {
        ar->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    return NGX_OK;

invalid:

    ar->rc = orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                  "cursor is not valid: pass nextCursor "
                                  "as it came");
    return NGX_DECLINED;
}


static ngx_int_t
orbit_api_not_found(orbit_api_req_t *ar)
{
    u_char              *msg;
    ngx_http_request_t  *r;

    r = ar->r;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NestJS words it so: "Cannot GET /api/v1/nope" */

    msg = ngx_pnalloc(r->pool, sizeof("Cannot  ") + r->method_name.len
                               + r->uri.len);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(msg, "Cannot %V %V%Z", &r->method_name, &r->uri);

    return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND, (char *) msg);
}


static ngx_int_t
orbit_api_bad_method(orbit_api_req_t *ar)
{
    u_char              *allow;
    size_t               len;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ar->r;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow = ngx_pnalloc(r->pool, 64);
    if (allow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = orbit_route_allow(orbit_api_routes, ORBIT_API_NROUTES,
                            (char *) r->uri.data, r->uri.len,
                            (char *) allow, 64);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = allow;
    h->value.len = len;

    return orbit_api_send_error(ar, NGX_HTTP_NOT_ALLOWED, NULL);
}


static void
orbit_api_cleanup(void *data)
{
    orbit_api_req_t  *ar = data;

    if (ar->body) {
        json_decref(ar->body);
        ar->body = NULL;
    }
}
