/*
 * OrbitDesk channels: a connection's credentials for the code that talks
 * to providers (sending, verifying webhooks), and for the API that stores
 * them.
 *
 * The credentials column of channel_connections holds a box sealed under
 * ENCRYPTION_KEY of the secrets file and bound to its row (tenant id and
 * connection id: src/core/orbit_creds.h).  A box copied into another row,
 * of any tenant, does not open.
 *
 * Typical use, from a query that selected "tenant_id, id, credentials":
 *
 *     creds = orbit_channel_creds_open(log,
 *                 (u_char *) PQgetvalue(res, i, 2), PQgetlength(res, i, 2),
 *                 &tenant_id, &connection_id);
 *     if (creds == NULL) { ... the connection cannot send: fail the job }
 *     token = json_string_value(json_object_get(creds, "accessToken"));
 *     ...
 *     json_decref(creds);
 *
 * Never log the object or its strings.
 */

#ifndef _ORBIT_CHANNEL_CREDS_H_INCLUDED_
#define _ORBIT_CHANNEL_CREDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>

#include "core/orbit_creds.h"


/*
 * The credentials, opened.  bytea: the column as PostgreSQL answers it in
 * text format ("\x" and hex digits, as PQgetvalue gives it); a NULL
 * column (len 0) has no credentials: an empty object.  tenant_id and
 * connection_id: the row's tenant_id and id, as text.  Returns a new JSON
 * object of strings, to json_decref(), or NULL when the box does not open
 * (another key, another row, tampered with) or orbit_secrets is missing:
 * the reason is logged at "error", naming the connection, never a secret.
 */
json_t *orbit_channel_creds_open(ngx_log_t *log, const u_char *bytea,
    size_t len, const ngx_str_t *tenant_id, const ngx_str_t *connection_id);

/*
 * creds (a JSON object of strings) sealed for connection_id of tenant_id:
 * out is bytea text ("\x...") in pool, for a "$n::bytea" parameter.
 * NGX_OK, or NGX_ERROR (logged).
 */
ngx_int_t orbit_channel_creds_seal(ngx_pool_t *pool, ngx_log_t *log,
    json_t *creds, const ngx_str_t *tenant_id,
    const ngx_str_t *connection_id, ngx_str_t *out);


#endif /* _ORBIT_CHANNEL_CREDS_H_INCLUDED_ */
