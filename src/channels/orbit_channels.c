/*
 * OrbitDesk channels: the table of adapters.  A channel is served once it
 * is listed here.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


static const orbit_channel_t  *orbit_channels[] = {
    &orbit_channel_whatsapp,
    &orbit_channel_livechat,
    &orbit_channel_api,
    &orbit_channel_email,
};


const orbit_channel_t *
orbit_channel_find(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (ngx_strlen(orbit_channels[i]->name) == len
            && ngx_strncmp(orbit_channels[i]->name, name, len) == 0)
        {
            return orbit_channels[i];
        }
    }

    return NULL;
}


const orbit_channel_t *
orbit_channel_for(const char *channel)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (ngx_strcmp(orbit_channels[i]->channel, channel) == 0) {
            return orbit_channels[i];
        }
    }

    return NULL;
}


json_t *
orbit_channel_item(orbit_channel_in_t *in, const char *kind,
    const char *channel, const char *account)
{
    json_t  *item;

    item = json_pack("{s:s, s:s, s:s}", "kind", kind, "channel", channel,
                     "account", account);

    if (item == NULL || json_array_append_new(in->items, item) != 0) {
        return NULL;
    }

    return item;
}


void
orbit_channel_error(orbit_channel_out_t *out, ngx_int_t code,
    const char *title)
{
    char    *e;
    json_t  *j;

    j = json_pack("{s:I, s:s}", "code", (json_int_t) code, "title", title);
    e = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    if (e == NULL) {
        ngx_str_null(&out->error);
        return;
    }

    out->error.len = ngx_strlen(e);
    out->error.data = ngx_pnalloc(out->pool, out->error.len);

    if (out->error.data) {
        ngx_memcpy(out->error.data, e, out->error.len);

    } else {
        out->error.len = 0;
    }

    free(e);
}


ngx_int_t
orbit_channel_header(orbit_channel_out_t *out, const char *name,
    const char *value)
{
    ngx_str_t  line;

    line.len = ngx_strlen(name) + 2 + ngx_strlen(value);
    line.data = ngx_pnalloc(out->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line.data, "%s: %s", name, value);

    return orbit_http_req_header(out->req, &line);
}


ngx_int_t
orbit_channel_hub_signature(orbit_channel_in_t *in, const char *secret)
{
    u_char           *sig;
    ngx_table_elt_t  *h;
    char              mac[ORBIT_SHA256_HEX_LEN + 1];
    u_char            got[ORBIT_SHA256_HEX_LEN];

    h = orbit_header_in(in->ar->r, "X-Hub-Signature-256");

    if (h == NULL) {
        in->error = "X-Hub-Signature-256 is missing";
        return NGX_HTTP_FORBIDDEN;
    }

    sig = h->value.data;

    if (h->value.len != sizeof("sha256=") - 1 + ORBIT_SHA256_HEX_LEN
        || ngx_strncasecmp(sig, (u_char *) "sha256=", sizeof("sha256=") - 1)
           != 0)
    {
        in->error = "X-Hub-Signature-256 must be sha256=<64 hex digits>";
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_strlow(got, sig + sizeof("sha256=") - 1, ORBIT_SHA256_HEX_LEN);

    if (orbit_hmac_sha256_hex(mac, secret, ngx_strlen(secret),
                              in->body.data, in->body.len)
        != 0)
    {
        in->error = "the signature could not be computed";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!orbit_equal(mac, ORBIT_SHA256_HEX_LEN, got, ORBIT_SHA256_HEX_LEN)) {
        in->error = "X-Hub-Signature-256 does not match the body";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


ngx_int_t
orbit_channel_sign(orbit_channel_out_t *out, const char *secret,
    ngx_str_t *body, char **header)
{
    char  *h;

    h = ngx_pnalloc(out->pool, sizeof("sha256=") + ORBIT_SHA256_HEX_LEN);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h, "sha256=", sizeof("sha256=") - 1);

    if (orbit_hmac_sha256_hex(h + sizeof("sha256=") - 1, secret,
                              ngx_strlen(secret), body->data, body->len)
        != 0)
    {
        return NGX_ERROR;
    }

    *header = h;

    return NGX_OK;
}


ngx_int_t
orbit_channel_body(orbit_channel_out_t *out, json_t *body)
{
    char  *text;

    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    if (text == NULL) {
        return NGX_ERROR;
    }

    out->req->body.len = ngx_strlen(text);
    out->req->body.data = ngx_pnalloc(out->pool, out->req->body.len);

    if (out->req->body.data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(out->req->body.data, text, out->req->body.len);
    free(text);

    return NGX_OK;
}


ngx_int_t
orbit_channel_provider_id(orbit_channel_out_t *out, const char *id)
{
    out->provider_id.len = ngx_strlen(id);
    out->provider_id.data = ngx_pnalloc(out->pool, out->provider_id.len + 1);

    if (out->provider_id.data == NULL) {
        out->provider_id.len = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(out->provider_id.data, id, out->provider_id.len + 1);

    return NGX_OK;
}
