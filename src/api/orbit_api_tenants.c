/*
 * OrbitDesk REST: /api/v1/tenants — the platform's view (SUPERADMIN):
 * list, read, approve / reject / suspend / reactivate, rename.
 */

#include "api/orbit_api.h"


static const char *const  orbit_tenant_statuses[] = {
    "active", "rejected", "suspended", NULL
};

static const char *const  orbit_tenant_filters[] = {
    "pending", "active", "rejected", "suspended", NULL
};

static const orbit_v_field_t  orbit_tenant_update_fields[] = {
    { "status", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 0, 0,
      orbit_tenant_statuses },
    { "name", ORBIT_V_STRING, 0, 0, ORBIT_V_ANY, 2, 100, NULL },
    { NULL, 0, 0, 0, 0, 0, 0, NULL }
};


#define ORBIT_TENANT_JSON                                                    \
    "json_build_object('id', t.id, 'name', t.name, 'slug', t.slug,"         \
    " 'status', t.status, 'createdAt', t.created_at,"                       \
    " 'updatedAt', t.updated_at)"


/* GET /api/v1/tenants?status=&limit=&cursor= (newest first) */

ngx_int_t
orbit_api_tenants_list(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH page AS ("
        "  SELECT t.* FROM tenants t"
        "  WHERE ($1::text IS NULL OR t.status = $1)"
        "    AND ($3::uuid IS NULL OR (t.created_at, t.id) <"
        "      (SELECT created_at, id FROM tenants WHERE id = $3::uuid))"
        "  ORDER BY t.created_at DESC, t.id DESC"
        "  LIMIT $2::int + 1"
        "), shown AS ("
        "  SELECT * FROM page ORDER BY created_at DESC, id DESC"
        "  LIMIT $2::int"
        ")"
        " SELECT 200, json_build_object("
        "  'data', COALESCE((SELECT json_agg(" ORBIT_TENANT_JSON
        "    ORDER BY t.created_at DESC, t.id DESC) FROM shown t), '[]'),"
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

    if (orbit_api_arg_enum(ar, "status", orbit_tenant_filters, &v[0])
        != NGX_OK)
    {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 3, v, orbit_api_respond_row);
}


/* GET /api/v1/tenants/:id */

ngx_int_t
orbit_api_tenants_get(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "SELECT 200, json_build_object('id', t.id, 'name', t.name,"
        "  'slug', t.slug, 'status', t.status, 'createdAt', t.created_at,"
        "  'updatedAt', t.updated_at,"
        "  'users', (SELECT count(*) FROM users u WHERE u.tenant_id = t.id)),"
        "  NULL"
        " FROM tenants t WHERE t.id = $1::uuid"
        " UNION ALL SELECT 404, NULL, 'Tenant not found'"
        " LIMIT 1";

    v = ngx_palloc(ar->r->pool, sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    return orbit_api_query(ar, sql, 1, v, orbit_api_respond_row);
}


/* PATCH /api/v1/tenants/:id {"status": "active"|"rejected"|..., "name"} */

ngx_int_t
orbit_api_tenants_update(orbit_api_req_t *ar)
{
    const char  **v;

    static const char  sql[] =
        "WITH old AS ("
        "  SELECT id, status FROM tenants WHERE id = $1::uuid FOR UPDATE"
        "), upd AS ("
        "  UPDATE tenants t SET status = COALESCE($2, t.status),"
        "    name = COALESCE($3, t.name), updated_at = now()"
        "  FROM old WHERE t.id = old.id"
        "  RETURNING t.*, old.status AS was"
        "), a AS ("
        "  INSERT INTO audit_logs (tenant_id, user_id, action, ip, details)"
        "  SELECT t.id, $4::uuid, 'tenant.updated', $5::inet,"
        "    jsonb_build_object('from', t.was, 'to', t.status,"
        "      'name', t.name)"
        "  FROM upd t"
        ")"
        " SELECT 200, " ORBIT_TENANT_JSON ", NULL FROM upd t"
        " UNION ALL SELECT 404, NULL, 'Tenant not found'"
        " LIMIT 1";

    if (orbit_api_validate(ar, orbit_tenant_update_fields) != NGX_OK) {
        return ar->rc;
    }

    v = ngx_palloc(ar->r->pool, 5 * sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    v[1] = (char *) orbit_api_body_str(ar, "status");
    v[2] = (char *) orbit_api_body_str(ar, "name");
    v[3] = (char *) ar->who.user_id.data;
    v[4] = orbit_api_client_ip(ar);

    return orbit_api_query(ar, sql, 5, v, orbit_api_respond_row);
}
