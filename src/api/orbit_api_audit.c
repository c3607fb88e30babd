/*
 * OrbitDesk REST: /api/v1/audit-logs — security-relevant actions (logins,
 * failed logins, sessions revoked, tenants approved, keys, roles).
 */

#include "api/orbit_api.h"


/*
 * GET /api/v1/audit-logs?limit=&cursor=&action=[&tenantId=] (newest
 * first).  An admin reads their tenant's; a superadmin all, or one
 * tenant's.
 */

ngx_int_t
orbit_api_audit_list(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, json_build_object("
        "  'data', COALESCE(json_agg(json_build_object('id', a.id,"
        "    'tenantId', a.tenant_id, 'userId', a.user_id,"
        "    'action', a.action, 'target', a.target, 'ip', host(a.ip),"
        "    'details', a.details, 'createdAt', a.created_at)"
        "    ORDER BY a.id DESC), '[]'),"
        "  'nextCursor', CASE WHEN count(*) = $2::int"
        "    THEN min(a.id)::text END)"
        " FROM (SELECT * FROM audit_logs"
        "   WHERE ($1::uuid IS NULL OR tenant_id = $1::uuid)"
        "     AND ($3::bigint IS NULL OR id < $3::bigint)"
        "     AND ($4::text IS NULL OR action = $4)"
        "   ORDER BY id DESC LIMIT $2::int) a";

    v = ngx_palloc(ar->r->pool, 4 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_page_args(ar, &v[1], &v[2], 200) != NGX_OK) {
        return ar->rc;
    }

    if (v[2] && ngx_atoi((u_char *) v[2], ngx_strlen(v[2])) == NGX_ERROR) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "cursor must be an audit log id");
    }

    v[3] = orbit_api_arg(ar, "action");

    if (ar->who.role == ORBIT_ROLE_SUPERADMIN) {
        v[0] = orbit_api_arg(ar, "tenantId");

        if (v[0] && !orbit_valid_uuid(v[0], ngx_strlen(v[0]))) {
            return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                        "tenantId must be a UUID");
        }

    } else {
        /* the caller's own tenant, never one from the request */
        v[0] = (char *) ar->who.tenant_id.data;
    }

    return orbit_api_query(ar, sql, 4, v, orbit_api_respond_row);
}
