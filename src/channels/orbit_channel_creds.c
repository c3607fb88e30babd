/*
 * OrbitDesk channels: a connection's credentials, sealed and opened with
 * the key of the secrets file (see orbit_channel_creds.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "channels/orbit_channel_creds.h"
#include "ngx_http_orbit_module.h"


static const u_char *orbit_channel_creds_key(ngx_log_t *log);
static size_t orbit_channel_creds_aad(char *aad, ngx_log_t *log,
    const ngx_str_t *tenant_id, const ngx_str_t *connection_id);


json_t *
orbit_channel_creds_open(ngx_log_t *log, const u_char *bytea, size_t len,
    const ngx_str_t *tenant_id, const ngx_str_t *connection_id)
{
    size_t             aad_len;
    json_t            *creds;
    const u_char      *key;
    orbit_creds_rc_e   rc;
    char               aad[ORBIT_CREDS_AAD_LEN + 1];

    if (len == 0) {
        return json_object();
    }

    key = orbit_channel_creds_key(log);
    if (key == NULL) {
        return NULL;
    }

    aad_len = orbit_channel_creds_aad(aad, log, tenant_id, connection_id);
    if (aad_len == 0) {
        return NULL;
    }

    rc = orbit_creds_open(key, aad, aad_len, (const char *) bytea, len,
                          &creds);

    if (rc != ORBIT_CREDS_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "orbit: credentials of channel connection %V: %s",
                      connection_id, orbit_creds_strerror(rc));
        return NULL;
    }

    return creds;
}


ngx_int_t
orbit_channel_creds_seal(ngx_pool_t *pool, ngx_log_t *log, json_t *creds,
    const ngx_str_t *tenant_id, const ngx_str_t *connection_id,
    ngx_str_t *out)
{
    char          *hex;
    size_t         aad_len;
    const u_char  *key;
    char           aad[ORBIT_CREDS_AAD_LEN + 1];

    key = orbit_channel_creds_key(log);
    if (key == NULL) {
        return NGX_ERROR;
    }

    aad_len = orbit_channel_creds_aad(aad, log, tenant_id, connection_id);
    if (aad_len == 0) {
        return NGX_ERROR;
    }

    hex = orbit_creds_seal(key, aad, aad_len, creds);

    if (hex == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "orbit: credentials of channel connection %V could "
                      "not be sealed", connection_id);
        return NGX_ERROR;
    }

    out->len = ngx_strlen(hex);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data != NULL) {
        ngx_memcpy(out->data, hex, out->len + 1);
    }

    free(hex);

    return out->data ? NGX_OK : NGX_ERROR;
}


static const u_char *
orbit_channel_creds_key(ngx_log_t *log)
{
    orbit_secrets_t  *secrets;

    secrets = ngx_http_orbit_secrets();

    if (secrets == NULL || !secrets->has_encryption_key) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "orbit: channel credentials need \"orbit_secrets\" "
                      "with ENCRYPTION_KEY");
        return NULL;
    }

    return secrets->encryption_key;
}


static size_t
orbit_channel_creds_aad(char *aad, ngx_log_t *log,
    const ngx_str_t *tenant_id, const ngx_str_t *connection_id)
{
    size_t  len;

    len = orbit_creds_aad(aad, (char *) tenant_id->data, tenant_id->len,
                          (char *) connection_id->data, connection_id->len);

    if (len == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "orbit: channel credentials: \"%V\" and \"%V\" are "
                      "not a tenant and a connection id", tenant_id,
                      connection_id);
    }

    return len;
}
