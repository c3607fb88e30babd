/*
 * OrbitDesk REST: POST /api/v1/messages, the way in of orbit_send.h for
 * users and API keys (scope messages:send).
 */

#include "api/orbit_api.h"
#include "channels/orbit_send.h"


static void orbit_msg_stored(orbit_api_req_t *ar, PGresult *res);


ngx_int_t
orbit_api_messages_send(orbit_api_req_t *ar)
{
    const char   *why, **v;
    ngx_str_t    *user;
    char          err[160];

    why = orbit_send_check(ar->body, err, sizeof(err));

    if (why) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST, why);
    }

    if (orbit_api_tenant(ar) == NULL) {
        return ar->rc;
    }

    user = ar->who.kind == ORBIT_AUTH_USER ? &ar->who.user_id : NULL;

    if (orbit_send_params(ar->r->pool, ar->body, &ar->who.tenant_id, user,
                          user ? orbit_auth_role_name(ar->who.role) : NULL,
                          &v)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, orbit_send_sql, ORBIT_SEND_PARAMS, v,
                           orbit_msg_stored);
}


static void
orbit_msg_stored(orbit_api_req_t *ar, PGresult *res)
{
    orbit_send_publish(res, &ar->who.tenant_id, ar->r->connection->log);
    orbit_api_respond_row(ar, res);
}
